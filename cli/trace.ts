import { UserError } from '../core/errors';
import type { Engine } from '../core/engine/engine';
import type { AblationKind } from '../core/vocabulary';
import type { RunResult } from '../core/engine/types';
import type { F32 } from '../core/engine/runtime';
import { selectHooks } from '../core/hooks';
import { parseNodeList } from '../core/ids';
import { loadEngine } from '../core/node/load';
import { cliRuntime, oneOf, parse } from './args';

export const TRACE_USAGE = 'circuitlens trace MODEL (--prompt TEXT | --ids 1,2,3) [--hooks GLOB] [--ablate IDS] [--ablation zero|mean] [--runtime node|wasm] [--json]';

export async function infoCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const usage = 'circuitlens info MODEL [--runtime node|wasm] [--json]';
  const { values, positionals } = parse(argv, { json: { type: 'boolean' }, runtime: { type: 'string' } }, usage);
  if (positionals.length !== 1) throw new UserError(`expected one model file\nusage: ${usage}`);
  const engine = await loadEngine(positionals[0]!, cliRuntime(values.runtime));
  const i = engine.info;
  if (values.json) {
    out(JSON.stringify({
      architecture: i.architecture, layers: i.layers, heads: i.heads, dModel: i.dModel, vocab: i.vocab, hooks: i.hooks,
      dHead: i.dHead, contextLength: i.contextLength ?? null, opset: i.opset, features: i.features, detection: i.detection,
      tokenizer: !!engine.tokenizer, ...(i.normalized ? { normalized: i.normalized } : {}),
    }, null, 2));
  } else {
    out(`${positionals[0]}: ${i.architecture} (${i.features.norm}, ${i.features.positions} positions, ${i.features.mlp} MLP, ${i.features.qkv} QKV, ${i.features.block} blocks), opset ${i.opset}`);
    for (const note of i.normalized ?? []) out(`  loaded as: ${note}`);
    out(`  ${i.layers} layers × ${i.heads} heads, d_model ${i.dModel}, d_head ${i.dHead}, vocab ${i.vocab}, context ${i.contextLength ?? 'unknown'}`);
    out(`  tokenizer: ${engine.tokenizer ? 'yes' : 'none (pass token ids)'}; hooks from ${i.detection}:`);
    for (const [h, t] of Object.entries(i.hooks)) out(`    ${h.padEnd(30)} ${t}`);
  }
  await engine.release();
  return 0;
}

export async function traceCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    prompt: { type: 'string' }, ids: { type: 'string' }, hooks: { type: 'string' }, ablate: { type: 'string' },
    ablation: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' },
  }, TRACE_USAGE);
  if (positionals.length !== 1) throw new UserError(`expected one model file\nusage: ${TRACE_USAGE}`);
  if ((values.prompt === undefined) === (values.ids === undefined)) throw new UserError(`give exactly one of --prompt or --ids\nusage: ${TRACE_USAGE}`);
  const kind = oneOf(values.ablation, ['zero', 'mean'] as const, '--ablation', 'zero') as AblationKind;
  const engine = await loadEngine(positionals[0]!, cliRuntime(values.runtime));
  try {
    const ids = values.ids !== undefined ? parseIds(values.ids) : tokenize(engine, values.prompt!);
    engine.checkIds(ids);
    const hooks = values.hooks ? selectHooks(engine.hookNames, values.hooks) : [];
    const nodes = values.ablate ? parseNodeList(values.ablate, engine.info) : [];
    const means = nodes.length && kind === 'mean' ? await engine.means([ids]) : undefined;
    const res = await engine.run({ ids: [ids], hooks, ablations: nodes.length ? [{ nodes, kind }] : undefined, means });
    if (values.json) out(JSON.stringify(traceJson(ids, res)));
    else printTrace(engine, ids, res, out, nodes.length ? `${kind}-ablated ${nodes.join(',')}` : undefined);
  } finally {
    await engine.release();
  }
  return 0;
}

function parseIds(s: string): number[] {
  const ids = s.split(',').map((x) => x.trim()).filter(Boolean).map((x) => {
    if (!/^\d+$/.test(x)) throw new UserError(`--ids must be comma-separated token ids like 12,7,99 (got "${x}")`);
    return Number(x);
  });
  if (ids.length === 0) throw new UserError('--ids is empty');
  return ids;
}

function tokenize(engine: Engine, text: string): number[] {
  if (!engine.tokenizer) throw new UserError('this model has no tokenizer.json beside it; pass token ids with --ids');
  return engine.tokenizer.encode(text);
}

/** Drops the batch dimension of a one-row tensor (DESIGN §6). */
function unbatched(t: F32): { shape: number[]; data: number[] } {
  return { shape: t.dims.slice(1), data: Array.from(t.data) };
}

export function traceJson(ids: number[], res: RunResult) {
  return {
    ids,
    logits: unbatched(res.logits),
    activations: Object.fromEntries(Object.entries(res.activations).map(([h, t]) => [h, unbatched(t)])),
  };
}

function printTrace(engine: Engine, ids: number[], res: RunResult, out: (s: string) => void, ablated?: string): void {
  const tok = engine.tokenizer;
  const text = (id: number) => (tok ? JSON.stringify(tok.tokenText(id)) : `#${id}`);
  out(`tokens (${ids.length}): ${ids.map(text).join(' ')}`);
  if (ablated) out(`ablation: ${ablated}`);
  const V = res.logits.dims[2]!;
  const last = res.logits.data.subarray((ids.length - 1) * V, ids.length * V);
  const top = [...last.keys()].sort((a, b) => last[b]! - last[a]!).slice(0, 5);
  const max = last[top[0]!]!;
  const z = last.reduce((s, v) => s + Math.exp(v - max), 0);
  out('next token (top 5):');
  for (const id of top) out(`  ${text(id).padEnd(16)} logit ${last[id]!.toFixed(3).padStart(8)}  p ${(Math.exp(last[id]! - max) / z).toFixed(3)}`);
  for (const [h, t] of Object.entries(res.activations)) {
    let ss = 0;
    for (const v of t.data) ss += v * v;
    out(`  ${h.padEnd(30)} shape [${t.dims.slice(1).join(', ')}]  rms ${Math.sqrt(ss / t.data.length).toFixed(4)}`);
  }
}
