import { UserError } from '../errors';
import { allHookNames, hookName, type HookName } from '../hooks';
import { checkNodeInModel, parseNodeId, type NodeId } from '../ids';
import { addGradients, GRAD_SEED } from '../onnx/autodiff';
import { addEdgeGradientsAtZero } from '../onnx/edge-gradients';
import { EDGE, edgeLayout, type EdgeLayout } from '../onnx/edge-layout';
import { addEdgeInputs } from '../onnx/edges';
import { addLayerSkipping, START } from '../onnx/skip';
import { GraphIndex } from '../onnx/graph';
import { decodeModel, encodeModel, externalLocations, floatValueInfo, opsetVersion, type OnnxModel } from '../onnx/model';
import { normalizeExport, preciseTrigForWebGpu } from '../onnx/normalize';
import { detectStructure, type HooksSidecar, type ModelStructure } from '../onnx/detect';
import { addLogitLensOutputs, IN, instrument, LAST_LOGITS } from '../onnx/instrument';
import { LAST_STATS, withLastMlpOnLastPosition, withLastRowStats, withOutputsOnly } from '../onnx/lean';
import type { Tokenizer } from '../tokenizer';
import { gib, SESSION_OVERHEAD, weightBytes, type MemoryEstimate, type MemoryOptions, type SessionKind } from './memory';
import { size, type ExternalFile, type F32, type Feed, type Runtime, type Session } from './runtime';

export type AblationKind = 'zero' | 'mean' | 'resample';

export interface ModelInfo {
  architecture: string;
  layers: number;
  heads: number;
  dModel: number;
  dHead: number;
  vocab: number;
  contextLength?: number;
  opset: number;
  features: ModelStructure['features'];
  hooks: Record<HookName, string>;
  backend: string;
  detection: string;
  /** What loading changed in the export (merged decoder inlined, fp16 weights converted); absent when nothing. */
  normalized?: string[];
}

/** One row's ablation: which nodes, replaced by what. */
export interface Ablation {
  nodes: NodeId[];
  kind: AblationKind;
}

/** Mean activation of each head (hook_z slice, [H*Dh]) and MLP (hook_mlp_out, [D]) over prompts and positions. */
export interface MeanActivations {
  z: Float32Array[];
  mlp: Float32Array[];
  count: number;
}

/** Activations of corrupted prompts, one per batch row, for resample ablation. */
export interface ResampleSource {
  z: F32[];
  mlp: F32[];
}

export interface RunRequest {
  /** Token ids, one row per prompt; all rows the same length. */
  ids: number[][];
  hooks?: HookName[];
  /** Per batch row (undefined: unablated), so many different ablations run in one call. */
  ablations?: (Ablation | undefined)[];
  means?: MeanActivations;
  resample?: ResampleSource;
  /** Return only the last position's logits ([B, 1, vocab]): what metrics need, far less to copy. */
  lastOnly?: boolean;
  /** Also return the logit lens: each layer's residual stream through the final norm and unembedding. */
  lens?: boolean;
  /**
   * Start at this layer from the given clean blocks.<layer>.hook_resid_pre ([B, T, D]) instead of from the
   * tokens: what an ablation that touches nothing below the layer gives, for less work (lastOnly runs without
   * hooks only; engines that cannot skip layers run the whole model, with the same result).
   */
  start?: { layer: number; resid: F32 };
  /**
   * With lastOnly, no hooks and no lens: also return RunResult.stats where the engine computes them in its graph
   * (onnxruntime's CPU kernels, native or WASM, opset 13 on; not WebGPU).
   */
  stats?: boolean;
}

export interface RunResult {
  logits: F32;
  /** [B, 1, 4] per row of the last-position logits (core/onnx/lean.ts LAST_STATS), when asked for and available. */
  stats?: F32;
  activations: Record<HookName, F32>;
  /** Per layer [B, T, vocab], when requested. */
  lens?: F32[];
}

export interface GradientRequest {
  /** Token ids, one row per prompt; all rows the same length. */
  ids: number[][];
  /**
   * dL/d(last-position logits), [B, vocab] row-major: given, or computed from the last-position logits of the
   * same inputs (then a forward run comes first), for metrics whose gradient depends on them.
   */
  seed: Float32Array | ((logitsLast: F32) => Float32Array);
  /** Values of the ablation inputs (IN.*: masks and additive terms, any real values); missing ones are neutral. */
  patch?: Record<string, Feed>;
  /**
   * Hooks to return as they are in this run (after the patch): those up to the last layer's MLP, whose
   * hook_mlp_out may come back at the last position only (see GradientResult.mlp).
   */
  hooks?: HookName[];
  /** Also dL/d(hook_resid_pre) of every layer (a separate gradient graph: the first layer's costs a backward pass through its attention). */
  residPre?: boolean;
}

export interface GradientResult {
  /** [B, 1, vocab] */
  logits: F32;
  /** Per layer: dL/d(hook_z) in the engine's patch layout [B, heads, T, d_head] (hook_z is [B, T, heads, d_head]). */
  z: F32[];
  /**
   * Per layer: dL/d(hook_mlp_out), [B, T, d_model]. The last layer's may be [B, 1, d_model], at the last position
   * only (the only one that reaches the logits: the gradient is 0 at the others), and so is that hook in
   * `activations`, when that MLP works per position.
   */
  mlp: F32[];
  /** Per layer: dL/d(hook_resid_pre), [B, T, d_model], when GradientRequest.residPre asked for it. */
  residPre?: F32[];
  activations: Record<HookName, F32>;
}

interface GradientGraph {
  session: Session; z: string[]; mlp: string[]; residPre: string[];
  /** Hooks the run can return, and the tensor each is read from. */
  hookTensors: Record<HookName, string>;
}

/**
 * Ablated values of every upstream node for edge ablation, broadcastable over batch rows and positions:
 * input [B|1, T|1, D], heads per layer [B|1, T|1, H, D] (each head's share of the attention output), MLPs per
 * layer [B|1, T|1, D].
 */
export interface EdgeValues { input: F32; heads: F32[]; mlp: F32[] }

