// The port through which analyses get engines on one model file's graph with some initializers replaced, in memory
// (core/nodejs/model-variants.ts implements it): pruned models, candidate models of a bisection.
import type { HooksSidecar } from '../onnx/detect';
import type { OnnxModel, TensorProto } from '../onnx/model';
import type { Engine } from './engine';

export interface WeightVariants {
  path: string;
  /** The decoded model with every initializer's bytes in memory (external data read in). */
  model: OnnxModel;
  /** The model's hooks sidecar, when it has one (hook detection reads it). */
  hooks: { sidecar?: HooksSidecar; sidecarPath?: string };
  /** An engine on this model with the given initializers (same names) in place of its own; released by the caller. */
  engineWith(replace: readonly TensorProto[]): Promise<Engine>;
}
