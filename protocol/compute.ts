// The compute worker's requests (onnxruntime-web in a Web Worker of every view), and what a view needs from the
// host to start it. Each request carries its response type (./ipc.ts): the worker's handlers and the views' calls
// are checked against it.
import type { ResolvedPrompt } from '../core/analysis/prompts';
import type { PromptScore, SuiteMetrics } from '../core/analysis/metrics';
import type { AblationKind } from '../core/vocabulary';
import type { ModelInfo } from '../core/engine/types';
import type { F32 } from '../core/engine/runtime';
import type { NodeId } from '../core/ids';
import type { RequestMessage, RequestType, ResponseMessage } from './ipc';

/** Which onnxruntime-web backend to use: WebGPU when an adapter exists (auto), or forced. */
export type BackendPreference = 'auto' | 'webgpu' | 'wasm';

/** What a webview needs to start its compute worker: everything by webview URI, fetched by the view. */
export interface ComputeSetup {
  workerUri: string;
  wasmUri: string;
  modelUri: string;
  tokenizerUri?: string;
  prefer: BackendPreference;
  /** The model's name, for messages. */
  what: string;
}

export interface InitParams { model: Uint8Array; tokenizerJson?: string; wasmBinary: ArrayBuffer; prefer: BackendPreference; what: string }
export interface Ready { info: ModelInfo; backend: 'webgpu' | 'wasm'; adapter?: string }

export interface EvaluateParams { prompts: ResolvedPrompt[]; meanOver: ResolvedPrompt[]; ablation: AblationKind; sets: NodeId[][] }
export interface SetSummary { ablated: NodeId[]; metrics: SuiteMetrics; scores: PromptScore[] }
export interface Evaluated { sets: SetSummary[]; ms: number }

export interface TraceParams { ids: number[]; hooks: string[]; lens?: boolean }
export interface Traced { logits: F32; activations: Record<string, F32>; lens?: F32[]; ms: number }

export interface TemperatureParams { ids: number[]; head: NodeId; temperatures: number[]; answer?: number; foil?: number }
export interface TemperatureSwept {
  /** The head's pattern at each temperature, [n, T, T]. */
  patterns: F32;
  /** Next-token scores at each temperature; KL is to τ = 1. */
  scores: PromptScore[];
  /** The token prob and accuracy are about: the answer, else the model's top-1 at τ = 1. */
  target: number;
  ms: number;
}

export type ComputeRequest =
  /** Loads the model (the first request; the WASM binary is transferred, not copied). */
  | RequestType<'compute/init', InitParams, Ready>
  /** Suite metrics with each set of nodes ablated (the graph view's "run marked circuit"). */
  | RequestType<'compute/evaluate', EvaluateParams, Evaluated>
  /** One forward pass with hooks recorded, and the logit lens when asked (attention and lens views). */
  | RequestType<'compute/trace', TraceParams, Traced>
  /** One head's pattern and the next-token scores at each softmax temperature (attention view). */
  | RequestType<'compute/temperature', TemperatureParams, TemperatureSwept>;

/** A view's note to its panel about its compute worker (started, on which backend). */
export interface ComputeStatus { t: 'status'; backend: string; message: string }

export type ToWorker = RequestMessage<ComputeRequest>;
export type FromWorker = ResponseMessage<ComputeRequest>;
