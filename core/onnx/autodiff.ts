import { UserError } from '../errors';
import { GraphIndex } from './graph';
import { inferShapes, intValues, sameDim, type Dim } from './shapes';
import {
  AttrType, DataType, floatValueInfo, intAttr, intsAttr, makeNode, num, opsetVersion,
  type Attribute, type Graph, type OnnxModel, type OnnxNode, type TensorProto, type ValueInfo,
} from './model';

/** The graph input that carries dL/dy (L = Σ seed ⊙ y), shaped like y. */
export const GRAD_SEED = 'circuitlens.grad_seed';

/** The graph output that carries dL/dx. */
export function gradOutput(x: string): string {
  return `circuitlens.grad.${x}`;
}

/**
 * Reverse-mode differentiation inside the ONNX graph: adds a float input GRAD_SEED shaped like `y` and, for
 * every tensor x of `wrt`, an output gradOutput(x) = dL/dx with L = sum(seed ⊙ y), computed by a backward
 * graph of vector-Jacobian products appended to the forward graph (which it reuses, so one run gives both).
 * Only nodes on a path from a `wrt` tensor to `y` are differentiated; integer and boolean side computations
 * (shapes, masks, indices) are not. Broadcasting is undone over axes fixed when the graph is built where its
 * symbolic shapes prove them (core/onnx/shapes.ts), and over axes found at run time elsewhere.
 * An operator on such a path without a rule here is a UserError naming it. Needs opset 13 or later.
 * `positive`: dim_params of the graph inputs that are never 0 (the engine's batch and prompt length).
 */
export function addGradients(model: OnnxModel, y: string, wrt: string[], opts: { positive?: string[] } = {}): { seed: string; grads: Record<string, string> } {
  const graph = model.graph!;
  const opset = opsetVersion(model);
  if (opset < 13) {
    throw new UserError(`gradient attribution needs a model of ONNX opset 13 or later (this one is opset ${opset}); re-export it with a newer opset`);
  }
  const g = new GraphIndex(graph);
  const exists = (t: string) => g.producer.has(t) || g.graphInputs.has(t) || g.initializers.has(t);
  for (const t of [y, ...wrt]) if (!exists(t)) throw new Error(`addGradients: the graph has no tensor "${t}"`);
  const info = inferStatic(graph, opts.positive);

  // Tensors that depend on a wrt tensor through differentiable inputs, in topological (node) order.
  const active = new Set<string>(wrt);
  for (const n of graph.node) {
    if (differentiableInputs(n).some((i) => active.has(n.input[i]!))) for (const o of differentiableOutputs(n)) active.add(o);
  }
  // Nodes y depends on that have an active differentiable input: the ones to differentiate.
  const onPath = [...g.ancestors(y).nodes].sort((a, b) => a - b).filter((i) => {
    const n = g.node(i);
    return differentiableInputs(n).some((k) => active.has(n.input[k]!));
  });
  for (const i of onPath) {
    const n = g.node(i);
    if (!RULES.has(n.opType) || (n.domain && n.domain !== 'ai.onnx')) {
      const op = n.domain && n.domain !== 'ai.onnx' ? `${n.domain}.${n.opType}` : n.opType;
      throw new UserError(`gradient attribution (EAP, EAP-IG) does not support operator ${op} (node "${n.name || n.output[0]}") yet; exact patching (--method patching) does not need gradients`);
    }
  }

  const b = new Builder(graph, opset, info);
  const contributions = new Map<string, string[]>([[y, [GRAD_SEED]]]);
  const total = (t: string): string | undefined => {
    const c = contributions.get(t);
    if (!c || c.length === 0) return undefined;
    if (c.length > 1) contributions.set(t, [b.op('Sum', c)]);
    return contributions.get(t)![0];
  };
  // GELU subgraphs are differentiated as one operator from their input and output only, so onnxruntime can still
  // fuse the forward ones into a single Gelu kernel (it does not when the backward reads their intermediates).
  const gelus = geluGroups(g, info, new Set([y, ...wrt, ...graph.output.map((o) => o.name)]));
  const inGelu = new Set([...gelus.values()].flatMap((gr) => gr.inner));
  for (const i of [...onPath].reverse()) {
    const n = g.node(i);
    const gelu = gelus.get(i);
    if (gelu) {
      const gy = total(gelu.y);
      if (gy && active.has(gelu.x)) {
        const gx = geluBack(b, gy, gelu.x, gelu.y);
        const c = contributions.get(gelu.x);
        if (c) c.push(gx); else contributions.set(gelu.x, [gx]);
      }
      continue;
    }
    if (inGelu.has(i)) continue;
    const gOut = n.output.map((o) => (o && active.has(o) ? total(o) : undefined));
    if (gOut.every((x) => x === undefined)) continue;
    const diff = new Set(differentiableInputs(n));
    const need = n.input.map((t, k) => !!t && diff.has(k) && active.has(t));
    const gIn = RULES.get(n.opType)!(b, n, gOut, need);
    gIn.forEach((gi, k) => {
      if (!gi || !need[k]) return;
      const t = n.input[k]!;
      const c = contributions.get(t);
      if (c) c.push(gi); else contributions.set(t, [gi]);
    });
  }

  const grads: Record<string, string> = {};
  for (const x of wrt) {
    const out = gradOutput(x);
    b.nodes.push(makeNode('Identity', [total(x) ?? b.zerosLike(x)], [out], `circuitlens/grad/${x}`));
    grads[x] = out;
  }
  graph.node.push(...b.nodes);
  graph.initializer.push(...b.inits);
  graph.input.push(valueInfo(GRAD_SEED, info.rank.get(y)));
  const outputs = new Set(graph.output.map((o) => o.name));
  for (const x of wrt) if (!outputs.has(grads[x]!)) graph.output.push(valueInfo(grads[x]!, info.rank.get(x)));
  return { seed: GRAD_SEED, grads };
}

