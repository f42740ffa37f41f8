// The one way CircuitLens adds nodes and initializers to a graph: every rewrite (instrumentation, lean sessions,
// layer skipping, edges, gradients) collects what it builds in a Builder and places it into the graph itself.
import { AttrType, DataType, intAttr, intsAttr, makeNode, type Attribute, type Graph, type OnnxNode, type TensorProto } from './model';

/** How a builder names the nodes it names itself, and its constants. */
export interface Naming {
  /** The outputs and the name of the next node; `base` says what the output is (some namings use it). */
  node(opType: string, outputs: number, base: string): { outputs: string[]; name: string };
  /** The name of the next constant. */
  constant(kind: 'float' | 'int'): string;
}

/**
 * The backward graph's names: outputs `${tensors}.${id}` (`.${k}` each when several), nodes
 * `${nodes}/${id}/${opType}`, constants `${tensors}.const.f${n}` and `.i${n}` counted apart from the nodes.
 */
export function numberedNames(tensors: string, nodes: string): Naming {
  let count = 0;
  let consts = 0;
  return {
    node: (opType, outputs) => {
      const id = count++;
      return { outputs: Array.from({ length: outputs }, (_, k) => `${tensors}.${id}${outputs > 1 ? `.${k}` : ''}`), name: `${nodes}/${id}/${opType}` };
    },
    constant: (kind) => `${tensors}.const.${kind === 'float' ? 'f' : 'i'}${consts++}`,
  };
}

/** Edge instrumentation's names: every tensor `${tensors}${n}.${base}` from one count (constants `const`, `fconst`), each node named `${nodes}/` and its output. */
export function freshNames(tensors: string, nodes: string): Naming {
  let uid = 0;
  const fresh = (base: string) => `${tensors}${uid++}.${base}`;
  return {
    node: (_opType, outputs, base) => {
      const names = Array.from({ length: outputs }, () => fresh(base));
      return { outputs: names, name: `${nodes}/${names[0]}` };
    },
    constant: (kind) => fresh(kind === 'float' ? 'fconst' : 'const'),
  };
}

/** For builders whose every node and constant is named by the caller. */
const UNNAMED: Naming = {
  node: (opType) => { throw new Error(`Builder: a ${opType} node without a name, in a rewrite that names its nodes`); },
  constant: () => { throw new Error('Builder: a constant without a name, in a rewrite that names its constants'); },
};

/**
 * Nodes and initializers for a graph, in the order they were built. `shareConstants`: one initializer per distinct
 * constant value (the backward graph asks for the same few scalars many times). `opset`: the model's, for
 * operators whose form changed between opsets (reduce).
 */
export class Builder {
  readonly nodes: OnnxNode[] = [];
  readonly inits: TensorProto[] = [];
  private readonly consts = new Map<string, string>();
  private readonly shapes = new Map<string, string>();

  constructor(readonly naming: Naming = UNNAMED, private readonly opts: { shareConstants?: boolean; opset?: number } = {}) {}

  /** Adds a node whose outputs `naming` names; returns them. */
  ops(opType: string, inputs: string[], attrs: Attribute[] = [], outputs = 1, base = opType.toLowerCase()): string[] {
    const { outputs: names, name } = this.naming.node(opType, outputs, base);
    this.nodes.push(makeNode(opType, inputs, names, name, attrs));
    return names;
  }

  op(opType: string, inputs: string[], attrs: Attribute[] = [], base?: string): string {
    return this.ops(opType, inputs, attrs, 1, base)[0]!;
  }

  /** Adds a node the caller names; returns its first output. */
  node(opType: string, inputs: string[], outputs: string[], name: string, attrs: Attribute[] = []): string {
    this.nodes.push(makeNode(opType, inputs, outputs, name, attrs));
    return outputs[0]!;
  }

  /** Adds nodes made elsewhere (copies of the graph's own, renamed). */
  add(...nodes: OnnxNode[]): void {
    this.nodes.push(...nodes);
  }

