// Edge runs: forward runs and gradients on the instrumented model with per-destination inputs (core/onnx/edges.ts),
// where what flows along each edge can be replaced by the source's ablated value.
import { UserError } from '../errors';
import { hookName, type HookName } from '../hooks';
import { addGradients, GRAD_SEED } from '../onnx/autodiff';
import type { ModelStructure } from '../onnx/detect';
import { addEdgeGradientsAtZero } from '../onnx/edge-gradients';
import { EDGE, edgeLayout, type EdgeLayout } from '../onnx/edge-layout';
import { addEdgeInputs } from '../onnx/edges';
import { LAST_LOGITS } from '../onnx/instrument';
import { withOutputsOnly } from '../onnx/lean';
import type { OnnxModel } from '../onnx/model';
import { ablatedFeeds, baseFeeds, checkEdgeWeightRows, f32, maskFeeds } from './feeds';
import type { F32, Feed, Session } from './runtime';
import type { Sessions } from './sessions';
import type { EdgeGradientRequest, EdgeGradientResult, EdgeRunRequest, EdgeRunResult, EngineOptions, ModelInfo } from './types';

/** An edge graph that onnxruntime could not run the first time: the export, not the request. */
function edgeExportError(e: unknown): UserError {
  return new UserError(`edge-level analysis cannot run on this export (${(e as Error).message.split('\n')[0]}); node-level analysis works on it`);
}

export class EdgeRuns {
  private layout?: EdgeLayout;
  /** Edge gradient sessions that have run once. */
  private readonly gradientRan = new WeakSet<Session>();

  constructor(
    private readonly sessions: Sessions,
    private readonly info: ModelInfo,
    private readonly structure: ModelStructure,
    private readonly taps: Record<HookName, string>,
    private readonly opts: Pick<EngineOptions, 'what' | 'edgeHeadSlicing' | 'eapBlockLayers'>,
  ) {}

  /** Edges of the model's computational graph and where their masks live (DESIGN §3 ids). */
  get edges(): EdgeLayout {
    this.layout ??= edgeLayout(this.info.layers, this.info.heads, this.info.features.block === 'parallel');
    return this.layout;
  }

  /** The instrumented model with per-destination inputs (core/onnx/edges.ts). */
  private edgeModel(): { model: OnnxModel; outputs: string[] } {
    const model = this.sessions.copyOfInstrumented();
    const { outputs } = addEdgeInputs(model, this.structure, this.info.heads, this.opts.what, { sliceHeads: this.opts.edgeHeadSlicing ?? true });
    return { model, outputs };
  }

  private forward(): Promise<Session> {
    return this.sessions.lazily('edgeForward', async () => {
      await this.sessions.reserve('edgeForward', true, 'the edge-ablation session');
      const { model, outputs } = this.edgeModel();
      const L = this.structure.layers;
      const keep = [LAST_LOGITS, L[0]!.residPre, ...outputs, ...L.map((_, l) => this.taps[hookName('mlp_out', l)]!)];
      const session = await this.sessions.create(withOutputsOnly(model, [...new Set(keep)]));
      try {
        // Shapes the export computes outside the cloned paths surface only when run: try a small batch.
        await session.run({ ...baseFeeds(this.structure, [[0, 0, 0], [0, 0, 0]]), ...maskFeeds(this.edges, 2, undefined), ...ablatedFeeds(this.info, undefined) }, [LAST_LOGITS]);
      } catch (e) {
        await session.release();
        throw edgeExportError(e);
      }
      return session;
    }, (s) => s);
  }

  /**
   * The edge gradient graph. `atZero`: for all-zero edge weights only (EAP), a graph without the masks, where
   * each destination reads its own copy of the stream and the mask gradients are contracted from the copies'
   * gradients (addEdgeGradientsAtZero): no mask inputs to feed.
   */
  private gradient(atZero: boolean): Promise<{ session: Session; grads: string[] }> {
    const kind = atZero ? 'edgeGradientAtZero' : 'edgeGradient';
    return this.sessions.lazily(kind, async () => {
      await this.sessions.reserve(kind, true, 'the edge gradient session');
      const { what, edgeHeadSlicing, eapBlockLayers } = this.opts;
      let model: OnnxModel;
      let names: string[];
      if (atZero) {
        model = this.sessions.copyOfInstrumented();
        names = addEdgeGradientsAtZero(model, this.structure, this.info.heads, what, LAST_LOGITS, this.edges, { sliceHeads: edgeHeadSlicing ?? true, positive: this.sessions.positiveDims(model), blockLayers: eapBlockLayers }).grads;
      } else {
        model = this.edgeModel().model;
        const masks = this.edges.masks.map((m) => m.name);
        const { grads } = addGradients(model, LAST_LOGITS, masks, { positive: this.sessions.positiveDims(model) });
        names = masks.map((m) => grads[m]!);
      }
      const session = await this.sessions.create(withOutputsOnly(model, [LAST_LOGITS, ...names]));
      return { session, grads: names };
    }, (g) => g.session);
  }

  /** Engine.runEdges on a checked batch of B rows. */
  async run(req: EdgeRunRequest, B: number): Promise<EdgeRunResult> {
    const session = await this.forward();
    const L = this.structure.layers;
    const mlpTaps = L.map((_, l) => this.taps[hookName('mlp_out', l)]!);
    const fetch = req.outputs ? [LAST_LOGITS, L[0]!.residPre, ...L.map((_, l) => EDGE.outHeads(l)), ...mlpTaps] : [LAST_LOGITS];
    const out = await session.run({ ...baseFeeds(this.structure, req.ids), ...maskFeeds(this.edges, B, req.weights), ...ablatedFeeds(this.info, req.ablated) }, [...new Set(fetch)]);
    return {
      logits: out[LAST_LOGITS]!,
      outputs: req.outputs ? { input: out[L[0]!.residPre]!, heads: L.map((_, l) => out[EDGE.outHeads(l)]!), mlp: mlpTaps.map((t) => out[t]!) } : undefined,
    };
  }

  /** Engine.edgeGradients on a checked batch of B rows. */
  async gradients(req: EdgeGradientRequest, B: number): Promise<EdgeGradientResult> {
    checkEdgeWeightRows(B, req.weights);
    const atZero = !req.weights || req.weights.every((w) => !w || w.every((x) => x === 0));
    const { session, grads } = await this.gradient(atZero);
    const V = this.info.vocab;
    if (req.seed.length !== B * V) throw new Error(`gradient seed has ${req.seed.length} values, expected ${B} × ${V}`);
    // The EAP graph (at zero) has no masks.
    const masks = atZero ? {} : maskFeeds(this.edges, B, req.weights, true);
    const feeds: Record<string, Feed> = { ...baseFeeds(this.structure, req.ids), ...masks, ...ablatedFeeds(this.info, req.ablated), [GRAD_SEED]: f32([B, 1, V], req.seed) };
    let out: Record<string, F32>;
    try {
      out = await session.run(feeds, [LAST_LOGITS, ...grads]);
      this.gradientRan.add(session);
    } catch (e) {
      // Shapes the export computes outside the rewritten paths surface only when run (the forward session tries a
      // small batch for that): a first run that fails says so; later failures are the run's own.
      if (e instanceof UserError || this.gradientRan.has(session)) throw e;
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
}