function valueInfo(name: string, rank: number | undefined): ValueInfo {
  return rank === undefined ? { name, type: { tensorType: { elemType: DataType.FLOAT } } } : floatValueInfo(name, rank);
}

// ---------------------------------------------------------------------------------------------------------
// Which inputs and outputs carry gradients

/** Operators whose outputs are integer, boolean, or piecewise constant: no gradient flows through them. */
const NON_DIFFERENTIABLE = new Set([
  'Shape', 'Size', 'Equal', 'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual', 'Not', 'And', 'Or', 'Xor', 'ArgMax', 'ArgMin',
  'NonZero', 'ConstantOfShape', 'Range', 'IsNaN', 'IsInf', 'Sign', 'Floor', 'Ceil', 'Round', 'EyeLike', 'OneHot', 'Constant',
  'RandomNormalLike', 'RandomUniformLike', 'Bernoulli', 'BitShift',
]);

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16]);

/** Input positions through which a gradient can flow (for unknown operators: all, so they are caught). */
function differentiableInputs(n: OnnxNode): number[] {
  if (NON_DIFFERENTIABLE.has(n.opType)) return [];
  switch (n.opType) {
    case 'Cast': return FLOAT_TYPES.has(num(attr(n, 'to')?.i)) ? [0] : [];
    case 'Gather': case 'GatherElements': case 'GatherND': case 'Slice': case 'Reshape': case 'Expand': case 'Unsqueeze':
    case 'Squeeze': case 'Split': case 'Tile': case 'Pad': case 'ReduceMean': case 'ReduceSum': case 'Dropout': case 'TopK':
      return [0];
    case 'Where': return [1, 2];
    case 'Trilu': case 'Clip': return [0];
    default: return n.input.map((_, i) => i);
  }
}

function differentiableOutputs(n: OnnxNode): string[] {
  if (n.opType === 'Dropout' || n.opType === 'LayerNormalization' || n.opType === 'TopK') return n.output.slice(0, 1).filter(Boolean);
  return n.output.filter(Boolean);
}

// ---------------------------------------------------------------------------------------------------------
// Building the backward graph

class Builder {
  readonly nodes: OnnxNode[] = [];
  readonly inits: TensorProto[] = [];
  private count = 0;
  private readonly consts = new Map<string, string>();
  private readonly shapes = new Map<string, string>();
  private readonly flatIndex = new Map<string, string>();

  constructor(readonly graph: Graph, readonly opset: number, readonly info: StaticInfo) {}

  /** Adds a node; returns its outputs' names. */
  ops(opType: string, inputs: string[], attrs: Attribute[] = [], outputs = 1): string[] {
    const id = this.count++;
    const names = Array.from({ length: outputs }, (_, k) => `circuitlens.bw.${id}${outputs > 1 ? `.${k}` : ''}`);
    this.nodes.push(makeNode(opType, inputs, names, `circuitlens/bw/${id}/${opType}`, attrs));
    return names;
  }

  op(opType: string, inputs: string[], attrs: Attribute[] = []): string {
    return this.ops(opType, inputs, attrs)[0]!;
  }

  /** A float32 scalar constant. */
  f32(v: number): string {
    const key = `f${v}`;
    let name = this.consts.get(key);
    if (!name) {
      name = `circuitlens.bw.const.f${this.consts.size}`;
      this.inits.push({ name, dims: [], dataType: DataType.FLOAT, rawData: new Uint8Array(new Float32Array([v]).buffer) });
      this.consts.set(key, name);
    }
    return name;
  }

