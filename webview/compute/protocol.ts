import type { ResolvedPrompt } from '../../core/analysis/prompts';
import type { PromptScore, SuiteMetrics } from '../../core/analysis/metrics';
import type { AblationKind } from '../../core/vocabulary';
import type { ModelInfo } from '../../core/engine/types';
import type { F32 } from '../../core/engine/runtime';
import type { NodeId } from '../../core/ids';

/** Which onnxruntime-web backend to use: WebGPU when an adapter exists (auto), or forced. */
export type BackendPreference = 'auto' | 'webgpu' | 'wasm';

/** Messages to the compute worker (onnxruntime-web). Requests carry an id; the answer echoes it. */
export type ToWorker =
  | { t: 'init'; model: Uint8Array; tokenizerJson?: string; wasmBinary: ArrayBuffer; prefer: BackendPreference; what: string }
  | { t: 'evaluate'; id: number; prompts: ResolvedPrompt[]; meanOver: ResolvedPrompt[]; ablation: AblationKind; sets: NodeId[][] }
  | { t: 'trace'; id: number; ids: number[]; hooks: string[]; lens?: boolean };

export interface SetSummary { ablated: NodeId[]; metrics: SuiteMetrics; scores: PromptScore[] }

export type FromWorker =
  | { t: 'ready'; info: ModelInfo; backend: 'webgpu' | 'wasm'; adapter?: string }
  | { t: 'evaluated'; id: number; sets: SetSummary[]; ms: number }
  | { t: 'traced'; id: number; logits: F32; activations: Record<string, F32>; lens?: F32[]; ms: number }
  | { t: 'error'; id?: number; message: string };
