// The engine's onnxruntime sessions: the main one, built at loading, and the others (metrics, layer skipping, logit
// lens, gradients, edges), each built on first use from the instrumented model; and the memory planning
// (MemoryOptions) that decides whether one may be built, releasing others to make room.
import { UserError } from '../errors';
import { hookName, type HookName } from '../hooks';
import { addGradients } from '../onnx/autodiff';
import { GraphIndex } from '../onnx/graph';
import type { ModelStructure } from '../onnx/detect';
import { addLogitLensOutputs, instrument, LAST_LOGITS } from '../onnx/instrument';
import { LAST_STATS, withLastMlpOnLastPosition, withLastRowStats, withOutputsOnly } from '../onnx/lean';
import { decodeModel, encodeModel, floatValueInfo, type OnnxModel } from '../onnx/model';
import { normalizeExport, preciseTrigForWebGpu } from '../onnx/normalize';
import { addLayerSkipping } from '../onnx/skip';
import { addTemperatureInputs } from '../onnx/temperature';
import { gib, SESSION_OVERHEAD, type MemoryEstimate, type MemoryOptions, type SessionKind } from './memory';
import type { ExternalFile, Runtime, Session } from './runtime';
import type { ModelInfo } from './types';

/** What the sessions built after loading are built from. */
export interface SessionSource {
  runtime: Runtime;
  /** The instrumented model kept from loading; without it, `reload` reads the model again. */
  instrumented?: OnnxModel;
  reload?: () => OnnxModel;
  external: ExternalFile[];
  what: string;
}

export interface GradientGraph {
  session: Session; z: string[]; mlp: string[]; residPre: string[];
  /** Hooks the run can return, and the tensor each is read from. */
  hookTensors: Record<HookName, string>;
}

/** The cached sessions other than the main one, in the order they are released to make room. */
const OPTIONAL: SessionKind[] = ['lens', 'skip', 'gradient', 'gradientResid', 'edgeForward', 'edgeGradient', 'edgeGradientAtZero', 'temperature', 'metrics'];

export class Sessions {
  /** Sessions built (or being built) and what each is counted at. */
  private readonly held = new Map<SessionKind, number>();
  /** The optional sessions built or being built, each with the onnxruntime session to release (none when its build failed). */
  private readonly built = new Map<SessionKind, { value: Promise<unknown>; session: Promise<Session | undefined> }>();
  private released = false;

  constructor(
    readonly main: Session,
    private readonly source: SessionSource,
    private readonly structure: ModelStructure,
    private readonly taps: Record<HookName, string>,
    private readonly info: ModelInfo,
    /** Memory planning (EngineOptions.memory); without it nothing is checked. */
    private readonly memory: MemoryOptions | undefined,
    /** The weight bytes the estimates count from. */
    readonly weightBytes: number,
  ) {
    this.held.set('main', this.sessionBytes('main'));
  }

  /** An optional session, built on first use (most runs never need most of them). */
  lazily<T>(kind: SessionKind, build: () => Promise<T>, sessionOf: (v: T) => Session | undefined): Promise<T> {
    let entry = this.built.get(kind);
    if (!entry) {
      const value = build();
      entry = { value, session: value.then(sessionOf, () => undefined) };
      this.built.set(kind, entry);
    }
    return entry.value as Promise<T>;
  }

  /** A session of the given model, by the engine's runtime with its external weights. */
  create(model: OnnxModel): Promise<Session> {
    return this.source.runtime.createSession(encodeModel(model), this.source.external);
  }

  /**
   * The instrumented model, for the sessions built on first use (metrics, lens, gradients, edges, layer
   * skipping): kept from loading, or re-read through EngineOptions.reload so a large model's weights are not
   * held in JS memory for the engine's lifetime.
   */
  private instrumented(): OnnxModel {
    const src = this.source;
    if (src.instrumented) return src.instrumented;
    const model = src.reload!();
    normalizeExport(model, src.what);
    if (src.runtime.backend === 'webgpu') preciseTrigForWebGpu(model);
    return instrument(model, this.structure).model;
  }

