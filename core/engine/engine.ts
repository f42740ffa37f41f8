import { UserError } from '../errors';
import { allHookNames, type HookName } from '../hooks';
import { checkNodeInModel, parseNodeId, type NodeId } from '../ids';
import { GRAD_SEED } from '../onnx/autodiff';
import type { EdgeLayout } from '../onnx/edge-layout';
import { decodeModel, encodeModel, externalLocations, opsetVersion, type OnnxModel } from '../onnx/model';
import { normalizeExport, preciseTrigForWebGpu } from '../onnx/normalize';
import { detectStructure, type ModelStructure } from '../onnx/detect';
import { instrument, LAST_LOGITS } from '../onnx/instrument';
import { LAST_STATS } from '../onnx/lean';
import { START } from '../onnx/skip';
import type { Tokenizer } from '../tokenizer';
import { EdgeRuns } from './edge-runs';
import { accumulateRows, ablationFeeds, baseFeeds, f32, groupByLength, temperatureFeeds } from './feeds';
import { gib, SESSION_OVERHEAD, weightBytes, type MemoryEstimate, type SessionKind } from './memory';
import type { F32, Feed, Runtime, Session } from './runtime';
import { Sessions } from './sessions';
import type {
  EdgeGradientRequest, EdgeGradientResult, EdgeRunner, EdgeRunRequest, EdgeRunResult, EngineOptions, GradientRequest, GradientResult,
  MeanActivations, ModelInfo, RunRequest, RunResult,
} from './types';

/**
 * Runs an instrumented ONNX language model: records any hook and ablates any head or MLP, per batch row.
 * The same code runs in Node (CLI, extension host) and in the webview; only the Runtime differs.
 */
export class Engine implements EdgeRunner {
  private fastestMsPerToken?: number;

