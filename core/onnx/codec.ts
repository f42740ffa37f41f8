// The generated static codec (see esbuild.js, generateOnnxCodec); typed here by what CircuitLens uses.
// Module-scoped, so this file typechecks with or without Node's types (it is bundled for webviews too).
declare const require: (id: string) => unknown;
const generated = require('./generated/onnx-static.js') as {
  onnx: { ModelProto: { decode(bytes: Uint8Array): unknown; encode(message: unknown): { finish(): Uint8Array } } };
};

export const ModelProto = generated.onnx.ModelProto;
