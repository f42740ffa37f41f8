// Prototype (bench only, core/ untouched): the same Engine with a session built for what a call fetches.
//
// The instrumented model declares every hook tap and every layer's logit-lens readout ([B, T, vocab] each) as
// graph outputs, and onnxruntime computes every graph output whether it is fetched or not. A session whose
// graph keeps only the fetched outputs (and the nodes they need) runs just the model; for metrics, which read
// the last position only, the final norm and unembedding can also run on the last position alone.
import { Engine } from '../../core/engine/engine';
import type { ExternalFile, F32, Runtime, Session } from '../../core/engine/runtime';
import { GraphIndex } from '../../core/onnx/graph';
import { LAST_LOGITS, type ModelStructure } from '../../core/onnx/instrument';
import { decodeModel, encodeModel, floatValueInfo, int64Tensor, intAttr, makeNode, type OnnxModel } from '../../core/onnx/model';

interface EngineInternals {
  session: Session;
  taps: Record<string, string>;
  source?: { runtime: Runtime; instrumented: OnnxModel; external: ExternalFile[] };
}

export interface LeanOptions {
  /** Hooks (and 'logits') the lean engine will be asked for; LAST_LOGITS is always kept. */
  hooks: string[];
  /** Compute LAST_LOGITS by gathering the last residual position before the final norm and unembedding. */
  lastBeforeUnembed?: boolean;
}

/**
 * An Engine that shares everything with `engine` except its forward session, rebuilt from the instrumented
 * model with only the outputs `opts.hooks` need. Calls that fetch anything else fail (prototype).
 */
export async function leanEngine(engine: Engine, opts: LeanOptions): Promise<{ engine: Engine; session: Session; nodes: number; outputs: string[] }> {
  const inner = engine as unknown as EngineInternals;
  const src = inner.source;
  if (!src) throw new Error('engine has no instrumented model (built by Engine.fromModel?)');
  const model = decodeModel(encodeModel(src.instrumented), 'the instrumented model');
  const graph = model.graph!;
  const keep = new Set<string>([LAST_LOGITS, ...opts.hooks.map((h) => inner.taps[h] ?? h)]);
  if (opts.lastBeforeUnembed) moveLastGather(model, engine.structure);
  graph.output = graph.output.filter((o) => keep.has(o.name));
  const g = new GraphIndex(graph);
  const needed = new Set<number>();
  for (const o of graph.output) for (const i of g.ancestors(o.name).nodes) needed.add(i);
  graph.node = graph.node.filter((_, i) => needed.has(i));
  const session = await src.runtime.createSession(encodeModel(model), src.external);
  const lean = Object.create(engine) as Engine;
  (lean as unknown as EngineInternals).session = session;
  return { engine: lean, session, nodes: graph.node.length, outputs: graph.output.map((o) => o.name) };
}

/**
 * LAST_LOGITS = unembed(final_norm(resid_post[:, -1:])) instead of Gather(unembed(final_norm(resid_post)), -1):
 * the norm works per position, so both are equal, and the [B, T, vocab] product is never formed.
 */
function moveLastGather(model: OnnxModel, s: ModelStructure): void {
  const graph = model.graph!;
  const g = new GraphIndex(graph);
  const last = s.layers[s.layers.length - 1]!.residPost;
  const anc = g.ancestors(s.logits, last).nodes;
  const desc = g.descendants(last);
  const path = [...anc].filter((i) => desc.has(i)).sort((a, b) => a - b).map((i) => g.node(i));
  const gathered = 'bench.lean.last_resid';
  graph.initializer.push(int64Tensor('bench.lean.last_index', [-1]));
  const rename = new Map<string, string>([[last, gathered]]);
  for (const n of path) for (const o of n.output) if (o) rename.set(o, `${o}@last`);
  const added = [makeNode('Gather', [last, 'bench.lean.last_index'], [gathered], 'bench/lean/gather_last', [intAttr('axis', 1)])];
  for (const n of path) added.push({ ...n, name: `${n.name}@last`, input: n.input.map((t) => rename.get(t) ?? t), output: n.output.map((t) => rename.get(t) ?? t) });
  // The old Gather's output is now produced from the short path; Gather with a [1] index keeps the time axis.
  graph.node = graph.node.filter((n) => !n.output.includes(LAST_LOGITS));
  added.push(makeNode('Identity', [rename.get(s.logits)!], [LAST_LOGITS], 'bench/lean/last_logits'));
  graph.node.push(...added);
}

/**
 * Prototype 2: a sweep that skips what an ablation cannot change. Ablating a head of layer l leaves layers
 * 0..l−1 as they were, so each layer's sets run on a session cut at blocks.l.hook_resid_pre (fed from one clean
 * run, cached per prompt) with the last-position unembedding of leanEngine. Same scores as evaluateSets.
 */