  /** An int64 constant: 1-D, or a scalar when `scalar`. */
  i64(values: number[], scalar = false): string {
    const key = `i${scalar ? 's' : ''}${values.join(',')}`;
    let name = this.consts.get(key);
    if (!name) {
      name = `circuitlens.bw.const.i${this.consts.size}`;
      this.inits.push({ name, dims: scalar ? [] : [values.length], dataType: DataType.INT64, rawData: new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer) });
      this.consts.set(key, name);
    }
    return name;
  }

  shape(x: string): string {
    let s = this.shapes.get(x);
    if (!s) { s = this.op('Shape', [x]); this.shapes.set(x, s); }
    return s;
  }

  mul(a: string, b: string): string { return this.op('Mul', [a, b]); }

  zerosLike(x: string): string {
    return this.op('ConstantOfShape', [this.shape(x)], [{ name: 'value', type: AttrType.TENSOR, t: { name: '', dims: [1], dataType: DataType.FLOAT, rawData: new Uint8Array(4) } }]);
  }

  /** Reduction with `axes` given the way this opset wants them (input from 13 for ReduceSum, 18 for the others). */
  reduce(op: 'ReduceSum' | 'ReduceMean', x: string, axes: number[], keepdims = true): string {
    const inputForm = op === 'ReduceSum' ? this.opset >= 13 : this.opset >= 18;
    return inputForm
      ? this.op(op, [x, this.i64(axes)], [intAttr('keepdims', keepdims ? 1 : 0)])
      : this.op(op, [x], [intsAttr('axes', axes), intAttr('keepdims', keepdims ? 1 : 0)]);
  }

  /**
   * The gradient g of a broadcast result, summed back to the shape of the operand x: over the leading axes x
   * lacks and the axes where x has size 1 and the result does not. Those axes are fixed when the graph is built
   * where the symbolic shapes prove them (staticSumTo; `gradDims`: g's dims), and found from the shapes at run
   * time otherwise.
   */
  sumTo(gr: string, x: string, rankOfGrad: number | undefined, gradDims?: Dim[]): string {
    const fixed = this.staticSumTo(gr, x, gradDims);
    if (fixed) return fixed;
    const rx = this.info.rank.get(x);
    const rg = rankOfGrad;
    let sx = this.shape(x);
    if (rx === undefined || rg === undefined || rg !== rx) {
      const pad = rx !== undefined && rg !== undefined
        ? this.i64(Array(Math.max(0, rg - rx)).fill(1))
        : this.op('ConstantOfShape', [this.op('Sub', [this.shape(this.shape(gr)), this.shape(sx)])], [{ name: 'value', type: AttrType.TENSOR, t: { name: '', dims: [1], dataType: DataType.INT64, rawData: new Uint8Array(new BigInt64Array([1n]).buffer) } }]);
      sx = this.op('Concat', [pad, sx], [intAttr('axis', 0)]);
    }
    const differs = this.op('Not', [this.op('Equal', [sx, this.shape(gr)])]);
    const axes = this.op('Reshape', [this.op('NonZero', [differs]), this.i64([-1])]);
    const summed = this.op('ReduceSum', [gr, axes], [intAttr('keepdims', 1), intAttr('noop_with_empty_axes', 1)]);
    return rx !== undefined && rx === rg ? summed : this.op('Reshape', [summed, this.shape(x)]);
  }

  /**
   * sumTo over axes fixed now, when the symbolic shapes prove which they are: the leading axes x lacks and the
   * axes where x has size 1 (summing a size-1 axis is right whether or not it was broadcast). Every other axis
   * must be provably the same size in x and the gradient; otherwise undefined (sumTo finds the axes at run time).
   */
  private staticSumTo(gr: string, x: string, gradDims: Dim[] | undefined): string | undefined {
    const xd = this.info.dims.get(x);
    if (!xd || !gradDims || xd.length > gradDims.length) return undefined;
    const lead = gradDims.length - xd.length;
    const axes = [...Array(lead).keys()];
    for (let i = 0; i < xd.length; i++) {
      const g = gradDims[lead + i]!;
      if (xd[i] === 1) { if (g !== 1) axes.push(lead + i); continue; }
      if (!sameDim(xd[i]!, g)) return undefined;
    }
    if (axes.length === 0) return gr;
    const summed = this.reduce('ReduceSum', gr, axes, true);
    return lead ? this.op('Squeeze', [summed, this.i64([...Array(lead).keys()])]) : summed;
  }

  /** sumTo, skipped where x cannot have been broadcast: every other operand is a constant of x's rank or less with all dimensions 1. */
  unbroadcast(gr: string, x: string, out: string, others: string[]): string {
    const rx = this.info.rank.get(x);
    const trivial = rx !== undefined && others.every((o) => {
      const d = this.info.constDims.get(o);
      return d !== undefined && d.length <= rx && d.every((v) => v === 1);
    });
    return trivial ? gr : this.sumTo(gr, x, this.info.rank.get(out), this.info.dims.get(out));
  }

  /** Swaps the last two axes of a tensor of known rank. */
  transposeLast2(x: string, rank: number): string {
    const perm = [...Array(rank).keys()];
    [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
    return this.op('Transpose', [x], [intsAttr('perm', perm)]);
  }

  rankOf(t: string, n: OnnxNode): number {
    const r = this.info.rank.get(t);
    if (r === undefined) {
      throw new UserError(`gradient attribution could not determine the rank of tensor "${t}" (input of ${n.opType} node "${n.name}"); the model's graph is not supported yet`);
    }
    return r;
  }

  /** x's elements numbered 0..size-1 in x's shape (int64): sliced or gathered like x, it says where each element came from. */
  indexGrid(x: string): string {
    let grid = this.flatIndex.get(x);
    if (!grid) {
      const size = this.op('Size', [x]);
      grid = this.op('Reshape', [this.op('Range', [this.i64([0], true), size, this.i64([1], true)]), this.shape(x)]);
      this.flatIndex.set(x, grid);
    }
    return grid;
  }

  /** Scatters g (shaped like `picked`, flat indices into x) back into a zero tensor shaped like x. */
  scatterBack(gr: string, picked: string, x: string, accumulate: boolean): string {
    const size = this.op('Reshape', [this.op('Size', [x]), this.i64([1])]);
    const zeros = this.op('ConstantOfShape', [size], [{ name: 'value', type: AttrType.TENSOR, t: { name: '', dims: [1], dataType: DataType.FLOAT, rawData: new Uint8Array(4) } }]);
    const attrs = [intAttr('axis', 0)];
    if (accumulate) attrs.push({ name: 'reduction', type: AttrType.STRING, s: new TextEncoder().encode('add') });
    const flat = this.op('ScatterElements', [zeros, this.op('Reshape', [picked, this.i64([-1])]), this.op('Reshape', [gr, this.i64([-1])])], attrs);
    return this.op('Reshape', [flat, this.shape(x)]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Vector-Jacobian products, one rule per operator

type Grad = string | undefined;
type Rule = (b: Builder, n: OnnxNode, gOut: Grad[], need: boolean[]) => Grad[];

function attr(n: OnnxNode, name: string): Attribute | undefined {
  return n.attribute.find((a) => a.name === name);
}

function intOf(n: OnnxNode, name: string, fallback: number): number {
  const a = attr(n, name);
  return a ? num(a.i) : fallback;
}

function floatOf(n: OnnxNode, name: string, fallback: number): number {
  const a = attr(n, name);
  return a?.f ?? fallback;
}

/** The unary rules: dL/dx from g and the node's input x and output y. */
const unary = (f: (b: Builder, gr: string, x: string, y: string) => string): Rule => (b, n, [gr]) => [f(b, gr!, n.input[0]!, n.output[0]!)];

/** Rules for elementwise operators with broadcasting: each operand's local gradient, then summed back to its shape. */
const broadcasting = (local: (b: Builder, gr: string, n: OnnxNode, k: number) => string): Rule => (b, n, [gr], need) =>
  n.input.map((x, k) => (need[k] ? b.unbroadcast(local(b, gr!, n, k), x, n.output[0]!, n.input.filter((_, j) => j !== k && !!n.input[j])) : undefined));

const identity: Rule = (_b, _n, [gr]) => [gr];
const reshapeBack: Rule = (b, n, [gr]) => [b.op('Reshape', [gr!, b.shape(n.input[0]!)])];

const RULES = new Map<string, Rule>([
  ['Identity', identity],
  ['Dropout', identity],
  ['Cast', (b, n, [gr]) => [num(attr(n, 'to')?.i) === DataType.FLOAT ? gr : b.op('Cast', [gr!], [intAttr('to', DataType.FLOAT)])]],
  ['Neg', unary((b, gr) => b.op('Neg', [gr]))],
  ['Sqrt', unary((b, gr, _x, y) => b.op('Div', [b.mul(gr, b.f32(0.5)), y]))],
  ['Reciprocal', unary((b, gr, _x, y) => b.op('Neg', [b.mul(gr, b.mul(y, y))]))],
  ['Exp', unary((b, gr, _x, y) => b.mul(gr, y))],
  ['Log', unary((b, gr, x) => b.op('Div', [gr, x]))],
  ['Abs', unary((b, gr, x) => b.mul(gr, b.op('Sign', [x])))],
  ['Erf', unary((b, gr, x) => b.mul(gr, b.mul(b.f32(2 / Math.sqrt(Math.PI)), b.op('Exp', [b.op('Neg', [b.mul(x, x)])]))))],
  ['Tanh', unary((b, gr, _x, y) => b.mul(gr, b.op('Sub', [b.f32(1), b.mul(y, y)])))],
  ['Sigmoid', unary((b, gr, _x, y) => b.mul(gr, b.mul(y, b.op('Sub', [b.f32(1), y]))))],
  ['Relu', unary((b, gr, x) => b.op('Where', [b.op('Greater', [x, b.f32(0)]), gr, b.f32(0)]))],
  ['LeakyRelu', (b, n, [gr]) => {
    const x = n.input[0]!;
    return [b.op('Where', [b.op('Greater', [x, b.f32(0)]), gr!, b.mul(gr!, b.f32(floatOf(n, 'alpha', 0.01)))])];
  }],
  ['Softplus', unary((b, gr, x) => b.mul(gr, b.op('Sigmoid', [x])))],
  ['Sin', unary((b, gr, x) => b.mul(gr, b.op('Cos', [x])))],
  ['Cos', unary((b, gr, x) => b.op('Neg', [b.mul(gr, b.op('Sin', [x]))]))],
  // Causal masks applied to scores (torch.tril/triu on a float tensor): the gradient is masked the same way.
  ['Trilu', (b, n, [gr]) => [b.op('Trilu', [gr!, ...n.input.slice(1)], n.attribute)]],
  ['Clip', (b, n, [gr]) => {
    const [x, lo, hi] = [n.input[0]!, n.input[1], n.input[2]];
    let keep: string | undefined;
    if (lo) keep = b.op('GreaterOrEqual', [x, lo]);
    if (hi) { const below = b.op('LessOrEqual', [x, hi]); keep = keep ? b.op('And', [keep, below]) : below; }
    return [keep ? b.op('Where', [keep, gr!, b.f32(0)]) : gr];
  }],
  // Elementwise max/min: the gradient goes to the operand that was chosen (to each, on a tie).
  ['Max', broadcasting((b, gr, n, k) => b.op('Where', [b.op('Equal', [n.input[k]!, n.output[0]!]), gr, b.f32(0)]))],
  ['Min', broadcasting((b, gr, n, k) => b.op('Where', [b.op('Equal', [n.input[k]!, n.output[0]!]), gr, b.f32(0)]))],
  ['Add', broadcasting((_b, gr) => gr)],
  ['Sum', broadcasting((_b, gr) => gr)],
  ['Sub', broadcasting((b, gr, _n, k) => (k === 0 ? gr : b.op('Neg', [gr])))],
  ['Mul', broadcasting((b, gr, n, k) => b.mul(gr, n.input[1 - k]!))],
  ['Div', broadcasting((b, gr, n, k) => (k === 0 ? b.op('Div', [gr, n.input[1]!]) : b.op('Neg', [b.op('Div', [b.mul(gr, n.output[0]!), n.input[1]!])])))],
  ['Pow', (b, n, [gr], need) => {
    if (need[1]) throw new UserError(`gradient attribution supports Pow only with a constant exponent (node "${n.name}" computes its exponent)`);
    const [x, e] = [n.input[0]!, n.input[1]!];
    const value = b.info.floatValue.get(e);
    const local = value === 2 ? b.mul(x, b.f32(2)) : value === 1 ? undefined : (() => {
      const ef = b.op('Cast', [e], [intAttr('to', DataType.FLOAT)]);
      return b.mul(ef, b.op('Pow', [x, b.op('Sub', [ef, b.f32(1)])]));
    })();
    return [b.unbroadcast(local ? b.mul(gr!, local) : gr!, x, n.output[0]!, [e])];
  }],
  ['Where', (b, n, [gr], need) => {
    const zero = b.f32(0);
    const others = (k: number) => [n.input[0]!, n.input[3 - k]!];
    return [
      undefined,
      need[1] ? b.unbroadcast(b.op('Where', [n.input[0]!, gr!, zero]), n.input[1]!, n.output[0]!, others(1)) : undefined,
      need[2] ? b.unbroadcast(b.op('Where', [n.input[0]!, zero, gr!]), n.input[2]!, n.output[0]!, others(2)) : undefined,
    ];
  }],
  ['Expand', (b, n, [gr]) => [b.sumTo(gr!, n.input[0]!, b.info.rank.get(n.output[0]!), b.info.dims.get(n.output[0]!))]],
  ['Reshape', reshapeBack],
  ['Unsqueeze', reshapeBack],
  ['Squeeze', reshapeBack],
  ['Flatten', reshapeBack],
  ['Transpose', (b, n, [gr]) => {
    const perm = attr(n, 'perm')?.ints?.map(num);
    if (!perm) return [b.op('Transpose', [gr!])];
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [b.op('Transpose', [gr!], [intsAttr('perm', inverse)])];
  }],
  ['Softmax', (b, n, [gr]) => {
    const y = n.output[0]!;
    const axis = intOf(n, 'axis', -1);
    const dot = b.op('ReduceSum', [b.mul(gr!, y), b.i64([axis])], [intAttr('keepdims', 1)]);
    return [b.mul(y, b.op('Sub', [gr!, dot]))];
  }],
  ['LogSoftmax', (b, n, [gr]) => {
    const axis = intOf(n, 'axis', -1);
    const total = b.op('ReduceSum', [gr!, b.i64([axis])], [intAttr('keepdims', 1)]);
    return [b.op('Sub', [gr!, b.mul(b.op('Exp', [n.output[0]!]), total)])];
  }],
  ['LayerNormalization', (b, n, [gr], need) => {
    const [x, scale, bias] = [n.input[0]!, n.input[1]!, n.input[2]];
    // The normalized axes, counted from the end: [axis, ..., -1].
    const axis = intOf(n, 'axis', -1);
    const scaleRank = b.info.rank.get(scale);
    const first = axis < 0 ? axis : scaleRank !== undefined ? -scaleRank : axis - b.rankOf(x, n);
    const axes = Array.from({ length: -first }, (_, i) => first + i);
    // Recomputed rather than read from the optional Mean/InvStdDev outputs, which not every kernel fills.
    const xc = b.op('Sub', [x, b.reduce('ReduceMean', x, axes)]);
    const variance = b.reduce('ReduceMean', b.mul(xc, xc), axes);
    const inv = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [variance, b.f32(floatOf(n, 'epsilon', 1e-5))])])]);
    const xhat = b.mul(xc, inv);
    const out: Grad[] = [undefined, undefined, undefined];
    if (need[0]) {
      const dxhat = b.mul(gr!, scale);
      const m1 = b.reduce('ReduceMean', dxhat, axes);
      const m2 = b.reduce('ReduceMean', b.mul(dxhat, xhat), axes);
      out[0] = b.mul(inv, b.op('Sub', [b.op('Sub', [dxhat, m1]), b.mul(xhat, m2)]));
    }
    const ry = b.info.rank.get(n.output[0]!);
    const dy = b.info.dims.get(n.output[0]!);
    if (need[1]) out[1] = b.sumTo(b.mul(gr!, xhat), scale, ry, dy);
    if (need[2] && bias) out[2] = b.sumTo(gr!, bias, ry, dy);
    return out;
  }],
  ['ReduceSum', (b, n, [gr]) => [reduceBack(b, n, gr!, false)]],
  ['ReduceMean', (b, n, [gr]) => [reduceBack(b, n, gr!, true)]],
  ['MatMul', (b, n, [gr], need) => {
    const [A, B] = [n.input[0]!, n.input[1]!];
    const [ra, rb] = [b.rankOf(A, n), b.rankOf(B, n)];
    if (ra === 1 && rb === 1) return [need[0] ? b.mul(gr!, B) : undefined, need[1] ? b.mul(gr!, A) : undefined];
    // A vector operand is a matrix with one row (A) or one column (B), as MatMul itself treats it.
    const g2 = ra === 1 ? b.op('Unsqueeze', [gr!, b.i64([-2])]) : rb === 1 ? b.op('Unsqueeze', [gr!, b.i64([-1])]) : gr!;
    const A2 = ra === 1 ? b.op('Unsqueeze', [A, b.i64([0])]) : A;
    const B2 = rb === 1 ? b.op('Unsqueeze', [B, b.i64([-1])]) : B;
    const [ra2, rb2] = [Math.max(ra, 2), Math.max(rb, 2)];
    const r2 = Math.max(ra2, rb2);
    let gA: Grad;
    let gB: Grad;
    // With matrix operands, dL/dA is [batch of the output, A's last two] (dL/dB likewise).
    const dOut = ra >= 2 && rb >= 2 ? b.info.dims.get(n.output[0]!) : undefined;
    const gradDims = (operand: string) => {
      const d = b.info.dims.get(operand);
      return dOut && d ? [...dOut.slice(0, -2), ...d.slice(-2)] : undefined;
    };
    if (need[0] && ra >= 2 && rb === 2 && b.info.constDims.get(B)?.length === 2) {
      // A constant weight matrix [K, N]: dA = g·Bᵀ as a Gemm with transB on g's rows ([-1, N]), reshaped to A's
      // shape. MatMul(g, Transpose(B)) would have onnxruntime constant-fold Transpose(B) into a second full copy
      // of every weight (4 GiB more for a 1.1B model); Gemm reads B as it is.
      const rows = b.op('Reshape', [gr!, b.i64([-1, b.info.constDims.get(B)![1]!])]);
      gA = b.op('Reshape', [b.op('Gemm', [rows, B], [intAttr('transB', 1)]), b.shape(A)]);
    } else if (need[0]) {
      gA = b.op('MatMul', [g2, b.transposeLast2(B2, rb2)]);
      // B's batch dimensions broadcast into A's only when B has any.
      gA = ra >= 2 && rb <= 2 ? gA : b.sumTo(gA, A, r2, gradDims(A));
    }
    if (need[1]) {
      gB = b.op('MatMul', [b.transposeLast2(A2, ra2), g2]);
      if (rb === 1) gB = b.sumTo(b.op('Squeeze', [gB, b.i64([-1])]), B, r2 - 1);
      else if (!(rb >= 2 && ra <= 2)) gB = b.sumTo(gB, B, r2, gradDims(B));
    }
    return [gA, gB];
  }],
  ['Gemm', (b, n, [gr], need) => {
    const [A, B, C] = [n.input[0]!, n.input[1]!, n.input[2]];
    const alpha = floatOf(n, 'alpha', 1);
    const beta = floatOf(n, 'beta', 1);
    const [ta, tb] = [intOf(n, 'transA', 0), intOf(n, 'transB', 0)];
    const gemm = (p: string, q: string, transA: number, transB: number) =>
      b.op('Gemm', [p, q], [{ name: 'alpha', type: AttrType.FLOAT, f: alpha }, intAttr('transA', transA), intAttr('transB', transB)]);
    // Y = α·op(A)·op(B) + β·C: d op(A) = α·G·op(B)ᵀ and d op(B) = α·op(A)ᵀ·G, transposed back where op transposes.
    return [
      need[0] ? (ta ? gemm(B, gr!, tb, 1) : gemm(gr!, B, 0, tb ? 0 : 1)) : undefined,
      need[1] ? (tb ? gemm(gr!, A, 1, ta) : gemm(A, gr!, ta ? 0 : 1, 0)) : undefined,
      need[2] && C ? b.sumTo(beta === 1 ? gr! : b.mul(gr!, b.f32(beta)), C, 2, b.info.dims.get(n.output[0]!)) : undefined,
    ];
  }],
  ['Split', (b, n, gOut) => {
    const parts = n.output.map((o, k) => gOut[k] ?? b.zerosLike(o));
    return [b.op('Concat', parts, [intAttr('axis', intOf(n, 'axis', 0))])];
  }],
  ['Concat', (b, n, [gr], need) => {
    const axis = intOf(n, 'axis', 0);
    const sizes = b.op('Concat', n.input.map((x) => b.op('Gather', [b.shape(x), b.i64([axis])], [intAttr('axis', 0)])), [intAttr('axis', 0)]);
    const parts = b.ops('Split', [gr!, sizes], [intAttr('axis', axis)], n.input.length);
    return parts.map((p, k) => (need[k] ? p : undefined));
  }],
  ['Slice', (b, n, [gr]) => {
    const x = n.input[0]!;
    const padded = slicePadBack(b, n, gr!);
    if (padded) return [padded];
    const picked = b.op('Slice', [b.indexGrid(x), ...n.input.slice(1)]);
    return [b.scatterBack(gr!, picked, x, false)];
  }],
  ['Gather', (b, n, [gr]) => {
    const [x, indices] = [n.input[0]!, n.input[1]!];
    // Repeated indices add up: ScatterElements' reduction, from opset 16; before, only distinct constant indices.
    const accumulate = b.opset >= 16;
    if (!accumulate) {
      const ids = b.info.ints.get(indices);
      if (!ids || new Set(ids).size !== ids.length || ids.some((i) => i < 0) && ids.some((i) => i >= 0)) {
        throw new UserError(`gradient attribution through Gather node "${n.name}" needs opset 16 or later (its indices may repeat); re-export the model with a newer opset`);
      }
    }
    const picked = b.op('Gather', [b.indexGrid(x), indices], [intAttr('axis', intOf(n, 'axis', 0))]);
    return [b.scatterBack(gr!, picked, x, accumulate)];
  }],
]);

