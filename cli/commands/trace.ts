import { UserError } from '../../core/errors';
import type { Engine } from '../../core/engine/engine';
import type { AblationKind } from '../../core/vocabulary';
import type { RunResult } from '../../core/engine/types';
import type { F32 } from '../../core/engine/runtime';
import { selectHooks } from '../../core/hooks';
import { parseNodeList } from '../../core/ids';
import { loadEngine } from '../../core/nodejs/load';
import { cliRuntime, JSON_OPTION, oneOf, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';

export const TRACE_USAGE: Usage = {
  synopsis: 'circuitlens trace MODEL (--prompt TEXT | --ids 1,2,3) [--hooks GLOB] [--ablate IDS] [--ablation zero|mean] [--runtime node|wasm] [--json]',
  about: 'Runs one prompt through a model, records the hooks asked for, and prints the next-token distribution;\n'
    + 'optionally with heads and MLPs ablated.',
  options: [
    ['--prompt TEXT', 'the prompt, tokenized with the tokenizer.json beside the model'],
    ['--ids 1,2,3', 'the prompt as token ids (for models without a tokenizer)'],
    ['--hooks GLOB', 'hooks to record, e.g. "blocks.1.attn.hook_*,logits" (circuitlens info MODEL lists them)'],
    ['--ablate IDS', 'nodes to ablate, e.g. a1.h2,m0'],
    ['--ablation zero|mean', 'how ablated nodes are replaced (default zero; mean: over this prompt)'],
    RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"ids": [...], "logits": {"shape", "data"}, "activations": {hook: {"shape", "data"}}} (data flat, row-major; batch dimension dropped)',
};

export async function traceCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    prompt: { type: 'string' }, ids: { type: 'string' }, hooks: { type: 'string' }, ablate: { type: 'string' },
    ablation: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' },
  }, TRACE_USAGE);
  if (positionals.length !== 1) throw usageError('expected one model file', TRACE_USAGE);
  if ((values.prompt === undefined) === (values.ids === undefined)) throw usageError('give exactly one of --prompt or --ids', TRACE_USAGE);
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

function traceJson(ids: number[], res: RunResult) {
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
