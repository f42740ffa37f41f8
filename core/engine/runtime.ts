/** Dense float32 tensor, row-major, batch first. */
export interface F32 {
  dims: number[];
  data: Float32Array;
}

export type Backend = 'node' | 'wasm' | 'webgpu';

export type Feed =
  | { type: 'int64'; dims: number[]; data: BigInt64Array }
  | { type: 'int32'; dims: number[]; data: Int32Array }
  | { type: 'float32'; dims: number[]; data: Float32Array }
  | { type: 'bool'; dims: number[]; data: Uint8Array };

/** An ONNX external-data file: by path (Node) or by content (browser). */
export interface ExternalFile {
  location: string;
  path?: string;
  data?: Uint8Array;
  /** Reads the bytes when a session is created (they are not kept): a large model's own file, re-read each time. */
  read?: () => Uint8Array;
}

export interface Session {
  run(feeds: Record<string, Feed>, fetches: string[]): Promise<Record<string, F32>>;
  release(): Promise<void>;
}

/** The port both onnxruntime builds implement (onnxruntime-node, onnxruntime-web). */
export interface Runtime {
  readonly backend: Backend;
  createSession(model: Uint8Array, external: ExternalFile[]): Promise<Session>;
}

export function size(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}
