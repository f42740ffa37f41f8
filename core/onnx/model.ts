import { UserError } from '../errors';
import { ModelProto } from './codec';

// Decoded protobuf messages, typed by the fields CircuitLens reads. int64 fields arrive as numbers or Longs.
export type Int64 = number | { toNumber(): number };
export interface StringEntry { key: string; value: string }
export interface Dimension { dimValue?: Int64; dimParam?: string }
export interface TypeProto { tensorType?: { elemType: number; shape?: { dim: Dimension[] } } }
export interface ValueInfo { name: string; type?: TypeProto }
export interface Attribute { name: string; type: number; i?: Int64; f?: number; s?: Uint8Array; ints?: Int64[]; floats?: number[]; t?: TensorProto; g?: Graph }
export interface OnnxNode { input: string[]; output: string[]; name: string; opType: string; domain: string; attribute: Attribute[] }
export interface TensorProto {
  name: string; dims: Int64[]; dataType: number; rawData?: Uint8Array; floatData?: number[]; int64Data?: Int64[]; int32Data?: number[];
  externalData?: StringEntry[]; dataLocation?: number;
}
export interface Graph { node: OnnxNode[]; name: string; initializer: TensorProto[]; input: ValueInfo[]; output: ValueInfo[]; valueInfo: ValueInfo[] }
export interface OnnxModel { irVersion: Int64; opsetImport: { domain: string; version: Int64 }[]; producerName: string; producerVersion: string; graph?: Graph; metadataProps: StringEntry[] }

export const DataType = { FLOAT: 1, INT32: 6, INT64: 7, FLOAT16: 10, DOUBLE: 11, BFLOAT16: 16 } as const;
export const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7 } as const;
export const EXTERNAL = 1;