/**
 * Slice backward as a zero Pad of the gradient, when the slice's starts, ends and axes are constants and its
 * steps 1 (the usual case): far cheaper than scattering through an index grid. Pads are computed at run time
 * from x's shape, with starts and ends clamped the way Slice clamps them. Undefined when it does not apply.
 */
function slicePadBack(b: Builder, n: OnnxNode, gr: string): string | undefined {
  const x = n.input[0]!;
  const r = b.info.rank.get(x);
  const starts = n.input[1] ? b.info.ints.get(n.input[1]) : undefined;
  const ends = n.input[2] ? b.info.ints.get(n.input[2]) : undefined;
  if (r === undefined || !starts || !ends || starts.length !== ends.length) return undefined;
  const axes = n.input[3] ? b.info.ints.get(n.input[3]) : starts.map((_, i) => i);
  const steps = n.input[4] ? b.info.ints.get(n.input[4]) : starts.map(() => 1);
  if (!axes || !steps || axes.length !== starts.length || steps.some((v) => v !== 1)) return undefined;
  const norm = axes.map((a) => (a < 0 ? a + r : a));
  if (norm.some((a) => a < 0 || a >= r) || new Set(norm).size !== norm.length) return undefined;
  // Beyond ±2^62 a bound means "to the end" (exporters write INT64_MAX, which a double cannot hold exactly).
  const HUGE = 2 ** 62;
  const zero = b.i64([0]);
  const before: string[] = Array(r).fill(zero);
  const after: string[] = Array(r).fill(zero);
  // Sizes known when the graph is built give constant pads.
  const xd = b.info.dims.get(x);
  if (xd && norm.every((a) => typeof xd[a] === 'number')) {
    const pads = Array<number>(2 * r).fill(0);
    norm.forEach((a, i) => {
      const D = xd[a] as number;
      const clampTo = (v: number) => (v >= HUGE ? D : v <= -HUGE ? 0 : Math.min(D, Math.max(0, v < 0 ? v + D : v)));
      const s = clampTo(starts[i]!);
      pads[a] = s;
      pads[r + a] = D - Math.max(clampTo(ends[i]!), s);
    });
    return b.op('Pad', [gr, b.i64(pads)]);
  }
  norm.forEach((a, i) => {
    const dim = b.op('Gather', [b.shape(x), b.i64([a])], [intAttr('axis', 0)]);
    const bound = (v: number, empty: string) => {
      if (v >= HUGE) return dim;
      if (v <= -HUGE) return empty;
      return v >= 0 ? b.op('Min', [b.i64([v]), dim]) : b.op('Max', [b.op('Add', [b.i64([v]), dim]), zero]);
    };
    const s = bound(starts[i]!, zero);
    const e = b.op('Max', [bound(ends[i]!, zero), s]);
    before[a] = s;
    after[a] = b.op('Sub', [dim, e]);
  });
  return b.op('Pad', [gr, b.op('Concat', [...before, ...after], [intAttr('axis', 0)])]);
}