export interface EdgeRunRequest {
  ids: number[][];
  /**
   * Per batch row, a weight per edge (EdgeLayout order; undefined row: all 0): 1 replaces what flows along the
   * edge by the source's ablated value, 0 keeps it, values between interpolate.
   */
  weights?: (Float32Array | undefined)[];
  /** Ablated values (default: zeros, i.e. zero ablation). */
  ablated?: EdgeValues;
  /** Also return every node's actual output in this run. */
  outputs?: boolean;
}

export interface EdgeRunResult {
  /** [B, 1, vocab] */
  logits: F32;
  outputs?: EdgeValues;
}

interface EdgeGraphs { forward?: Promise<Session>; gradient?: Promise<{ session: Session; grads: string[] }>; gradientAtZero?: Promise<{ session: Session; grads: string[] }> }

export interface EngineOptions {
  /** Names the model in errors (usually its path). */
  what: string;
  tokenizer?: Tokenizer;
  sidecar?: HooksSidecar;
  sidecarPath?: string;
  external?: ExternalFile[];
  /**
   * Reads the model again (the same file, decoded), for sessions built after loading. Without it the engine
   * keeps the decoded model in memory. Must throw a UserError when the file changed since it was loaded.
   */
  reload?: () => OnnxModel;
  /**
   * Edge graphs multiply each head's copy of the residual stream by that head's columns of the q/k/v and output
   * projections only, where the export's projections are recognised (core/onnx/edges.ts). False: always clone
   * the projections with the heads folded into the batch (H× the work; the same numbers). For tests.
   */
  edgeHeadSlicing?: boolean;
  /**
   * Layers per block of upstream outputs in the EAP graph's contraction (addEdgeGradientsAtZero); by default
   * about a quarter of the layers. Any value gives the same numbers. For tests.
   */
  eapBlockLayers?: number;
  /** Memory planning: see MemoryOptions. Without it nothing is checked. */
  memory?: MemoryOptions;
}

/**
 * Runs an instrumented ONNX language model: records any hook and ablates any head or MLP, per batch row.
 * The same code runs in Node (CLI, extension host) and in the webview; only the Runtime differs.
 */
export class Engine {
  /** What the gradient graph is built from (set by fromModel). */
  private source?: { runtime: Runtime; instrumented?: OnnxModel; reload?: () => OnnxModel; external: ExternalFile[]; what: string; edgeHeadSlicing?: boolean; eapBlockLayers?: number };

  /**
   * The instrumented model, for the sessions built on first use (metrics, lens, gradients, edges, layer
   * skipping): kept from loading, or re-read through EngineOptions.reload so a large model's weights are not
   * held in JS memory for the engine's lifetime.
   */
  private instrumented(): OnnxModel {
    const src = this.source!;
    if (src.instrumented) return src.instrumented;
    const model = src.reload!();
    normalizeExport(model, src.what);
    if (src.runtime.backend === 'webgpu') preciseTrigForWebGpu(model);
    return instrument(model, this.structure).model;
  }
  /** Memory planning (EngineOptions.memory) and the weight bytes it counts from. */
  private memory?: MemoryOptions;
  private weights = 0;
  /** Sessions built (or being built) and what each is counted at. */
  private readonly held = new Map<SessionKind, number>();
  /** The backward graphs' sessions, without and with dL/d(resid_pre), built on first use (most runs never need them). */
  private gradient: { lean?: Promise<GradientGraph>; withResid?: Promise<GradientGraph> } = {};

  private constructor(
    private readonly session: Session,
    readonly info: ModelInfo,
    readonly structure: ModelStructure,
    private readonly taps: Record<HookName, string>,
    readonly tokenizer: Tokenizer | undefined,
    readonly hookNames: HookName[],
  ) {}

  /** The logit-lens session, built on first use from a copy of the instrumented model. */
  private lens?: Promise<{ session: Session; outputs: string[] }>;
  /**
   * The session for metrics: the last position's logits only (no hook taps, the final norm and unembedding on
   * the last position). Built on first use; most analysis runs only this.
   */
  private last?: Promise<Session>;

  static async create(runtime: Runtime, bytes: Uint8Array, opts: EngineOptions): Promise<Engine> {
    const model = decodeModel(bytes, opts.what);
    return Engine.fromModel(runtime, model, opts);
  }

  static async fromModel(runtime: Runtime, model: OnnxModel, opts: EngineOptions): Promise<Engine> {
    const normalized = normalizeExport(model, opts.what);
    if (runtime.backend === 'webgpu' && preciseTrigForWebGpu(model)) normalized.notes.push('Sin/Cos computed in float32 arithmetic (WebGPU\'s are imprecise)');
    const structure = detectStructure(model, opts.what, opts.sidecar, opts.sidecarPath);
    const locations = externalLocations(model);
    const external = opts.external ?? [];
    const missing = locations.filter((l) => !external.some((f) => f.location === l));
    if (missing.length) {
      throw new UserError(`${opts.what} stores weights in external data files that were not found beside it: ${missing.join(', ')}`);
    }
    const opset = opsetVersion(model);
    const inst = instrument(model, structure);
    const weights = weightBytes(model);
    const memory = opts.memory;
    if (memory) {
      const need = weights + SESSION_OVERHEAD;
      if (need > memory.budget) {
        throw new UserError(`${opts.what} has ${gib(weights)} of weights; loading it needs about ${gib(need)}, more than the memory budget of ${gib(memory.budget)}${memory.budgetSource ? ` (${memory.budgetSource})` : ''}. ${memory.raiseHint ?? 'Use a smaller model or a machine with more memory.'}`);
      }
    }
    const session = await runtime.createSession(encodeModel(inst.model), external);
    const layers = structure.layers.length;
    const hookNames = allHookNames(layers, !!structure.posEmbed);
    // One tiny forward pass reads the dimensions the graph leaves symbolic.
    const probe = new Engine(session, {} as ModelInfo, structure, inst.taps, opts.tokenizer, hookNames);
    const shapes = await probe.runRaw([[0, 0]], ['blocks.0.attn.hook_pattern', 'blocks.0.attn.hook_z', 'blocks.0.hook_resid_pre', 'logits'], undefined);
    const [, heads] = shapes['blocks.0.attn.hook_pattern']!.dims;
    const dHead = shapes['blocks.0.attn.hook_z']!.dims[3]!;
    const dModel = shapes['blocks.0.hook_resid_pre']!.dims[2]!;
    const vocab = shapes['logits']!.dims[2]!;
    const info: ModelInfo = {
      architecture: structure.architecture, layers, heads: heads!, dModel, dHead, vocab, contextLength: structure.contextLength, opset,
      features: structure.features, hooks: Object.fromEntries(hookNames.map((h) => [h, inst.hooks[h]!])), backend: runtime.backend,
      ...(normalized.notes.length ? { normalized: normalized.notes } : {}),
      detection: structure.source,
    };
    const engine = new Engine(session, info, structure, inst.taps, opts.tokenizer, hookNames);
    engine.source = opts.reload ? { runtime, reload: opts.reload, external, what: opts.what } : { runtime, instrumented: inst.model, external, what: opts.what };
    engine.source.edgeHeadSlicing = opts.edgeHeadSlicing;
    engine.source.eapBlockLayers = opts.eapBlockLayers;
    engine.memory = memory;
    engine.weights = weights;
    engine.held.set('main', engine.sessionBytes('main'));
    return engine;
  }