export function num(v: Int64 | undefined | null): number {
  if (v === undefined || v === null) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

/** Decodes an ONNX model. `what` names the file in errors. */
export function decodeModel(bytes: Uint8Array, what: string): OnnxModel {
  let model: OnnxModel;
  try {
    model = ModelProto.decode(bytes) as unknown as OnnxModel;
  } catch (e) {
    throw new UserError(
      `${what} is not a readable ONNX model (protobuf decoding failed: ${(e as Error).message}). ` +
        `The file may be truncated or not an .onnx file; re-export it with torch.onnx.export or optimum.`,
    );
  }
  if (!model.graph || model.graph.node.length === 0) {
    throw new UserError(`${what} is not an ONNX model with a graph (no nodes found). The file may be truncated or not an .onnx file.`);
  }
  // Decoded repeated fields may be a shared frozen empty array: give the graph its own arrays to edit.
  const g = model.graph;
  g.node = [...g.node];
  g.initializer = [...g.initializer];
  g.input = [...g.input];
  g.output = [...g.output];
  g.valueInfo = [...(g.valueInfo ?? [])];
  if (num(model.irVersion) < 3) {
    throw new UserError(`${what} has ONNX IR version ${num(model.irVersion)}; CircuitLens reads IR 3 and later. Re-export the model with a current exporter.`);
  }
  return model;
}

export function encodeModel(model: OnnxModel): Uint8Array {
  return ModelProto.encode(model).finish();
}

export function opsetVersion(model: OnnxModel, domain = ''): number {
  const o = model.opsetImport.find((x) => (x.domain || '') === domain || (domain === '' && x.domain === 'ai.onnx'));
  return o ? num(o.version) : 0;
}

export function dimsOf(t: TensorProto): number[] {
  return t.dims.map(num);
}

/**
 * Turns initializers whose raw data is a view into `file` (the bytes the model was decoded from, as protobufjs
 * leaves them) and at least `minBytes` long into external-data references to that same file (`location`, at
 * their byte offsets). A model encoded afterwards is small; the runtime is handed the file's bytes as that external
 * data, so the encoded graph carries no second copy of the weights. Returns how many bytes were moved out.
 */
export function referenceWeightsInFile(model: OnnxModel, file: Uint8Array, location: string, minBytes = 1 << 16): number {
  let moved = 0;
  const inFile = (raw: Uint8Array) => raw.buffer === file.buffer && raw.byteOffset >= file.byteOffset && raw.byteOffset + raw.length <= file.byteOffset + file.length;
  for (const t of model.graph?.initializer ?? []) {
    const raw = t.rawData;
    if (!raw || !inFile(raw)) continue;
    if (raw.length < minBytes) { t.rawData = new Uint8Array(raw); continue; }
    t.externalData = [{ key: 'location', value: location }, { key: 'offset', value: String(raw.byteOffset - file.byteOffset) }, { key: 'length', value: String(raw.length) }];
    t.dataLocation = EXTERNAL;
    t.rawData = new Uint8Array(0);
    moved += raw.length;
  }
  // Everything else keeps a copy of its bytes, so nothing decoded holds on to the file's buffer (`new Uint8Array`
  // copies; a Node Buffer's `slice` would not).
  const detach = (g: Graph) => {
    for (const n of g.node) {
      for (const a of n.attribute) {
        if (a.t?.rawData && inFile(a.t.rawData)) a.t.rawData = new Uint8Array(a.t.rawData);
        if (a.s && inFile(a.s)) a.s = new Uint8Array(a.s);
        if (a.g) detach(a.g);
      }
    }
  };
  if (model.graph) detach(model.graph);
  return moved;
}

/** External-data files a model refers to (relative `location`s), in first-use order. */
export function externalLocations(model: OnnxModel): string[] {
  const out = new Set<string>();
  for (const t of model.graph?.initializer ?? []) {
    if (t.dataLocation === EXTERNAL) {
      const loc = t.externalData?.find((e) => e.key === 'location')?.value;
      if (loc) out.add(loc);
    }
  }
  return [...out];
}

/** Reads the float32 values of an initializer held inside the model (not external data). */
export function floatData(t: TensorProto): Float32Array | undefined {
  if (t.dataType !== DataType.FLOAT) return undefined;
  if (t.rawData && t.rawData.length > 0) {
    const copy = new Uint8Array(t.rawData);
    return new Float32Array(copy.buffer, 0, copy.length / 4);
  }
  if (t.floatData && t.floatData.length > 0) return Float32Array.from(t.floatData);
  return undefined;
}

export function int64Data(t: TensorProto): number[] | undefined {
  if (t.dataType !== DataType.INT64) return undefined;
  if (t.rawData && t.rawData.length > 0) {
    const copy = new Uint8Array(t.rawData);
    return Array.from(new BigInt64Array(copy.buffer, 0, copy.length / 8), Number);
  }
  return t.int64Data?.map(num);
}

export function metadata(model: OnnxModel): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of model.metadataProps ?? []) out[e.key] = e.value;
  return out;
}

/** Builders for nodes and value infos added by the instrumenter. */
export function makeNode(opType: string, inputs: string[], outputs: string[], name: string, attrs: Attribute[] = []): OnnxNode {
  return { opType, input: inputs, output: outputs, name, domain: '', attribute: attrs };
}

export function intsAttr(name: string, values: number[]): Attribute {
  return { name, type: AttrType.INTS, ints: values };
}

export function intAttr(name: string, value: number): Attribute {
  return { name, type: AttrType.INT, i: value };
}

export function int64Tensor(name: string, values: number[]): TensorProto {
  const raw = new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer);
  return { name, dims: [values.length], dataType: DataType.INT64, rawData: raw };
}

/** A float tensor of the given rank whose every dimension is symbolic (so the checker accepts any shape). */
export function floatValueInfo(name: string, rank: number, dimPrefix = name): ValueInfo {
  const dim: Dimension[] = [];
  for (let i = 0; i < rank; i++) dim.push({ dimParam: `${dimPrefix}_d${i}` });
  return { name, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim } } } };
}