/**
 * The erf GELU exporters write for nn.GELU(): y = x · ½(1 + erf(x/√2)) as Div (or Mul by 1/√2), Erf, Add 1, and
 * the products by x and ½ in either order. Keyed by the index of the node computing y; `inner` are the others.
 * Only groups whose intermediate tensors nothing else reads (and that are not `keep`: outputs, y, wrt).
 */
function geluGroups(g: GraphIndex, info: StaticInfo, keep: Set<string>): Map<number, { x: string; y: string; inner: number[] }> {
  const groups = new Map<number, { x: string; y: string; inner: number[] }>();
  // A constant of one element that cannot broadcast x to a higher rank (y then has x's shape).
  const near = (t: string | undefined, v: number, x?: string) => {
    const c = t === undefined ? undefined : info.floatValue.get(t);
    const d = t === undefined ? undefined : info.constDims.get(t);
    const rx = x === undefined ? undefined : info.rank.get(x);
    return c !== undefined && Math.abs(c - v) <= 1e-4 * Math.abs(v) && d !== undefined && (d.length === 0 || (rx !== undefined && d.length <= rx));
  };
  const idx = (n: OnnxNode) => g.graph.node.indexOf(n);
  /** The one consumer of t (undefined when several, none, or t must stay). */
  const only = (t: string): OnnxNode | undefined => {
    const c = g.consumersOf(t);
    return c.length === 1 && !keep.has(t) ? c[0] : undefined;
  };
  const other = (n: OnnxNode, t: string) => (n.input[0] === t ? n.input[1] : n.input[1] === t ? n.input[0] : undefined);
  for (const e of g.graph.node) {
    if (e.opType !== 'Erf' || (e.domain && e.domain !== 'ai.onnx')) continue;
    const d = g.producerOf(e.input[0]!);
    if (!d || keep.has(e.input[0]!) || g.consumersOf(e.input[0]!).length !== 1) continue;
    const x = d.opType === 'Div' && near(d.input[1], Math.SQRT2, d.input[0]) ? d.input[0]
      : d.opType === 'Mul' ? (near(d.input[1], Math.SQRT1_2, d.input[0]) ? d.input[0] : near(d.input[0], Math.SQRT1_2, d.input[1]) ? d.input[1] : undefined) : undefined;
    if (!x) continue;
    const add = only(e.output[0]!);
    if (add?.opType !== 'Add' || !near(other(add, e.output[0]!), 1, x)) continue;
    const m1 = only(add.output[0]!);
    if (m1?.opType !== 'Mul') continue;
    const f = other(m1, add.output[0]!);
    if (f === x) {
      // (x · (1 + erf)) · ½
      const m2 = only(m1.output[0]!);
      if (m2?.opType !== 'Mul' || !near(other(m2, m1.output[0]!), 0.5, x)) continue;
      groups.set(idx(m2), { x, y: m2.output[0]!, inner: [d, e, add, m1].map(idx) });
    } else {
      // (x · ½) · (1 + erf)
      const h = f ? g.producerOf(f) : undefined;
      if (!h || h.opType !== 'Mul' || other(h, x) === undefined || !near(other(h, x), 0.5, x) || only(f!) !== m1) continue;
      groups.set(idx(m1), { x, y: m1.output[0]!, inner: [d, e, add, h].map(idx) });
    }
  }
  return groups;
}