  // ---- memory planning (MemoryOptions) ----------------------------------------------------------------------

  /** The weight bytes the estimates count from. */
  get weightBytes(): number {
    return this.weights;
  }

  /** What a session of this kind holds: its own weights (unless shared) and its overhead. */
  sessionBytes(kind: SessionKind): number {
    if (this.memory?.sharedWeights) return SESSION_OVERHEAD;
    // A prepacking runtime packs each constant MatMul/Gemm operand per kernel: the backward graph reads every
    // weight in a second kernel (dA = g·Bᵀ), a second packed copy.
    const copies = kind === 'gradient' || kind === 'gradientResid' || kind === 'edgeGradient' || kind === 'edgeGradientAtZero' ? 2 : 1;
    return copies * this.weights + SESSION_OVERHEAD;
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
    const shared = this.memory?.sharedWeights ? this.weights : 0;
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
  private async reserve(kind: SessionKind, required: boolean, what: string, activations = 0, runWhat = ''): Promise<boolean> {
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
      m.sharedWeights ? `${gib(this.weights)} of weights shared by every session` : `${gib(this.weights)} of weights per session`,
      `${gib(e.held - (m.sharedWeights ? this.weights : 0))} for the sessions already built`,
      `${gib(e.session)} for ${what}`,
      ...(activations ? [`${gib(activations)} of activations${runWhat}`] : []),
    ];
    throw new UserError(`${what} needs about ${gib(e.total)} of memory (${parts.join(', ')}), more than the memory budget of ${gib(e.budget)}${m.budgetSource ? ` (${m.budgetSource})` : ''}. Use fewer or shorter prompts, an exact method that needs no gradients (--method patching), or a machine with more memory${m.raiseHint ? `; ${m.raiseHint}` : ''}.`);
  }

  /** Releases the cached sessions other than the main one and `keep` (they are rebuilt when next needed). */
  private async releaseOptional(keep: SessionKind): Promise<void> {
    const drop: Promise<{ release(): Promise<void> } | undefined>[] = [];
    const take = <T>(kind: SessionKind, p: Promise<T> | undefined, sessionOf: (v: T) => Session | undefined) => {
      if (kind === keep || !p) return false;
      drop.push(p.then(sessionOf, () => undefined));
      this.held.delete(kind);
      return true;
    };
    if (take('lens', this.lens, (v) => v.session)) this.lens = undefined;
    if (take('skip', this.skip, (v) => v)) this.skip = undefined;
    if (take('gradient', this.gradient.lean, (v) => v.session)) this.gradient.lean = undefined;
    if (take('gradientResid', this.gradient.withResid, (v) => v.session)) this.gradient.withResid = undefined;
    if (take('edgeForward', this.edgeGraphs.forward, (v) => v)) this.edgeGraphs.forward = undefined;
    if (take('edgeGradient', this.edgeGraphs.gradient, (v) => v.session)) this.edgeGraphs.gradient = undefined;
    if (take('edgeGradientAtZero', this.edgeGraphs.gradientAtZero, (v) => v.session)) this.edgeGraphs.gradientAtZero = undefined;
    if (take('metrics', this.last, (v) => v)) this.last = undefined;
    for (const p of drop) await (await p)?.release();
  }

  private released = false;

  /** Runs after release (the model's file changed and the cache reloaded it, or the workspace closed) fail clearly. */
  private checkAlive(): void {
    if (this.released) throw new UserError('the model was unloaded while this command was running (its file changed on disk, or the workspace closed); run the command again');
  }

  async release(): Promise<void> {
    this.released = true;
    this.held.clear();
    await this.session.release();
    for (const p of [this.gradient.lean, this.gradient.withResid]) {
      const g = await p?.catch(() => undefined);
      await g?.session.release();
    }
    const l = await this.lens?.catch(() => undefined);
    await l?.session.release();
    const last = await this.last?.catch(() => undefined);
    await last?.release();
    const sk = await this.skip?.catch(() => undefined);
    await sk?.release();
    const ef = await this.edgeGraphs.forward?.catch(() => undefined);
    await ef?.release();
    for (const p of [this.edgeGraphs.gradient, this.edgeGraphs.gradientAtZero]) {
      const eg = await p?.catch(() => undefined);
      await eg?.session.release();
    }
  }

  private lastSession(): Promise<Session> {
    this.last ??= (async () => {
      const { runtime, external } = this.source!;
      const lean = withOutputsOnly(this.instrumented(), this.leanOutputs());
      const model = withLastMlpOnLastPosition(lean, this.structure)?.model ?? lean;
      return runtime.createSession(encodeModel(this.hasRowStats ? withLastRowStats(model) : model), external);
    })();
    return this.last;
  }

  /**
   * What the lean metrics session computes: the last-position logits, plus every layer's resid_pre (values the
   * forward computes anyway; a clean run fetches them once for the rows of a sweep that start at a later layer).
   */
  private leanOutputs(): string[] {
    return [...new Set([LAST_LOGITS, ...this.structure.layers.map((_, l) => this.taps[hookName('resid_pre', l)]!)])];
  }

  /** Whether the metrics and skip sessions output LAST_STATS (RunRequest.stats). */
  private get hasRowStats(): boolean {
    return !!this.source && this.source.runtime.backend !== 'webgpu' && this.info.opset >= 13;
  }