  /** A copy of the instrumented model to rewrite (a fresh one when it is re-read anyway). */
  copyOfInstrumented(): OnnxModel {
    const src = this.source;
    return src.instrumented ? decodeModel(encodeModel(src.instrumented), 'the instrumented model') : this.instrumented();
  }

  /** input_ids' dim_params: every run has at least one prompt of at least one token (Engine.checkBatch). */
  positiveDims(model: OnnxModel): string[] {
    const v = model.graph!.input.find((i) => i.name === this.structure.inputIds);
    return (v?.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam).filter((p): p is string => !!p);
  }

  // ---- memory planning (MemoryOptions) ----------------------------------------------------------------------

  /** What a session of this kind holds: its own weights (unless shared) and its overhead. */
  sessionBytes(kind: SessionKind): number {
    if (this.memory?.sharedWeights) return SESSION_OVERHEAD;
    // A prepacking runtime packs each constant MatMul/Gemm operand per kernel: the backward graph reads every
    // weight in a second kernel (dA = g·Bᵀ), a second packed copy.
    const copies = kind === 'gradient' || kind === 'gradientResid' || kind === 'edgeGradient' || kind === 'edgeGradientAtZero' ? 2 : 1;
    return copies * this.weightBytes + SESSION_OVERHEAD;
  }

  /**
   * Activations a gradient run of `rows` prompts of T tokens holds (a rough upper estimate): the forward
   * intermediates the backward graph keeps and the gradients, per token and layer about 40 d_model floats plus
   * 4 × heads × T for attention, and the logits at the last position.
   */
  gradientRowBytes(T: number): number {
    const { layers, heads, dModel, vocab } = this.info;
    return 4 * (T * layers * (40 * dModel + 4 * heads * T) + 2 * vocab);
  }

  /** The memory estimate for building `kind` (if not built) and running `activations` bytes on top. */
  memoryEstimate(kind: SessionKind | undefined, activations = 0): MemoryEstimate {
    const shared = this.memory?.sharedWeights ? this.weightBytes : 0;
    const held = shared + [...this.held.values()].reduce((a, b) => a + b, 0);
    const session = kind && !this.held.has(kind) ? this.sessionBytes(kind) : 0;
    return { held, session, activations, total: held + session + activations, budget: this.memory?.budget ?? Infinity };
  }

  /** Rows of T tokens a gradient batch may have within the budget (at least 1; Infinity without a budget). */
  gradientRowsThatFit(T: number, withResid = false): number {
    if (!this.memory) return Infinity;
    const e = this.memoryEstimate(withResid ? 'gradientResid' : 'gradient');
    return Math.max(1, Math.floor((e.budget - e.held - e.session) / this.gradientRowBytes(T)));
  }

  /**
   * Makes room for building a session of this kind (and `activations` bytes of a run on it): true when it fits,
   * false when it does not and `required` is false (the caller does without), and when `required`, after
   * releasing the cached optional sessions if need be, true or a UserError saying what is needed.
   */
  async reserve(kind: SessionKind, required: boolean, what: string, activations = 0, runWhat = ''): Promise<boolean> {
    if (!this.memory || (this.held.has(kind) && !activations)) return true;
    let e = this.memoryEstimate(kind, activations);
    // Only a session the step cannot do without evicts others (an optional one could evict a session in use).
    if (e.total > e.budget && required) {
      await this.releaseOptional(kind);
      e = this.memoryEstimate(kind, activations);
    }
    if (e.total <= e.budget) {
      if (!this.held.has(kind)) this.held.set(kind, e.session);
      return true;
    }
    if (!required) return false;
    const m = this.memory;
    const parts = [
      m.sharedWeights ? `${gib(this.weightBytes)} of weights shared by every session` : `${gib(this.weightBytes)} of weights per session`,
      `${gib(e.held - (m.sharedWeights ? this.weightBytes : 0))} for the sessions already built`,
      `${gib(e.session)} for ${what}`,
      ...(activations ? [`${gib(activations)} of activations${runWhat}`] : []),
    ];
    throw new UserError(`${what} needs about ${gib(e.total)} of memory (${parts.join(', ')}), more than the memory budget of ${gib(e.budget)}${m.budgetSource ? ` (${m.budgetSource})` : ''}. Use fewer or shorter prompts, an exact method that needs no gradients (--method patching), or a machine with more memory${m.raiseHint ? `; ${m.raiseHint}` : ''}.`);
  }