/**
 * dL/dx of y = GELU(x) from x and y alone: g · (Φ(x) + x·φ(x)), with Φ(x) = y / x and φ(x) = exp(−x²/2) / √(2π).
 * Φ is ½ for |x| < 1e-30 (off by < 1e-30 there): at 0, and where y ≈ x/2 would be a denormal that a runtime
 * flushing denormals turns into 0.
 */
function geluBack(b: Builder, gy: string, x: string, y: string): string {
  const cdf = b.op('Where', [b.op('Less', [b.op('Abs', [x]), b.f32(1e-30)]), b.f32(0.5), b.op('Div', [y, x])]);
  const pdf = b.op('Exp', [b.mul(b.mul(x, x), b.f32(-0.5))]);
  return b.mul(gy, b.op('Add', [cdf, b.mul(b.mul(x, pdf), b.f32(1 / Math.sqrt(2 * Math.PI)))]));
}

/** ReduceSum / ReduceMean backward: the gradient broadcast back over the reduced axes (divided by their size for the mean). */
function reduceBack(b: Builder, n: OnnxNode, gr: string, mean: boolean): string {
  const x = n.input[0]!;
  const keep = intOf(n, 'keepdims', 1) === 1;
  const axesInput = n.input[1] || undefined;
  const axesAttr = attr(n, 'axes')?.ints?.map(num);
  const constAxes = axesInput ? b.info.ints.get(axesInput) : axesAttr;
  const all = !axesInput && (!axesAttr || axesAttr.length === 0) || (constAxes !== undefined && constAxes.length === 0);
  if (all && intOf(n, 'noop_with_empty_axes', 0) === 1) return gr;
  const kept = keep || all ? gr : b.op('Unsqueeze', [gr, axesInput ?? b.i64(axesAttr!)]);
  const spread = b.op('Expand', [kept, b.shape(x)]);
  if (!mean) return spread;
  // The mean's divisor: the product of the reduced sizes, a constant when they are known.
  const xd = b.info.dims.get(x);
  const reduced = all ? xd : constAxes && xd ? constAxes.map((a) => xd[a < 0 ? a + xd.length : a]) : undefined;
  if (reduced && reduced.every((d) => typeof d === 'number')) return b.mul(spread, b.f32(1 / (reduced as number[]).reduce((p, d) => p * d, 1)));
  const count = (t: string) => b.op('Cast', [b.op('Size', [t])], [intAttr('to', DataType.FLOAT)]);
  return b.mul(spread, b.op('Div', [count(n.output[0]!), count(x)]));
}