  private skip?: Promise<Session | undefined>;

  /** Whether layer skipping may be available (native onnxruntime), without building its session to find out. */
  get maySkipLayers(): boolean {
    return this.source?.runtime.backend === 'node';
  }

  /** Whether runs can start at a later layer (RunRequest.start): native onnxruntime, blocks that can be cut out. */
  async canSkipLayers(): Promise<boolean> {
    return (await this.skipSession()) !== undefined;
  }

  private skipSession(): Promise<Session | undefined> {
    this.skip ??= (async () => {
      if (!this.source || this.source.runtime.backend !== 'node') return undefined;
      // Without room for it, runs start at the first layer (the same results, more work).
      if (!(await this.reserve('skip', false, 'the layer-skipping session'))) return undefined;
      const { runtime, external } = this.source;
      const full = withOutputsOnly(this.instrumented(), [LAST_LOGITS]);
      // The last layer's MLP on the last position only, as in the metrics session: that layer's block ends at its
      // resid_mid then.
      const trimmed = withLastMlpOnLastPosition(full, this.structure);
      const model = trimmed?.model ?? full;
      const structure = trimmed ? { ...this.structure, layers: this.structure.layers.map((L, j) => (j === this.structure.layers.length - 1 ? { ...L, residPost: trimmed.lastStart } : L)) } : this.structure;
      // withOutputsOnly gives new node and initializer lists but shares the input list, which this adds to.
      const copy = { ...model, graph: { ...model.graph!, input: [...model.graph!.input] } };
      if (!addLayerSkipping(copy, structure)) return undefined;
      return runtime.createSession(encodeModel(this.hasRowStats ? withLastRowStats(copy) : copy), external);
    })();
    return this.skip;
  }

  /** The session a run with these fetches needs: the lean one when only the last logits (and resid_pre) are read. */
  private async sessionFor(fetches: string[]): Promise<Session> {
    if (!this.source || !fetches.includes(LAST_LOGITS)) return this.session;
    const lean = new Set(this.leanOutputs());
    if (this.hasRowStats) lean.add(LAST_STATS);
    if (!fetches.every((f) => lean.has(f))) return this.session;
    // Without room for the lean session, the main one computes the same logits (more work per run).
    return (await this.reserve('metrics', false, 'the metrics session')) ? this.lastSession() : this.session;
  }

  private lensSession(): Promise<{ session: Session; outputs: string[] }> {
    this.lens ??= (async () => {
      await this.reserve('lens', true, 'the logit-lens session');
      const { runtime, external } = this.source!;
      const model = this.copyOfInstrumented();
      const outputs = addLogitLensOutputs(model, this.structure);
      return { session: await runtime.createSession(encodeModel(model), external), outputs };
    })();
    return this.lens;
  }

  /**
   * Gradients of L = Σ seed ⊙ logits_last with respect to every head's output (z), MLP output and
   * resid_pre, at the given ablation inputs, from a backward graph added to a copy of the instrumented model
   * (core/onnx/autodiff.ts) and run by the same runtime: one run gives the forward pass and every gradient.
   */
  async gradients(req: GradientRequest): Promise<GradientResult> {
    const { B, T } = this.checkBatch(req.ids);
    const hooks = req.hooks ?? [];
    await this.reserve(req.residPre ? 'gradientResid' : 'gradient', true, 'the gradient run (backward graph)', B * this.gradientRowBytes(T), ` for ${B} prompt${B === 1 ? '' : 's'} of ${T} tokens`);
    const graph = await this.gradientGraph(!!req.residPre);
    for (const h of hooks) if (!graph.hookTensors[h]) throw new UserError(`hook "${h}" cannot be read from a gradient run (it reads hook_z, hook_mlp_out and the other hooks up to the last layer's MLP; the logits are returned at the last position)`);
    const feeds: Record<string, Feed> = { ...this.baseFeeds(req.ids), ...req.patch };
    const seed = typeof req.seed === 'function' ? req.seed((await (await this.sessionFor([LAST_LOGITS])).run(feeds, [LAST_LOGITS]))[LAST_LOGITS]!) : req.seed;
    if (seed.length !== B * this.info.vocab) throw new Error(`gradient seed has ${seed.length} values, expected ${B} × ${this.info.vocab}`);
    feeds[GRAD_SEED] = f32([B, 1, this.info.vocab], seed);
    const tapOf = hooks.map((h) => graph.hookTensors[h]!);
    const out = await graph.session.run(feeds, [...new Set([LAST_LOGITS, ...graph.z, ...graph.mlp, ...graph.residPre, ...tapOf])]);
    return {
      logits: out[LAST_LOGITS]!, z: graph.z.map((t) => out[t]!), mlp: graph.mlp.map((t) => out[t]!), residPre: req.residPre ? graph.residPre.map((t) => out[t]!) : undefined,
      activations: Object.fromEntries(hooks.map((h, i) => [h, out[tapOf[i]!]!])),
    };
  }

  private gradientGraph(withResid: boolean): Promise<GradientGraph> {
    const key = withResid ? 'withResid' : 'lean';
    this.gradient[key] ??= (async () => {
      const { runtime, external } = this.source!;
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
      const session = await runtime.createSession(encodeModel(model), external);
      const names = (ts: string[]) => ts.map((t) => grads[t]!);
      return { session, z: names(z), mlp: names(mlp), residPre: names(residPre), hookTensors };
    })();
    return this.gradient[key]!;
  }

  /** input_ids' dim_params: every run has at least one prompt of at least one token (checkBatch). */
  private positiveDims(model: OnnxModel): string[] {
    const v = model.graph!.input.find((i) => i.name === this.structure.inputIds);
    return (v?.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam).filter((p): p is string => !!p);
  }

  /** Edges of the model's computational graph and where their masks live (DESIGN §3 ids). */
  get edges(): EdgeLayout {
    this.layout ??= edgeLayout(this.info.layers, this.info.heads, this.info.features.block === 'parallel');
    return this.layout;
  }
  private layout?: EdgeLayout;
  private edgeGraphs: EdgeGraphs = {};
  /** Edge gradient sessions that have run once. */
  private edgeGradientRan = new WeakSet<Session>();