  /** Releases the cached sessions other than the main one and `keep` (they are rebuilt when next needed). */
  private async releaseOptional(keep: SessionKind): Promise<void> {
    const drop: Promise<Session | undefined>[] = [];
    for (const kind of OPTIONAL) {
      const entry = this.built.get(kind);
      if (kind === keep || !entry) continue;
      drop.push(entry.session);
      this.built.delete(kind);
      this.held.delete(kind);
    }
    for (const p of drop) await (await p)?.release();
  }

  /** Runs after release (the model's file changed and the cache reloaded it, or the workspace closed) fail clearly. */
  checkAlive(): void {
    if (this.released) throw new UserError('the model was unloaded while this command was running (its file changed on disk, or the workspace closed); run the command again');
  }

  async release(): Promise<void> {
    this.released = true;
    this.held.clear();
    await this.main.release();
    for (const kind of OPTIONAL) {
      await (await this.built.get(kind)?.session)?.release();
    }
  }

  // ---- the sessions built on first use ------------------------------------------------------------------------

  /**
   * The session for metrics: the last position's logits only (no hook taps, the final norm and unembedding on
   * the last position). Most analysis runs only this.
   */
  private last(): Promise<Session> {
    return this.lazily('metrics', async () => {
      const lean = withOutputsOnly(this.instrumented(), this.leanOutputs());
      const model = withLastMlpOnLastPosition(lean, this.structure)?.model ?? lean;
      return this.create(this.hasRowStats ? withLastRowStats(model) : model);
    }, (s) => s);
  }

  /**
   * What the lean metrics session computes: the last-position logits, plus every layer's resid_pre (values the
   * forward computes anyway; a clean run fetches them once for the rows of a sweep that start at a later layer).
   */
  private leanOutputs(): string[] {
    return [...new Set([LAST_LOGITS, ...this.structure.layers.map((_, l) => this.taps[hookName('resid_pre', l)]!)])];
  }

  /** Whether the metrics and skip sessions output LAST_STATS (RunRequest.stats). */
  get hasRowStats(): boolean {
    return this.source.runtime.backend !== 'webgpu' && this.info.opset >= 13;
  }

  /** The session a run with these fetches needs: the lean one when only the last logits (and resid_pre) are read. */
  async sessionFor(fetches: string[]): Promise<Session> {
    if (!fetches.includes(LAST_LOGITS)) return this.main;
    const lean = new Set(this.leanOutputs());
    if (this.hasRowStats) lean.add(LAST_STATS);
    if (!fetches.every((f) => lean.has(f))) return this.main;
    // Without room for the lean session, the main one computes the same logits (more work per run).
    return (await this.reserve('metrics', false, 'the metrics session')) ? this.last() : this.main;
  }

  /** Whether layer skipping may be available (native onnxruntime), without building its session to find out. */
  get maySkipLayers(): boolean {
    return this.source.runtime.backend === 'node';
  }

  /** The session that starts at a later layer (RunRequest.start); undefined where runs cannot skip layers. */
  skip(): Promise<Session | undefined> {
    return this.lazily('skip', async () => {
      if (this.source.runtime.backend !== 'node') return undefined;
      // Without room for it, runs start at the first layer (the same results, more work).
      if (!(await this.reserve('skip', false, 'the layer-skipping session'))) return undefined;
      const full = withOutputsOnly(this.instrumented(), [LAST_LOGITS]);
      // The last layer's MLP on the last position only, as in the metrics session: that layer's block ends at its
      // resid_mid then.
      const trimmed = withLastMlpOnLastPosition(full, this.structure);
      const model = trimmed?.model ?? full;
      const structure = trimmed ? { ...this.structure, layers: this.structure.layers.map((L, j) => (j === this.structure.layers.length - 1 ? { ...L, residPost: trimmed.lastStart } : L)) } : this.structure;
      // withOutputsOnly gives new node and initializer lists but shares the input list, which this adds to.
      const copy = { ...model, graph: { ...model.graph!, input: [...model.graph!.input] } };
      if (!addLayerSkipping(copy, structure)) return undefined;
      return this.create(this.hasRowStats ? withLastRowStats(copy) : copy);
    }, (s) => s);
  }