  /**
   * Adds copies of `nodes` (in graph order), each output o renamed `${o}@${tag}` and inputs read through `rename`,
   * which the caller may seed (the copies' new inputs); returns `rename`.
   */
  copy(nodes: OnnxNode[], tag: string, rename = new Map<string, string>()): Map<string, string> {
    for (const n of nodes) for (const o of n.output) if (o) rename.set(o, `${o}@${tag}`);
    for (const n of nodes) this.nodes.push({ ...n, name: `${n.name}@${tag}`, input: n.input.map((t) => rename.get(t) ?? t), output: n.output.map((t) => rename.get(t) ?? t) });
    return rename;
  }

  /** Adds an initializer the caller names; returns its name. */
  init(t: TensorProto): string {
    this.inits.push(t);
    return t.name;
  }

  private constant(key: string, kind: 'float' | 'int', make: (name: string) => TensorProto): string {
    const shared = this.opts.shareConstants ? this.consts.get(key) : undefined;
    if (shared) return shared;
    const name = this.init(make(this.naming.constant(kind)));
    if (this.opts.shareConstants) this.consts.set(key, name);
    return name;
  }

  /** A float32 scalar constant. */
  f32(v: number): string {
    return this.constant(`f${v}`, 'float', (name) => ({ name, dims: [], dataType: DataType.FLOAT, rawData: new Uint8Array(new Float32Array([v]).buffer) }));
  }

  /** A float32 constant of the given dims. */
  floats(dims: number[], values: Float32Array): string {
    return this.constant(`F${dims.join('x')}:${values.join(',')}`, 'float', (name) => ({ name, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(values.buffer.slice(0)) }));
  }

  /** An int64 constant: 1-D, or a scalar when `scalar`. */
  i64(values: number[], scalar = false): string {
    return this.constant(`i${scalar ? 's' : ''}${values.join(',')}`, 'int', (name) => ({
      name, dims: scalar ? [] : [values.length], dataType: DataType.INT64, rawData: new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer),
    }));
  }

  /** Shape(x), built once per tensor. */
  shape(x: string): string {
    let s = this.shapes.get(x);
    if (!s) { s = this.op('Shape', [x]); this.shapes.set(x, s); }
    return s;
  }

  mul(a: string, b: string): string { return this.op('Mul', [a, b]); }

  /** A tensor of the given shape filled with one value (float32, or int64). */
  filled(shape: string, value: number, type: 'float' | 'int64' = 'float'): string {
    const t: TensorProto = type === 'float'
      ? { name: '', dims: [1], dataType: DataType.FLOAT, rawData: new Uint8Array(new Float32Array([value]).buffer) }
      : { name: '', dims: [1], dataType: DataType.INT64, rawData: new Uint8Array(new BigInt64Array([BigInt(value)]).buffer) };
    return this.op('ConstantOfShape', [shape], [{ name: 'value', type: AttrType.TENSOR, t }]);
  }

  zerosLike(x: string): string {
    return this.filled(this.shape(x), 0);
  }

  /** Reduction with `axes` given the way this opset wants them (input from 13 for ReduceSum, 18 for the others). */
  reduce(op: 'ReduceSum' | 'ReduceMean', x: string, axes: number[], keepdims = true): string {
    const opset = this.opts.opset;
    if (opset === undefined) throw new Error('Builder.reduce: the builder was made without the model\'s opset');
    const inputForm = op === 'ReduceSum' ? opset >= 13 : opset >= 18;
    return inputForm
      ? this.op(op, [x, this.i64(axes)], [intAttr('keepdims', keepdims ? 1 : 0)])
      : this.op(op, [x], [intsAttr('axes', axes), intAttr('keepdims', keepdims ? 1 : 0)]);
  }

  /** Appends what was built to `graph`: the nodes after its own (callers that need another order place b.nodes themselves). */
  appendTo(graph: Graph): void {
    graph.node.push(...this.nodes);
    graph.initializer.push(...this.inits);
  }
}