  /** A copy of the instrumented model to rewrite (a fresh one when it is re-read anyway). */
  private copyOfInstrumented(): OnnxModel {
    const src = this.source!;
    return src.instrumented ? decodeModel(encodeModel(src.instrumented), 'the instrumented model') : this.instrumented();
  }

  /** The instrumented model with per-destination inputs (core/onnx/edges.ts). */
  private edgeModel(): { model: OnnxModel; outputs: string[] } {
    const model = this.copyOfInstrumented();
    const { outputs } = addEdgeInputs(model, this.structure, this.info.heads, this.source!.what, { sliceHeads: this.source!.edgeHeadSlicing ?? true });
    return { model, outputs };
  }

  private edgeForward(): Promise<Session> {
    this.edgeGraphs.forward ??= (async () => {
      await this.reserve('edgeForward', true, 'the edge-ablation session');
      const { runtime, external } = this.source!;
      const { model, outputs } = this.edgeModel();
      const L = this.structure.layers;
      const keep = [LAST_LOGITS, L[0]!.residPre, ...outputs, ...L.map((_, l) => this.taps[hookName('mlp_out', l)]!)];
      const session = await runtime.createSession(encodeModel(withOutputsOnly(model, [...new Set(keep)])), external);
      try {
        // Shapes the export computes outside the cloned paths surface only when run: try a small batch.
        await session.run({ ...this.baseFeeds([[0, 0, 0], [0, 0, 0]]), ...this.maskFeeds(2, undefined), ...this.ablatedFeeds(undefined) }, [LAST_LOGITS]);
      } catch (e) {
        await session.release();
        throw edgeExportError(e);
      }
      return session;
    })();
    return this.edgeGraphs.forward;
  }

  /**
   * The edge gradient graph. `atZero`: for all-zero edge weights only (EAP), a graph without the masks, where
   * each destination reads its own copy of the stream and the mask gradients are contracted from the copies'
   * gradients (addEdgeGradientsAtZero): no mask inputs to feed.
   */
  private edgeGradient(atZero: boolean): Promise<{ session: Session; grads: string[] }> {
    const key = atZero ? 'gradientAtZero' : 'gradient';
    this.edgeGraphs[key] ??= (async () => {
      await this.reserve(atZero ? 'edgeGradientAtZero' : 'edgeGradient', true, 'the edge gradient session');
      const { runtime, external, what, edgeHeadSlicing, eapBlockLayers } = this.source!;
      let model: OnnxModel;
      let names: string[];
      if (atZero) {
        model = this.copyOfInstrumented();
        names = addEdgeGradientsAtZero(model, this.structure, this.info.heads, what, LAST_LOGITS, this.edges, { sliceHeads: edgeHeadSlicing ?? true, positive: this.positiveDims(model), blockLayers: eapBlockLayers }).grads;
      } else {
        model = this.edgeModel().model;
        const masks = this.edges.masks.map((m) => m.name);
        const { grads } = addGradients(model, LAST_LOGITS, masks, { positive: this.positiveDims(model) });
        names = masks.map((m) => grads[m]!);
      }
      const session = await runtime.createSession(encodeModel(withOutputsOnly(model, [LAST_LOGITS, ...names])), external);
      return { session, grads: names };
    })();
    return this.edgeGraphs[key]!;
  }

  /** Token ids, the inputs Hugging Face exports add, and neutral ablation inputs: what every run feeds. */
  private baseFeeds(ids: number[][]): Record<string, Feed> {
    const B = ids.length;
    const T = ids[0]!.length;
    return {
      [this.structure.inputIds]: { type: 'int64', dims: [B, T], data: int64Of(ids, B * T) },
      ...this.extraFeeds(B, T),
      ...this.neutralFeeds(),
    };
  }

  /**
   * Mask inputs from per-row edge weights (one entry per batch row, or none). They are [1, rows, cols] when no row
   * ablates anything, unless gradients per row are wanted (`perRow`).
   */
  private maskFeeds(B: number, weights: (Float32Array | undefined)[] | undefined, perRow = false): Record<string, Feed> {
    checkEdgeWeightRows(B, weights);
    const layout = this.edges;
    const feeds: Record<string, Feed> = {};
    const any = perRow || weights?.some((w) => w && w.some((x) => x !== 0));
    const data = new Map<string, Float32Array>();
    for (const m of layout.masks) {
      data.set(m.name, new Float32Array((any ? B : 1) * m.rows * m.cols));
      feeds[m.name] = f32([any ? B : 1, m.rows, m.cols], data.get(m.name)!);
    }
    if (any && weights) {
      const E = layout.edges.length;
      const maskOf = new Map(layout.masks.map((m) => [m.name, m]));
      weights.forEach((w, b) => {
        if (!w) return;
        if (w.length !== E) throw new Error(`edge weights have ${w.length} entries, the model has ${E} edges`);
        for (let e = 0; e < E; e++) {
          if (w[e] === 0) continue;
          const slot = layout.edges[e]!;
          const m = maskOf.get(slot.input)!;
          data.get(slot.input)![(b * m.rows + slot.row) * m.cols + slot.col] = w[e]!;
        }
      });
    }
    return feeds;
  }

  /** The ablated values every edge graph reads (zeros when not given). */
  private ablatedFeeds(ablated: EdgeValues | undefined): Record<string, Feed> {
    const { layers, heads, dModel } = this.info;
    const feeds: Record<string, Feed> = {};
    feeds[EDGE.corrInput] = ablated ? f32(ablated.input.dims, ablated.input.data) : f32([1, 1, dModel], new Float32Array(dModel));
    for (let l = 0; l < layers; l++) {
      feeds[EDGE.corrHeads(l)] = ablated ? f32(ablated.heads[l]!.dims, ablated.heads[l]!.data) : f32([1, 1, heads, dModel], new Float32Array(heads * dModel));
      feeds[EDGE.corrMlp(l)] = ablated ? f32(ablated.mlp[l]!.dims, ablated.mlp[l]!.data) : f32([1, 1, dModel], new Float32Array(dModel));
    }
    return feeds;
  }