  /** The logit-lens session, built from a copy of the instrumented model. */
  lens(): Promise<{ session: Session; outputs: string[] }> {
    return this.lazily('lens', async () => {
      await this.reserve('lens', true, 'the logit-lens session');
      const model = this.copyOfInstrumented();
      const outputs = addLogitLensOutputs(model, this.structure);
      return { session: await this.create(model), outputs };
    }, (v) => v.session);
  }

  /**
   * The session with per-head softmax temperatures (core/onnx/temperature.ts): a copy of the instrumented model,
   * every hook and the last logits, with each layer's attention scores divided by its TEMPERATURE input.
   */
  temperature(): Promise<Session> {
    return this.lazily('temperature', async () => {
      await this.reserve('temperature', true, 'the softmax-temperature session');
      const model = this.copyOfInstrumented();
      addTemperatureInputs(model, this.structure);
      return this.create(model);
    }, (s) => s);
  }

  /** The backward graph's session, without or with dL/d(resid_pre). */
  gradientGraph(withResid: boolean): Promise<GradientGraph> {
    return this.lazily(withResid ? 'gradientResid' : 'gradient', async () => {
      let model = this.copyOfInstrumented();
      const last = this.structure.layers.length - 1;
      const lastMlpHook = hookName('mlp_out', last);
      // onnxruntime computes every graph output whether fetched or not: keep the hooks (not the full logits, which
      // would cost a [B, T, vocab] unembedding) and the last logits only.
      let hookTensors: Record<HookName, string> = Object.fromEntries(Object.entries(this.taps).filter(([h]) => h !== 'logits'));
      let lastMlp = this.taps[lastMlpHook]!;
      // Only the last position of the last layer's MLP reaches the last logits: where the MLP works per position,
      // it runs there alone (as in the metrics session), its gradient is taken there ([B, 1, D]; 0 elsewhere), and
      // the hooks computed from its other positions are left out.
      const g0 = new GraphIndex(model.graph!);
      const after = g0.descendants(lastMlp);
      const before = Object.entries(hookTensors).filter(([, t]) => t !== lastMlp && !after.has(g0.producer.get(t) ?? -1));
      const trimmed = withLastMlpOnLastPosition(withOutputsOnly(model, [LAST_LOGITS, ...new Set(before.map(([, t]) => t))]), this.structure);
      if (trimmed) {
        model = trimmed.model;
        lastMlp = `${lastMlp}@lastmlp`;
        model.graph!.output.push(floatValueInfo(lastMlp, 3));
        hookTensors = { ...Object.fromEntries(before), [lastMlpHook]: lastMlp };
      } else {
        const keep = new Set([LAST_LOGITS, ...Object.values(hookTensors)]);
        model.graph!.output = model.graph!.output.filter((o) => keep.has(o.name));
      }
      const g = new GraphIndex(model.graph!);
      const layers = this.structure.layers.map((_, l) => l);
      // hook_z's tap is a transpose of the patched per-head output, which is what the rest of the model reads.
      const z = layers.map((l) => g.producerOf(this.taps[hookName('z', l)]!)!.input[0]!);
      const mlp = layers.map((l) => (l === last ? lastMlp : this.taps[hookName('mlp_out', l)]!));
      // dL/d(resid_pre) of the first layer costs a backward pass through its attention, which no other gradient here
      // needs: only when asked for.
      const residPre = withResid ? this.structure.layers.map((L) => L.residPre) : [];
      const { grads } = addGradients(model, LAST_LOGITS, [...z, ...mlp, ...residPre], { positive: this.positiveDims(model) });
      const live = new GraphIndex(model.graph!);
      const needed = new Set<number>();
      for (const o of model.graph!.output) for (const i of live.ancestors(o.name).nodes) needed.add(i);
      model.graph!.node = model.graph!.node.filter((_, i) => needed.has(i));
      const session = await this.create(model);
      const names = (ts: string[]) => ts.map((t) => grads[t]!);
      return { session, z: names(z), mlp: names(mlp), residPre: names(residPre), hookTensors };
    }, (g) => g.session);
  }
}
