import { UserError } from '../../core/errors';
import type { Engine } from '../../core/engine/engine';
import type { AblationKind } from '../../core/vocabulary';
import type { HeadTemperature, RunResult } from '../../core/engine/types';
import type { F32 } from '../../core/engine/runtime';
import { selectHooks } from '../../core/hooks';
import { parseNodeList } from '../../core/ids';
import { loadEngine } from '../../core/nodejs/load';
import { cliRuntime, JSON_OPTION, oneOf, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';

export const TRACE_USAGE: Usage = {
  synopsis: 'circuitlens trace MODEL (--prompt TEXT | --ids 1,2,3) [--hooks GLOB] [--ablate IDS] [--ablation zero|mean] [--temperature a1.h0=0.5 ...] [--runtime node|wasm] [--json]',
  about: 'Runs one prompt through a model, records the hooks asked for, and prints the next-token distribution;\n'
    + 'optionally with heads and MLPs ablated.',
  options: [
    ['--prompt TEXT', 'the prompt, tokenized with the tokenizer.json beside the model'],
    ['--ids 1,2,3', 'the prompt as token ids (for models without a tokenizer)'],
    ['--hooks GLOB', 'hooks to record, e.g. "blocks.1.attn.hook_*,logits" (circuitlens info MODEL lists them)'],
    ['--ablate IDS', 'nodes to ablate, e.g. a1.h2,m0'],
    ['--ablation zero|mean', 'how ablated nodes are replaced (default zero; mean: over this prompt)'],
    ['--temperature HEAD=T', 'divide a head\'s attention scores by T before its softmax (T > 1 flattens, < 1 sharpens); repeatable, or a1.h0=0.5,a0.h2=2'],
    RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"ids": [...], "logits": {"shape", "data"}, "activations": {hook: {"shape", "data"}}, "temperatures"?: [{"head", "temperature"}]} (data flat, row-major; batch dimension dropped)',
};

export async function traceCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    prompt: { type: 'string' }, ids: { type: 'string' }, hooks: { type: 'string' }, ablate: { type: 'string' },
    ablation: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' }, temperature: { type: 'string', multiple: true },
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
    const temperatures = parseHeadTemperatures(values.temperature ?? [], engine);
    const means = nodes.length && kind === 'mean' ? await engine.means([ids]) : undefined;
    const res = await engine.run({ ids: [ids], hooks, ablations: nodes.length ? [{ nodes, kind }] : undefined, means, temperatures: temperatures.length ? [temperatures] : undefined });
    if (values.json) out(JSON.stringify({ ...traceJson(ids, res), ...(temperatures.length ? { temperatures } : {}) }));
    else {
      const changes = [
        ...(nodes.length ? [`ablation: ${kind}-ablated ${nodes.join(',')}`] : []),
        ...(temperatures.length ? [`softmax temperature: ${temperatures.map((t) => `${t.head} τ=${t.temperature}`).join(', ')}`] : []),
      ];
      printTrace(engine, ids, res, out, changes);
    }
  } finally {
    await engine.release();
  }
  return 0;
}

/** --temperature a1.h0=0.5 (repeated, or comma lists): each head once, τ > 0. */
export function parseHeadTemperatures(flags: string[], engine: Engine): HeadTemperature[] {
  const out: HeadTemperature[] = [];
  for (const item of flags.flatMap((f) => f.split(',')).map((x) => x.trim()).filter(Boolean)) {
    const m = /^(a\d+\.h\d+)=(.+)$/.exec(item);
    if (!m) throw new UserError(`--temperature takes HEAD=T, e.g. a1.h0=0.5 (got "${item}")`);
    const [head] = parseNodeList(m[1]!, engine.info);
    const t = Number(m[2]);
    if (!Number.isFinite(t) || t <= 0) throw new UserError(`--temperature ${item}: the temperature must be a positive number`);
    if (out.some((x) => x.head === head)) throw new UserError(`--temperature names ${head} twice`);
    out.push({ head: head!, temperature: t });
  }
  return out;
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

function printTrace(engine: Engine, ids: number[], res: RunResult, out: (s: string) => void, changes: string[]): void {
  const tok = engine.tokenizer;
  const text = (id: number) => (tok ? JSON.stringify(tok.tokenText(id)) : `#${id}`);
  out(`tokens (${ids.length}): ${ids.map(text).join(' ')}`);
  for (const c of changes) out(c);
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
