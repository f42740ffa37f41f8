// What the engine is asked and what it answers: the public contract of core/engine, apart from the code that runs it.
import type { HookName } from '../hooks';
import type { NodeId } from '../ids';
import type { HooksSidecar, ModelStructure } from '../onnx/detect';
import type { EdgeLayout } from '../onnx/edge-layout';
import type { OnnxModel } from '../onnx/model';
import type { Tokenizer } from '../tokenizer';
import type { AblationKind } from '../vocabulary';
import type { MemoryOptions } from './memory';
import type { ExternalFile, F32, Feed } from './runtime';

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

/**
 * One head's softmax temperature in a batch row: its attention scores are divided by `temperature` before the
 * Softmax (pattern = softmax(scores / τ); 1 leaves it as it is, above 1 flattens, below 1 sharpens).
 */
export interface HeadTemperature {
  head: NodeId;
  temperature: number;
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
  /**
   * Per batch row, heads whose attention scores are divided by a temperature (core/onnx/temperature.ts); runs
   * that set any run on the temperature session (from the first layer; no lens, no RunResult.stats).
   */
  temperatures?: (HeadTemperature[] | undefined)[];
}

export interface RunResult {
  logits: F32;
  /** [B, 1, 4] per row of the last-position logits (core/onnx/instrument.ts LAST_STATS), when asked for and available. */
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


export type EdgeGradientRequest = EdgeRunRequest & { seed: Float32Array };

export interface EdgeGradientResult {
  /** [B, 1, vocab] */
  logits: F32;
  /** d(Σ seed ⊙ last logits)/d(edge weight), [B × E] in EdgeLayout order. */
  grads: Float32Array;
}

/**
 * What edge-level analysis (core/analysis/edge-context.ts) needs of an engine: the model's sizes, its edges and the two
 * edge runs. The Engine implements it; analysis depends on this alone.
 */
export interface EdgeRunner {
  readonly info: Pick<ModelInfo, 'layers' | 'heads' | 'dModel' | 'vocab'>;
  /** Edges of the model's computational graph and where their masks live (DESIGN §3 ids). */
  readonly edges: EdgeLayout;
  /** A forward run with edge ablation: per row, what flows along chosen edges is replaced by ablated values. */
  runEdges(req: EdgeRunRequest): Promise<EdgeRunResult>;
  /** Gradients of the seeded last logits with respect to every edge weight, per row. */
  edgeGradients(req: EdgeGradientRequest): Promise<EdgeGradientResult>;
}