  private constructor(
    readonly info: ModelInfo,
    readonly structure: ModelStructure,
    private readonly taps: Record<HookName, string>,
    readonly tokenizer: Tokenizer | undefined,
    readonly hookNames: HookName[],
    private readonly sessions: Sessions,
    private readonly edgeRuns: EdgeRuns,
  ) {}

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
    const probe = ['blocks.0.attn.hook_pattern', 'blocks.0.attn.hook_z', 'blocks.0.hook_resid_pre', 'logits'].map((h) => inst.taps[h] ?? h);
    const out = await session.run(baseFeeds(structure, [[0, 0]]), [...new Set(probe)]);
    const [pattern, z, resid, logits] = probe.map((t) => out[t]!);
    const [, heads] = pattern.dims;
    const dHead = z.dims[3]!;
    const dModel = resid.dims[2]!;
    const vocab = logits.dims[2]!;
    const info: ModelInfo = {
      architecture: structure.architecture, layers, heads: heads!, dModel, dHead, vocab, contextLength: structure.contextLength, opset,
      features: structure.features, hooks: Object.fromEntries(hookNames.map((h) => [h, inst.hooks[h]!])), backend: runtime.backend,
      ...(normalized.notes.length ? { normalized: normalized.notes } : {}),
      detection: structure.source,
    };
    const source = opts.reload ? { runtime, reload: opts.reload, external, what: opts.what } : { runtime, instrumented: inst.model, external, what: opts.what };
    const sessions = new Sessions(session, source, structure, inst.taps, info, memory, weights);
    const edgeRuns = new EdgeRuns(sessions, info, structure, inst.taps, opts);
    return new Engine(info, structure, inst.taps, opts.tokenizer, hookNames, sessions, edgeRuns);
  }

  // ---- memory planning (MemoryOptions; core/engine/sessions.ts) -----------------------------------------------

  /** The weight bytes the estimates count from. */
  get weightBytes(): number {
    return this.sessions.weightBytes;
  }

  /** What a session of this kind holds: its own weights (unless shared) and its overhead. */
  sessionBytes(kind: SessionKind): number {
    return this.sessions.sessionBytes(kind);
  }

  /** Activations a gradient run of prompts of T tokens holds, per prompt (a rough upper estimate). */
  gradientRowBytes(T: number): number {
    return this.sessions.gradientRowBytes(T);
  }

  /** The memory estimate for building `kind` (if not built) and running `activations` bytes on top. */
  memoryEstimate(kind: SessionKind | undefined, activations = 0): MemoryEstimate {
    return this.sessions.memoryEstimate(kind, activations);
  }

  /** Rows of T tokens a gradient batch may have within the budget (at least 1; Infinity without a budget). */
  gradientRowsThatFit(T: number, withResid = false): number {
    return this.sessions.gradientRowsThatFit(T, withResid);
  }

  async release(): Promise<void> {
    await this.sessions.release();
  }

  // ---- runs ----------------------------------------------------------------------------------------------------

  /** Whether layer skipping may be available (native onnxruntime), without building its session to find out. */
  get maySkipLayers(): boolean {
    return this.sessions.maySkipLayers;
  }

  /** Whether runs can start at a later layer (RunRequest.start): native onnxruntime, blocks that can be cut out. */
  async canSkipLayers(): Promise<boolean> {
    return (await this.sessions.skip()) !== undefined;
  }

  async run(req: RunRequest): Promise<RunResult> {
    const { B, T } = this.checkBatch(req.ids);
    const hooks = req.hooks ?? [];
    for (const h of hooks) if (!this.taps[h]) throw new UserError(`unknown hook "${h}" (run \`circuitlens info\` to list hooks)`);
    if (req.ablations && req.ablations.length !== B) throw new Error('ablations must have one entry per batch row');
    const logitsTap = req.lastOnly ? LAST_LOGITS : 'logits';
    // Rows with softmax temperatures run on their own session, from the first layer (the same results as `start`).
    const tempered = req.temperatures?.some((r) => r?.length) ? req.temperatures : undefined;
    if (tempered && req.lens) throw new UserError('the logit lens does not run with softmax temperatures');
    const stats = !!req.stats && !!req.lastOnly && !hooks.length && !req.lens && !tempered && this.sessions.hasRowStats;
    if (tempered) {
      const feeds = { ...ablationFeeds(this.info, req, B, T), ...temperatureFeeds(this.info, tempered, B) };
      const raw = await this.runRaw(req.ids, [...new Set([logitsTap, ...hooks])], feeds, await this.sessions.temperature());
      return { logits: raw[logitsTap]!, activations: Object.fromEntries(hooks.map((h) => [h, raw[h]!])) };
    }
    if (req.start) {
      if (!req.lastOnly || hooks.length || req.lens) throw new Error('RunRequest.start: lastOnly runs without hooks or lens only');
      const skip = await this.sessions.skip();
      if (skip) {
        const { layer, resid } = req.start;
        if (!Number.isInteger(layer) || layer < 0 || layer >= this.info.layers) throw new Error(`RunRequest.start: no layer ${layer}`);
        if (resid.dims[0] !== B || resid.dims[1] !== T || resid.dims[2] !== this.info.dModel) throw new Error(`RunRequest.start: resid is [${resid.dims}], expected [${B}, ${T}, ${this.info.dModel}]`);
        const feeds = {
          ...baseFeeds(this.structure, req.ids),
          ...ablationFeeds(this.info, req, B, T),
          [START.layer]: { type: 'int64', dims: [], data: BigInt64Array.of(BigInt(layer)) } as Feed,
          [START.resid]: f32(resid.dims, resid.data),
        };
        const out = await skip.run(feeds, stats ? [LAST_LOGITS, LAST_STATS] : [LAST_LOGITS]);
        return { logits: out[LAST_LOGITS]!, stats: out[LAST_STATS], activations: {} };
      }
    }
    const lens = req.lens ? await this.sessions.lens() : undefined;
    const t0 = performance.now();
    const fetches = [...new Set([logitsTap, ...(stats ? [LAST_STATS] : []), ...hooks, ...(lens?.outputs ?? [])])];
    const raw = await this.runRaw(req.ids, fetches, ablationFeeds(this.info, req, B, T), lens?.session);
    if (req.lastOnly && !req.lens) this.fastestMsPerToken = Math.min(this.fastestMsPerToken ?? Infinity, (performance.now() - t0) / (B * T));
    const activations: Record<HookName, F32> = {};
    for (const h of hooks) activations[h] = raw[h]!;
    return { logits: raw[logitsTap]!, stats: raw[LAST_STATS], activations, lens: lens ? lens.outputs.map((t) => raw[t]!) : undefined };
  }

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

  /** The hooks of a run, on the given session or else the one its fetches need. */
  private async runRaw(ids: number[][], hooks: HookName[], ablation: Record<string, Feed>, session?: Session): Promise<Record<HookName, F32>> {
    // The ablation inputs replace the neutral ones (the same names).
    const feeds: Record<string, Feed> = { ...baseFeeds(this.structure, ids), ...ablation };
    const tensorOf = (h: HookName) => this.taps[h] ?? h;
    const fetches = [...new Set(hooks.map(tensorOf))];
    const out = await (session ?? (await this.sessions.sessionFor(fetches))).run(feeds, fetches);
    const res: Record<HookName, F32> = {};
    for (const h of hooks) res[h] = out[tensorOf(h)]!;
    return res;
  }

  /**
   * Gradients of L = Σ seed ⊙ logits_last with respect to every head's output (z), MLP output and
   * resid_pre, at the given ablation inputs, from a backward graph added to a copy of the instrumented model
   * (core/onnx/autodiff.ts) and run by the same runtime: one run gives the forward pass and every gradient.
   */
  async gradients(req: GradientRequest): Promise<GradientResult> {
    const { B, T } = this.checkBatch(req.ids);
    const hooks = req.hooks ?? [];
    await this.sessions.reserve(req.residPre ? 'gradientResid' : 'gradient', true, 'the gradient run (backward graph)', B * this.gradientRowBytes(T), ` for ${B} prompt${B === 1 ? '' : 's'} of ${T} tokens`);
    const graph = await this.sessions.gradientGraph(!!req.residPre);
    for (const h of hooks) if (!graph.hookTensors[h]) throw new UserError(`hook "${h}" cannot be read from a gradient run (it reads hook_z, hook_mlp_out and the other hooks up to the last layer's MLP; the logits are returned at the last position)`);
    const feeds: Record<string, Feed> = { ...baseFeeds(this.structure, req.ids), ...req.patch };
    const seed = typeof req.seed === 'function' ? req.seed((await (await this.sessions.sessionFor([LAST_LOGITS])).run(feeds, [LAST_LOGITS]))[LAST_LOGITS]!) : req.seed;
    if (seed.length !== B * this.info.vocab) throw new Error(`gradient seed has ${seed.length} values, expected ${B} × ${this.info.vocab}`);
    feeds[GRAD_SEED] = f32([B, 1, this.info.vocab], seed);
    const tapOf = hooks.map((h) => graph.hookTensors[h]!);
    const out = await graph.session.run(feeds, [...new Set([LAST_LOGITS, ...graph.z, ...graph.mlp, ...graph.residPre, ...tapOf])]);
    return {
      logits: out[LAST_LOGITS]!, z: graph.z.map((t) => out[t]!), mlp: graph.mlp.map((t) => out[t]!), residPre: req.residPre ? graph.residPre.map((t) => out[t]!) : undefined,
      activations: Object.fromEntries(hooks.map((h, i) => [h, out[tapOf[i]!]!])),
    };
  }

  // ---- edges (core/engine/edge-runs.ts) --------------------------------------------------------------------

  /** Edges of the model's computational graph and where their masks live (DESIGN §3 ids). */
  get edges(): EdgeLayout {
    return this.edgeRuns.edges;
  }

  /** A forward run with edge ablation: per row, what flows along chosen edges is replaced by ablated values. */
  async runEdges(req: EdgeRunRequest): Promise<EdgeRunResult> {
    const { B } = this.checkBatch(req.ids);
    return this.edgeRuns.run(req, B);
  }

  /**
   * d(Σ seed ⊙ last logits)/d(edge weight) per row and edge, [B × E] (EdgeLayout order), at the given weights:
   * at weight 0 this is Σ_positions (ablated − actual output of the source) · ∂/∂(the destination's input).
   */
  async edgeGradients(req: EdgeGradientRequest): Promise<EdgeGradientResult> {
    const { B } = this.checkBatch(req.ids);
    return this.edgeRuns.gradients(req, B);
  }

  // ---- checks ----------------------------------------------------------------------------------------------------

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
    this.sessions.checkAlive();
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
}
