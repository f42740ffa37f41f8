// Memory planning for the engine: what a model's weights, its sessions and a row of activations cost, against a
// budget (EngineOptions.memory). Sessions (core/engine/sessions.ts) apply it before they build a session or the
// engine runs a gradient batch.
import { EXTERNAL, num, type OnnxModel } from '../onnx/model';

/**
 * What the engine may use, and how the runtime holds weights. Before it builds a session (metrics, layer skipping,
 * logit lens, gradients, edges) or runs a gradient batch, the engine estimates the process' memory from the model's
 * weight bytes, what each session costs and what a row of activations costs (Engine.memoryEstimate); when the
 * estimate passes the budget it first releases the optional sessions it has cached, then does without the one
 * asked for where it can (layer skipping, the lean metrics session), and otherwise refuses with a UserError saying
 * what is needed. Gradient batches are split into as many rows as fit (Engine.gradientRowsThatFit).
 */
export interface MemoryOptions {
  /** Bytes the engine may plan for (the CLI: 0.75 × the machine's memory). */
  budget: number;
  /** Where the budget came from, for messages (e.g. "0.75 × 23.4 GiB of RAM"). */
  budgetSource?: string;
  /**
   * The runtime's sessions share one copy of the weights (onnxruntime-node without prepacking, weights
   * memory-mapped from external files): weights count once, not once per session.
   */
  sharedWeights?: boolean;
  /** How to raise the budget, for messages. */
  raiseHint?: string;
}

/** The sessions an engine may build, for memory planning. */
export type SessionKind = 'main' | 'metrics' | 'skip' | 'lens' | 'gradient' | 'gradientResid' | 'edgeForward' | 'edgeGradient' | 'edgeGradientAtZero' | 'temperature';

const GiB = 1024 ** 3;
export const gib = (n: number) => `${(n / GiB).toFixed(n < 10 * GiB ? 2 : 1)} GiB`;
/** What a session costs beyond its weights (graph, kernels, arena start), measured on onnxruntime-node 1.30. */
export const SESSION_OVERHEAD = 128 * 1024 ** 2;

/** Bytes of an ONNX model's weights: initializers inside the graph and the lengths of external ones. */
export function weightBytes(model: OnnxModel): number {
  let n = 0;
  for (const t of model.graph?.initializer ?? []) {
    if (t.dataLocation === EXTERNAL) {
      const len = t.externalData?.find((e) => e.key === 'length')?.value;
      n += len !== undefined ? Number(len) : t.dims.reduce((a: number, d) => a * num(d), 4);
    } else {
      n += t.rawData?.length || (t.floatData?.length ?? 0) * 4 || (t.int64Data?.length ?? 0) * 8 || (t.int32Data?.length ?? 0) * 4;
    }
  }
  return n;
}

/** One memory estimate: what is held now, what the next step adds, and the budget. */
export interface MemoryEstimate {
  /** Weights (once, when shared) plus the sessions built so far. */
  held: number;
  /** The session to build (0 when built or none). */
  session: number;
  /** Activations of the run. */
  activations: number;
  total: number;
  budget: number;
}