  /** A forward run with edge ablation: per row, what flows along chosen edges is replaced by ablated values. */
  async runEdges(req: EdgeRunRequest): Promise<EdgeRunResult> {
    const { B } = this.checkBatch(req.ids);
    const session = await this.edgeForward();
    const L = this.structure.layers;
    const mlpTaps = L.map((_, l) => this.taps[hookName('mlp_out', l)]!);
    const fetch = req.outputs ? [LAST_LOGITS, L[0]!.residPre, ...L.map((_, l) => EDGE.outHeads(l)), ...mlpTaps] : [LAST_LOGITS];
    const out = await session.run({ ...this.baseFeeds(req.ids), ...this.maskFeeds(B, req.weights), ...this.ablatedFeeds(req.ablated) }, [...new Set(fetch)]);
    return {
      logits: out[LAST_LOGITS]!,
      outputs: req.outputs ? { input: out[L[0]!.residPre]!, heads: L.map((_, l) => out[EDGE.outHeads(l)]!), mlp: mlpTaps.map((t) => out[t]!) } : undefined,
    };
  }

  /**
   * d(Σ seed ⊙ last logits)/d(edge weight) per row and edge, [B × E] (EdgeLayout order), at the given weights:
   * at weight 0 this is Σ_positions (ablated − actual output of the source) · ∂/∂(the destination's input).
   */
  async edgeGradients(req: EdgeRunRequest & { seed: Float32Array }): Promise<{ logits: F32; grads: Float32Array }> {
    const { B } = this.checkBatch(req.ids);
    checkEdgeWeightRows(B, req.weights);
    const atZero = !req.weights || req.weights.every((w) => !w || w.every((x) => x === 0));
    const { session, grads } = await this.edgeGradient(atZero);
    const V = this.info.vocab;
    if (req.seed.length !== B * V) throw new Error(`gradient seed has ${req.seed.length} values, expected ${B} × ${V}`);
    // The EAP graph (at zero) has no masks.
    const masks = atZero ? {} : this.maskFeeds(B, req.weights, true);
    const feeds: Record<string, Feed> = { ...this.baseFeeds(req.ids), ...masks, ...this.ablatedFeeds(req.ablated), [GRAD_SEED]: f32([B, 1, V], req.seed) };
    let out: Record<string, F32>;
    try {
      out = await session.run(feeds, [LAST_LOGITS, ...grads]);
      this.edgeGradientRan.add(session);
    } catch (e) {
      // Shapes the export computes outside the rewritten paths surface only when run (edgeForward tries a small
      // batch for that): a first run that fails says so; later failures are the run's own.
      if (e instanceof UserError || this.edgeGradientRan.has(session)) throw e;
      throw edgeExportError(e);
    }
    const layout = this.edges;
    const E = layout.edges.length;
    const res = new Float32Array(B * E);
    const byInput = new Map(layout.masks.map((m, i) => [m.name, { m, g: out[grads[i]!]! }]));
    layout.edges.forEach((slot, e) => {
      const { m, g } = byInput.get(slot.input)!;
      // The gradient has the mask's shape as fed: [B or 1, rows, cols].
      const perRow = g.dims[0] === B ? m.rows * m.cols : 0;
      for (let b = 0; b < B; b++) res[b * E + e] = g.data[b * perRow + slot.row * m.cols + slot.col]!;
    });
    return { logits: out[LAST_LOGITS]!, grads: res };
  }

  /** Checks token ids against the vocabulary and the context length. */
  checkIds(ids: number[], what = 'prompt'): void {
    if (ids.length === 0) throw new UserError(`${what} is empty (no tokens)`);
    const ctx = this.info.contextLength;
    if (ctx !== undefined && ids.length > ctx) {
      throw new UserError(`${what} is ${ids.length} tokens, longer than the model's context of ${ctx} tokens; shorten it`);
    }
    const bad = ids.find((i) => !Number.isInteger(i) || i < 0 || i >= this.info.vocab);
    if (bad !== undefined) throw new UserError(`${what} has token id ${bad}, outside the vocabulary 0..${this.info.vocab - 1}`);
  }

  /** A batch: at least one row, every row valid and of one length (the engine batches rows of one length). */
  private checkBatch(ids: number[][]): { B: number; T: number } {
    this.checkAlive();
    const B = ids.length;
    if (B === 0) throw new UserError('no prompts to run');
    const T = ids[0]!.length;
    ids.forEach((row, i) => {
      this.checkIds(row, B > 1 ? `prompt ${i + 1}` : 'prompt');
      if (row.length !== T) throw new Error(`engine batch rows must have one length (row ${i} has ${row.length}, row 0 has ${T})`);
    });
    return { B, T };
  }

  checkNodes(nodes: string[]): NodeId[] {
    return nodes.map((id) => {
      checkNodeInModel(id, parseNodeId(id), this.info);
      return id as NodeId;
    });
  }

  async run(req: RunRequest): Promise<RunResult> {
    const { B, T } = this.checkBatch(req.ids);
    const hooks = req.hooks ?? [];
    for (const h of hooks) if (!this.taps[h]) throw new UserError(`unknown hook "${h}" (run \`circuitlens info\` to list hooks)`);
    if (req.ablations && req.ablations.length !== B) throw new Error('ablations must have one entry per batch row');
    const logitsTap = req.lastOnly ? LAST_LOGITS : 'logits';
    const stats = !!req.stats && !!req.lastOnly && !hooks.length && !req.lens && this.hasRowStats;
    if (req.start) {
      if (!req.lastOnly || hooks.length || req.lens) throw new Error('RunRequest.start: lastOnly runs without hooks or lens only');
      const skip = await this.skipSession();
      if (skip) {
        const { layer, resid } = req.start;
        if (!Number.isInteger(layer) || layer < 0 || layer >= this.info.layers) throw new Error(`RunRequest.start: no layer ${layer}`);
        if (resid.dims[0] !== B || resid.dims[1] !== T || resid.dims[2] !== this.info.dModel) throw new Error(`RunRequest.start: resid is [${resid.dims}], expected [${B}, ${T}, ${this.info.dModel}]`);
        const feeds = {
          ...this.baseFeeds(req.ids),
          ...this.ablationFeeds(req, B, T),
          [START.layer]: { type: 'int64', dims: [], data: BigInt64Array.of(BigInt(layer)) } as Feed,
          [START.resid]: f32(resid.dims, resid.data),
        };
        const out = await skip.run(feeds, stats ? [LAST_LOGITS, LAST_STATS] : [LAST_LOGITS]);
        return { logits: out[LAST_LOGITS]!, stats: out[LAST_STATS], activations: {} };
      }
    }
    const lens = req.lens ? await this.lensSession() : undefined;
    const t0 = performance.now();
    const raw = await this.runRaw(req.ids, [...new Set([logitsTap, ...(stats ? [LAST_STATS] : []), ...hooks, ...(lens?.outputs ?? [])])], this.ablationFeeds(req, B, T), lens?.session);
    if (req.lastOnly && !req.lens) this.fastestMsPerToken = Math.min(this.fastestMsPerToken ?? Infinity, (performance.now() - t0) / (B * T));
    const activations: Record<HookName, F32> = {};
    for (const h of hooks) activations[h] = raw[h]!;
    return { logits: raw[logitsTap]!, stats: raw[LAST_STATS], activations, lens: lens ? lens.outputs.map((t) => raw[t]!) : undefined };
  }