export class SuffixSweeper {
  private engines = new Map<number, { engine: Engine; session: Session }>();
  private cache = new Map<string, Map<number, Float32Array>>();

  private constructor(private readonly base: Engine) {}

  static async create(engine: Engine, layers: number[]): Promise<SuffixSweeper> {
    const s = new SuffixSweeper(engine);
    for (const l of [...new Set(layers)]) s.engines.set(l, await s.build(l));
    return s;
  }

  private async build(l: number): Promise<{ engine: Engine; session: Session }> {
    const inner = this.base as unknown as EngineInternals;
    const src = inner.source!;
    const s = this.base.structure;
    const model = decodeModel(encodeModel(src.instrumented), 'the instrumented model');
    const graph = model.graph!;
    moveLastGather(model, s);
    graph.output = graph.output.filter((o) => o.name === LAST_LOGITS);
    const cut = s.layers[l]!.residPre;
    if (l > 0) {
      // The cut tensor becomes a graph input; its producer (and everything only it needed) goes away.
      graph.node = graph.node.filter((n) => !n.output.includes(cut));
      graph.input.push(floatValueInfo(cut, 3));
    }
    const g = new GraphIndex(graph);
    const needed = new Set<number>();
    for (const o of graph.output) for (const i of g.ancestors(o.name).nodes) needed.add(i);
    graph.node = graph.node.filter((_, i) => needed.has(i));
    const session = await src.runtime.createSession(encodeModel(model), src.external);
    const names = new Set((session as unknown as { session: { inputNames: string[] } }).session.inputNames);
    const D = this.base.info.dModel;
    const inputIds = s.inputIds;
    const wrapped: Session = {
      run: (feeds, fetches) => {
        const kept = Object.fromEntries(Object.entries(feeds).filter(([k]) => names.has(k)));
        if (l > 0) {
          const ids = feeds[inputIds]!;
          const [B, T] = ids.dims as [number, number];
          const resid = new Float32Array(B * T * D);
          for (let b = 0; b < B; b++) {
            const key = Array.from(ids.data.subarray(b * T, (b + 1) * T) as BigInt64Array, Number).join(',');
            const row = this.cache.get(key)?.get(l);
            if (!row) throw new Error('suffix sweep: prompt without cached clean activations');
            resid.set(row, b * T * D);
          }
          kept[cut] = { type: 'float32', dims: [B, T, D], data: resid };
        }
        return session.run(kept, fetches);
      },
      release: () => session.release(),
    };
    const engine = Object.create(this.base) as Engine;
    (engine as unknown as EngineInternals).session = wrapped;
    return { engine, session };
  }

  /**
   * Caches each prompt's clean blocks.l.hook_resid_pre for the cut layers (one clean run of the prompts);
   * returns the clean last-position logits [B, 1, vocab].
   */
  async cacheClean(prompts: number[][]): Promise<F32> {
    const layers = [...this.engines.keys()].filter((l) => l > 0);
    const hooks = layers.map((l) => `blocks.${l}.hook_resid_pre`);
    const res = await this.base.run({ ids: prompts, hooks, lastOnly: true });
    const T = prompts[0]!.length;
    const D = this.base.info.dModel;
    prompts.forEach((ids, b) => {
      const m = new Map<number, Float32Array>();
      layers.forEach((l, i) => m.set(l, res.activations[hooks[i]!]!.data.slice(b * T * D, (b + 1) * T * D)));
      this.cache.set(ids.join(','), m);
    });
    return res.logits;
  }

  engineFor(l: number): Engine {
    return this.engines.get(l)!.engine;
  }

  async release(): Promise<void> {
    for (const e of this.engines.values()) await e.session.release();
  }
}

/**
 * Prototype 3: the scores of core/analysis/metrics.ts scorePrompt (logit difference, probability, top-1, KL to
 * the clean run) with plain loops: no Float64Array.from(…, callback), one log-sum-exp, the clean
 * probabilities exponentiated once per prompt instead of once per row.
 */
export function fastScore(logits: Float32Array, answer: number, foil: number | undefined, clean?: { logProbs: Float64Array; probs: Float64Array }) {
  const n = logits.length;
  let max = -Infinity;
  let top1 = 0;
  for (let i = 0; i < n; i++) if (logits[i]! > max) { max = logits[i]!; top1 = i; }
  let z = 0;
  for (let i = 0; i < n; i++) z += Math.exp(logits[i]! - max);
  const lz = max + Math.log(z);
  let kl = 0;
  if (clean) {
    for (let i = 0; i < n; i++) {
      const p = clean.probs[i]!;
      if (p > 0) kl += p * (clean.logProbs[i]! - (logits[i]! - lz));
    }
  }
  return { logitDiff: foil === undefined ? NaN : logits[answer]! - logits[foil]!, prob: Math.exp(logits[answer]! - lz), correct: top1 === answer, kl: Math.max(0, kl), top1 };
}
