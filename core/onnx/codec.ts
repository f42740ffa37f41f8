// The generated static codec (see esbuild.js, generateOnnxCodec); typed here by what CircuitLens uses.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const generated = require('./generated/onnx-static.js') as {
  onnx: { ModelProto: { decode(bytes: Uint8Array): unknown; encode(message: unknown): { finish(): Uint8Array } } };
};

export const ModelProto = generated.onnx.ModelProto;