  private fastestMsPerToken?: number;

  /**
   * Milliseconds per token of a whole-model metrics forward (lastOnly), the fastest seen so far on this
   * engine (the first run of a session also builds it); undefined before any. For estimates of work ahead
   * (core/analysis/cost.ts), not a benchmark.
   */
  get msPerToken(): number | undefined {
    return this.fastestMsPerToken;
  }

  /** Mean of each head's z and each MLP's output over all prompts and positions (for mean ablation). */
  async means(prompts: number[][]): Promise<MeanActivations> {
    const { layers, heads, dHead, dModel } = this.info;
    const z = Array.from({ length: layers }, () => new Float64Array(heads * dHead));
    const mlp = Array.from({ length: layers }, () => new Float64Array(dModel));
    let count = 0;
    for (const group of groupByLength(prompts)) {
      const hooks = Array.from({ length: layers }, (_, l) => [`blocks.${l}.attn.hook_z`, `blocks.${l}.hook_mlp_out`]).flat();
      const res = await this.run({ ids: group.map((g) => g.ids), hooks });
      for (let l = 0; l < layers; l++) {
        accumulateRows(res.activations[`blocks.${l}.attn.hook_z`]!.data, z[l]!);
        accumulateRows(res.activations[`blocks.${l}.hook_mlp_out`]!.data, mlp[l]!);
      }
      count += group.length * group[0]!.ids.length;
    }
    const fin = (a: Float64Array) => Float32Array.from(a, (v) => v / count);
    return { z: z.map(fin), mlp: mlp.map(fin), count };
  }

  private ablationFeeds(req: RunRequest, B: number, T: number): Record<string, Feed> {
    const { layers, heads, dHead, dModel } = this.info;
    const feeds: Record<string, Feed> = {};
    // Which (row, layer, head) and (row, layer) are ablated, and with what.
    const headOff = Array.from({ length: layers }, () => new Uint8Array(B * heads));
    const mlpOff = Array.from({ length: layers }, () => new Uint8Array(B));
    const kinds = new Set<AblationKind>();
    req.ablations?.forEach((a, b) => {
      if (!a || a.nodes.length === 0) return;
      kinds.add(a.kind);
      for (const id of a.nodes) {
        const n = parseNodeId(id);
        checkNodeInModel(id, n, this.info);
        if (n.kind === 'head') headOff[n.layer]![b * heads + n.head] = 1;
        else if (n.kind === 'mlp') mlpOff[n.layer]![b] = 1;
        else throw new UserError(`node "${id}" cannot be ablated (only heads a<L>.h<H> and MLPs m<L>)`);
      }
    });
    if (kinds.has('mean') && !req.means) throw new Error('mean ablation needs means');
    if (kinds.has('resample') && !req.resample) throw new UserError('resample ablation needs corrupted prompts (a `corrupted` text for each prompt)');
    const kindOf = (b: number) => req.ablations?.[b]?.kind ?? 'zero';

    for (let l = 0; l < layers; l++) {
      const hOff = headOff[l]!;
      if (!hOff.some((x) => x)) {
        feeds[IN.zMask(l)] = f32([1, 1], new Float32Array([1]));
        feeds[IN.zAdd(l)] = f32([1, 1, 1, 1], new Float32Array(1));
      } else {
        feeds[IN.zMask(l)] = f32([B, heads], Float32Array.from(hOff, (x) => 1 - x));
        const needsT = [...Array(B).keys()].some((b) => kindOf(b) === 'resample' && hOff.subarray(b * heads, (b + 1) * heads).some((x) => x));
        const Tz = needsT ? T : 1;
        const add = new Float32Array(B * Tz * heads * dHead);
        for (let b = 0; b < B; b++) {
          const kind = kindOf(b);
          if (kind === 'zero') continue;
          for (let h = 0; h < heads; h++) {
            if (!hOff[b * heads + h]) continue;
            for (let t = 0; t < Tz; t++) {
              const dst = ((b * Tz + t) * heads + h) * dHead;
              if (kind === 'mean') add.set(req.means!.z[l]!.subarray(h * dHead, (h + 1) * dHead), dst);
              else add.set(sourceRow(req.resample!.z[l]!, b, T, t, heads * dHead).subarray(h * dHead, (h + 1) * dHead), dst);
            }
          }
        }
        feeds[IN.zAdd(l)] = f32([B, Tz, heads, dHead], add);
      }
      const mOff = mlpOff[l]!;
      if (!mOff.some((x) => x)) {
        feeds[IN.mlpMask(l)] = f32([1], new Float32Array([1]));
        feeds[IN.mlpAdd(l)] = f32([1, 1, 1], new Float32Array(1));
      } else {
        feeds[IN.mlpMask(l)] = f32([B], Float32Array.from(mOff, (x) => 1 - x));
        const needsT = [...Array(B).keys()].some((b) => kindOf(b) === 'resample' && mOff[b]);
        const Tm = needsT ? T : 1;
        const add = new Float32Array(B * Tm * dModel);
        for (let b = 0; b < B; b++) {
          if (!mOff[b] || kindOf(b) === 'zero') continue;
          for (let t = 0; t < Tm; t++) {
            const src = kindOf(b) === 'mean' ? req.means!.mlp[l]! : sourceRow(req.resample!.mlp[l]!, b, T, t, dModel);
            add.set(src, (b * Tm + t) * dModel);
          }
        }
        feeds[IN.mlpAdd(l)] = f32([B, Tm, dModel], add);
      }
    }
    return feeds;
  }

