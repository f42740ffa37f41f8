// Vector-Jacobian products, one rule per operator, and which of an operator's inputs and outputs carry gradients.
import { UserError } from '../errors';
import type { GradBuilder } from './grad-builder';
import { AttrType, DataType, intAttr, intsAttr, num, type Attribute, type OnnxNode } from './model';

/** Operators whose outputs are integer, boolean, or piecewise constant: no gradient flows through them. */
const NON_DIFFERENTIABLE = new Set([
  'Shape', 'Size', 'Equal', 'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual', 'Not', 'And', 'Or', 'Xor', 'ArgMax', 'ArgMin',
  'NonZero', 'ConstantOfShape', 'Range', 'IsNaN', 'IsInf', 'Sign', 'Floor', 'Ceil', 'Round', 'EyeLike', 'OneHot', 'Constant',
  'RandomNormalLike', 'RandomUniformLike', 'Bernoulli', 'BitShift',
]);

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16]);

/** Input positions through which a gradient can flow (for unknown operators: all, so they are caught). */
export function differentiableInputs(n: OnnxNode): number[] {
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

export function differentiableOutputs(n: OnnxNode): string[] {
  if (n.opType === 'Dropout' || n.opType === 'LayerNormalization' || n.opType === 'TopK') return n.output.slice(0, 1).filter(Boolean);
  return n.output.filter(Boolean);
}

export type Grad = string | undefined;
export type Rule = (b: GradBuilder, n: OnnxNode, gOut: Grad[], need: boolean[]) => Grad[];

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
const unary = (f: (b: GradBuilder, gr: string, x: string, y: string) => string): Rule => (b, n, [gr]) => [f(b, gr!, n.input[0]!, n.output[0]!)];

/** Rules for elementwise operators with broadcasting: each operand's local gradient, then summed back to its shape. */
const broadcasting = (local: (b: GradBuilder, gr: string, n: OnnxNode, k: number) => string): Rule => (b, n, [gr], need) =>
  n.input.map((x, k) => (need[k] ? b.unbroadcast(local(b, gr!, n, k), x, n.output[0]!, n.input.filter((_, j) => j !== k && !!n.input[j])) : undefined));

const identity: Rule = (_b, _n, [gr]) => [gr];
const reshapeBack: Rule = (b, n, [gr]) => [b.op('Reshape', [gr!, b.shape(n.input[0]!)])];

export const RULES = new Map<string, Rule>([
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
function slicePadBack(b: GradBuilder, n: OnnxNode, gr: string): string | undefined {
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
 * dL/dx of y = GELU(x) from x and y alone: g · (Φ(x) + x·φ(x)), with Φ(x) = y / x and φ(x) = exp(−x²/2) / √(2π).
 * Φ is ½ for |x| < 1e-30 (off by < 1e-30 there): at 0, and where y ≈ x/2 would be a denormal that a runtime
 * flushing denormals turns into 0.
 */
export function geluBack(b: GradBuilder, gy: string, x: string, y: string): string {
  const cdf = b.op('Where', [b.op('Less', [b.op('Abs', [x]), b.f32(1e-30)]), b.f32(0.5), b.op('Div', [y, x])]);
  const pdf = b.op('Exp', [b.mul(b.mul(x, x), b.f32(-0.5))]);
  return b.mul(gy, b.op('Add', [cdf, b.mul(b.mul(x, pdf), b.f32(1 / Math.sqrt(2 * Math.PI)))]));
}

/** ReduceSum / ReduceMean backward: the gradient broadcast back over the reduced axes (divided by their size for the mean). */
function reduceBack(b: GradBuilder, n: OnnxNode, gr: string, mean: boolean): string {
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