// ---------------------------------------------------------------------------------------------------------
// Static facts about tensors: constants, and (from core/onnx/shapes.ts) ranks, sizes and shape arithmetic

interface StaticInfo {
  rank: Map<string, number>;
  /** Values of int64/int32 tensors known without running the graph. */
  ints: Map<string, number[]>;
  /** Dims of constant tensors (initializers and Constant nodes). */
  constDims: Map<string, number[]>;
  /** Values of constant float scalars. */
  floatValue: Map<string, number>;
  /** Symbolic dimensions (core/onnx/shapes.ts), where they can be proven. */
  dims: Map<string, Dim[]>;
}

function inferStatic(graph: Graph, positive: string[] = []): StaticInfo {
  const ints = new Map<string, number[]>();
  const constDims = new Map<string, number[]>();
  const floatValue = new Map<string, number>();
  const constant = (name: string, t: TensorProto) => {
    const dims = t.dims.map(num);
    constDims.set(name, dims);
    const n = dims.reduce((a, v) => a * v, 1);
    const v = n <= 64 ? intValues(t) : undefined;
    if (v) ints.set(name, v);
    if (n === 1 && t.dataType === DataType.FLOAT) {
      const v = t.rawData?.length ? new Float32Array(new Uint8Array(t.rawData).buffer)[0] : t.floatData?.[0];
      if (v !== undefined) floatValue.set(name, v);
    }
  };
  for (const t of graph.initializer) constant(t.name, t);
  for (const n of graph.node) {
    if (n.opType !== 'Constant') continue;
    const a = n.attribute[0];
    if (a?.t) constant(n.output[0]!, a.t);
    else if (a?.name === 'value_float') { floatValue.set(n.output[0]!, a.f!); constDims.set(n.output[0]!, []); }
    else if (a?.name === 'value_int') constDims.set(n.output[0]!, []);
  }
  // Ranks, sizes and the values of shape arithmetic: core/onnx/shapes.ts.
  const { dims, vals } = inferShapes(graph, { positive });
  const rank = new Map([...dims].map(([t, d]) => [t, d.length] as const));
  for (const [t, v] of vals) if (!ints.has(t) && v.every((x) => typeof x === 'number')) ints.set(t, v as number[]);
  return { rank, ints, constDims, floatValue, dims };
}