  private async runRaw(ids: number[][], hooks: HookName[], ablation: Record<string, Feed> | undefined, session = this.session): Promise<Record<HookName, F32>> {
    // The ablation inputs, when given, replace the neutral ones (the same names).
    const feeds: Record<string, Feed> = { ...this.baseFeeds(ids), ...ablation };
    const tensorOf = (h: HookName) => this.taps[h] ?? h;
    const fetches = [...new Set(hooks.map(tensorOf))];
    const out = await (session === this.session ? await this.sessionFor(fetches) : session).run(feeds, fetches);
    const res: Record<HookName, F32> = {};
    for (const h of hooks) res[h] = out[tensorOf(h)]!;
    return res;
  }

  private neutralFeeds(): Record<string, Feed> {
    const feeds: Record<string, Feed> = {};
    this.structure.layers.forEach((_, l) => {
      feeds[IN.zMask(l)] = f32([1, 1], new Float32Array([1]));
      feeds[IN.zAdd(l)] = f32([1, 1, 1, 1], new Float32Array(1));
      feeds[IN.mlpMask(l)] = f32([1], new Float32Array([1]));
      feeds[IN.mlpAdd(l)] = f32([1, 1, 1], new Float32Array(1));
    });
    return feeds;
  }

  /** Inputs of Hugging Face exports: attention_mask (all ones), position_ids (0..T-1), empty past key/values. */
  private extraFeeds(B: number, T: number): Record<string, Feed> {
    const feeds: Record<string, Feed> = {};
    for (const v of this.structure.extraInputs) {
      const elem = v.type?.tensorType?.elemType;
      const name = v.name;
      if (/attention_mask/.test(name)) feeds[name] = typed(elem, [B, T], () => 1, name);
      else if (/position_ids/.test(name)) feeds[name] = typed(elem, [B, T], (i) => i % T, name);
      else if (/past/.test(name)) {
        // [batch, kv_heads, past_seq, head_dim]: batch from the prompt, an empty past; the rest must be fixed.
        const dims = (v.type?.tensorType?.shape?.dim ?? []).map((d, i) => {
          const fixed = d.dimValue !== undefined && d.dimValue !== null ? Number(d.dimValue) : 0;
          if (fixed > 0) return fixed;
          if (i === 0) return B;
          if (i === 2) return 0;
          throw new UserError(`input "${name}" has a symbolic dimension ${i} (${d.dimParam ?? '?'}); CircuitLens fills past key/values as [batch, heads, 0, head_dim] and needs the other sizes fixed in the export`);
        });
        feeds[name] = typed(elem, dims, () => 0, name);
      } else {
        throw new UserError(`the model has an input "${name}" that CircuitLens does not know how to fill (it fills input_ids, attention_mask, position_ids and past key/values)`);
      }
    }
    return feeds;
  }
}

/** An edge graph that onnxruntime could not run the first time: the export, not the request. */
function edgeExportError(e: unknown): UserError {
  return new UserError(`edge-level analysis cannot run on this export (${(e as Error).message.split('\n')[0]}); node-level analysis works on it`);
}

function checkEdgeWeightRows(B: number, weights: unknown[] | undefined): void {
  if (weights && weights.length !== B) throw new Error('edge weights must have one entry per batch row');
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Rows of small integers (token ids, positions) as int64, `n` values in all. On little-endian machines it writes
 * each value's two 32-bit halves instead of making a BigInt per value (a sixth of a demo sweep's JavaScript time).
 */
export function int64Of(rows: number[][], n: number): BigInt64Array {
  const out = new BigInt64Array(n);
  let i = 0;
  if (LITTLE_ENDIAN && rows.every((r) => r.every((v) => Number.isInteger(v) && Math.abs(v) < 2 ** 31))) {
    const words = new Int32Array(out.buffer);
    for (const r of rows) for (const v of r) { words[2 * i] = v; words[2 * i + 1] = v < 0 ? -1 : 0; i++; }
  } else {
    for (const r of rows) for (const v of r) out[i++] = BigInt(v);
  }
  return out;
}

function f32(dims: number[], data: Float32Array): Feed {
  return { type: 'float32', dims, data };
}

function typed(elem: number | undefined, dims: number[], fill: (i: number) => number, name: string): Feed {
  const n = size(dims);
  switch (elem) {
    case 7: return { type: 'int64', dims, data: int64Of([Array.from({ length: n }, (_, i) => fill(i))], n) };
    case 6: return { type: 'int32', dims, data: Int32Array.from({ length: n }, (_, i) => fill(i)) };
    case 1: return { type: 'float32', dims, data: Float32Array.from({ length: n }, (_, i) => fill(i)) };
    case 9: return { type: 'bool', dims, data: Uint8Array.from({ length: n }, (_, i) => fill(i)) };
    default: throw new UserError(`input "${name}" has element type ${elem}, which CircuitLens cannot fill (float16 models are not supported yet)`);
  }
}

/** Row `t` of batch row `b` of a [B, T, ...] activation whose trailing size is `width`. */
function sourceRow(src: F32, b: number, T: number, t: number, width: number): Float32Array {
  if (src.dims[1] !== T) throw new UserError(`corrupted prompt ${b + 1} has ${src.dims[1]} tokens but the prompt has ${T}; resample ablation needs equal lengths`);
  const off = (b * T + t) * width;
  return src.data.subarray(off, off + width);
}

function accumulateRows(data: Float32Array, acc: Float64Array): void {
  const w = acc.length;
  for (let i = 0; i < data.length; i += w) for (let j = 0; j < w; j++) acc[j]! += data[i + j]!;
}

/** Groups prompts by token length (the engine batches rows of one length), keeping each prompt's index. */
export function groupByLength(prompts: number[][]): { index: number; ids: number[] }[][] {
  const groups = new Map<number, { index: number; ids: number[] }[]>();
  prompts.forEach((ids, index) => {
    const g = groups.get(ids.length);
    if (g) g.push({ index, ids }); else groups.set(ids.length, [{ index, ids }]);
  });
  return [...groups.values()];
}
