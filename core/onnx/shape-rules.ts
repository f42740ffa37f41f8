// One shape rule per operator (as autodiff.ts has one gradient rule per operator): what a node's outputs' dimensions
// are, and the values of small integer outputs (shape arithmetic), from what is known of its inputs. shapes.ts runs
// them in node order; an operator without a rule proves nothing about its outputs.
import { DataType, num, type Attribute, type OnnxNode, type TensorProto } from './model';
import type { Dim } from './shapes';

/** What rules read and write: the facts so far (shapes.ts's ShapeFacts) and the helpers they share. */
export interface ShapeContext {
  dims: Map<string, Dim[]>;
  vals: Map<string, Dim[]>;
  /** Symbols of sizes every run has at least 1 of. */
  positive: Set<string>;
  /** A fresh symbol, equal to nothing else. */
  unknown(): Dim;
  /** A constant tensor's dimensions and, when small, its values. */
  constant(name: string, t: TensorProto): void;
  sameDim(a: Dim, b: Dim): boolean;
  intValues(t: TensorProto): number[] | undefined;
}

export type ShapeRule = (n: OnnxNode, c: ShapeContext) => void;

const isLe = (d: Dim): d is { le: number | string } => typeof d === 'object';
const attr = (n: OnnxNode, name: string): Attribute | undefined => n.attribute.find((a) => a.name === name);
const intOf = (n: OnnxNode, name: string, fallback: number) => { const a = attr(n, name); return a ? num(a.i) : fallback; };
const norm = (a: number, r: number) => (a < 0 ? a + r : a);
const set = (c: ShapeContext, t: string | undefined, d: Dim[] | undefined) => { if (t && d) c.dims.set(t, d); };
const dimsOf = (c: ShapeContext, t: string | undefined) => (t ? c.dims.get(t) : undefined);
const unknowns = (c: ShapeContext, r: number): Dim[] => Array.from({ length: r }, () => c.unknown());
/** The length of a 1-D tensor (a shape whose values are not known), when known. */
const lengthOf = (c: ShapeContext, t: string | undefined): number | undefined => {
  const d = dimsOf(c, t);
  return d?.length === 1 && typeof d[0] === 'number' ? d[0] : undefined;
};
/** Constant integers: a tensor's known numeric values. */
const ints = (c: ShapeContext, t: string | undefined): number[] | undefined => {
  const v = t ? c.vals.get(t) : undefined;
  return v && v.every((x) => typeof x === 'number') ? (v as number[]) : undefined;
};
const axesOf = (n: OnnxNode, c: ShapeContext): number[] | undefined => (n.input[1] ? ints(c, n.input[1]) : attr(n, 'axes')?.ints?.map(num));

/** The size of one broadcast axis from its operands' sizes there, or a fresh symbol when it cannot be proven. */
function broadcastDim(c: ShapeContext, ds: Dim[]): Dim {
  const plain = [...new Set(ds.filter((d): d is number | string => !isLe(d) && d !== 1))];
  const les = ds.filter(isLe);
  const numbers = plain.filter((d) => typeof d === 'number');
  // A size other than 1 among the operands is the result (a valid broadcast has one).
  if (numbers.length === 1) return numbers[0]!;
  if (numbers.length > 1) return c.unknown();
  if (plain.length === 1) return les.every((d) => d.le === plain[0]) ? plain[0]! : c.unknown();
  if (plain.length > 1) return c.unknown();
  if (les.length === 0) return 1;
  return les.every((d) => d.le === les[0]!.le) ? { le: les[0]!.le } : c.unknown();
}

function broadcast(c: ShapeContext, list: (Dim[] | undefined)[]): Dim[] | undefined {
  if (list.some((d) => d === undefined)) return undefined;
  const ds = list as Dim[][];
  const r = Math.max(...ds.map((d) => d.length));
  return Array.from({ length: r }, (_, i) => broadcastDim(c, ds.map((d) => d[d.length - r + i]).filter((d): d is Dim => d !== undefined)));
}

/** A product of dimensions as a number times symbols, or undefined when a factor is a bounded size. */
function product(ds: Dim[]): { k: number; syms: string[] } | undefined {
  let k = 1;
  const syms: string[] = [];
  for (const d of ds) {
    if (isLe(d)) return undefined;
    if (typeof d === 'number') k *= d; else syms.push(d);
  }
  return { k, syms: syms.sort() };
}

/** Reshape's −1: the input's size over the other entries', when that division is exact. */
function inferred(c: ShapeContext, input: Dim[] | undefined, others: Dim[]): Dim {
  if (!input) return c.unknown();
  const o = product(others);
  if (!o) return c.unknown();
  // A single bounded dimension alone, reshaped with only 1s beside it, keeps its bound.
  const les = input.filter(isLe);
  if (les.length === 1 && input.every((d) => d === 1 || isLe(d)) && o.k === 1 && o.syms.length === 0) return les[0]!;
  const p = product(input);
  if (!p || o.k === 0 || p.k % o.k !== 0) return c.unknown();
  const rest = [...p.syms];
  for (const s of o.syms) {
    const i = rest.indexOf(s);
    if (i < 0) return c.unknown();
    rest.splice(i, 1);
  }
  const k = p.k / o.k;
  if (rest.length === 0) return k;
  return rest.length === 1 && k === 1 ? rest[0]! : c.unknown();
}

const sum = (c: ShapeContext, ds: Dim[]): Dim => (ds.every((d) => typeof d === 'number') ? (ds as number[]).reduce((a, v) => a + v, 0) : ds.length === 1 ? ds[0]! : c.unknown());

/** Elementwise shape arithmetic on known values (1-D or scalar): only what is exact. */
function valueOf(op: string, v: Dim[][]): Dim[] | undefined {
  const L = Math.max(...v.map((e) => e.length));
  if (v.some((e) => e.length !== L && e.length !== 1)) return undefined;
  const at = (e: Dim[], i: number) => (e.length === 1 ? e[0]! : e[i]!);
  const res: Dim[] = [];
  for (let i = 0; i < L; i++) {
    const args = v.map((e) => at(e, i));
    const r = scalar(op, args);
    if (r === undefined) return undefined;
    res.push(r);
  }
  return res;
}

function scalar(op: string, args: Dim[]): Dim | undefined {
  const [a, b, c] = args;
  const isNum = (d: Dim | undefined): d is number => typeof d === 'number';
  switch (op) {
    case 'Add': return isNum(a) && isNum(b) ? a + b : b === 0 ? a : a === 0 ? b : undefined;
    case 'Sub': return isNum(a) && isNum(b) ? a - b : b === 0 ? a : undefined;
    case 'Mul': return isNum(a) && isNum(b) ? a * b : b === 1 ? a : a === 1 ? b : undefined;
    case 'Div': return isNum(a) && isNum(b) && b !== 0 && a % b === 0 ? a / b : b === 1 ? a : undefined;
    case 'Equal': {
      if (isNum(a) && isNum(b)) return a === b ? 1 : 0;
      // A size is never negative (an empty past key/value cache has size 0).
      if (isNum(a) && !isNum(b)) return a < 0 ? 0 : undefined;
      if (isNum(b) && !isNum(a)) return b < 0 ? 0 : undefined;
      return typeof a === 'string' && a === b ? 1 : undefined;
    }
    case 'Where': return isNum(a) ? (a ? b : c) : undefined;
    case 'Max': return isNum(a) && isNum(b) ? Math.max(a, b) : undefined;
    case 'Min': return isNum(a) && isNum(b) ? Math.min(a, b) : undefined;
    default: return undefined;
  }
}

/** The output has the input's shape. */
const same: ShapeRule = (n, c) => set(c, n.output[0], dimsOf(c, n.input[0]));

/** The output has the input's rank; its sizes are not proven. */
const sameRank: ShapeRule = (n, c) => { const xd = dimsOf(c, n.input[0]); if (xd) set(c, n.output[0], unknowns(c, xd.length)); };

/** Values survive a cast that holds them: to int64, or to int32 / float when they are small (sizes are). */
const cast: ShapeRule = (n, c) => {
  const [x] = n.input;
  const out = n.output[0];
  set(c, out, dimsOf(c, x));
  const to = n.opType === 'Cast' ? intOf(n, 'to', 0) : DataType.INT64;
  const v = c.vals.get(x!);
  const small = v?.every((e) => typeof e !== 'number' || Math.abs(e) < 2 ** 24);
  if (v && (n.opType === 'Identity' || to === DataType.INT64 || (small && (to === DataType.INT32 || to === DataType.FLOAT || to === DataType.DOUBLE)))) c.vals.set(out!, v);
};

/** Broadcasting elementwise operators; on small integer operands, their values where exact. */
const elementwise: ShapeRule = (n, c) => {
  const out = n.output[0];
  set(c, out, broadcast(c, n.input.filter(Boolean).map((t) => c.dims.get(t))));
  const v = n.input.map((t) => c.vals.get(t));
  if (v.every((e) => e !== undefined) && n.input.every((t) => (c.dims.get(t)?.length ?? 2) <= 1)) {
    const value = valueOf(n.opType, v as Dim[][]);
    if (value) c.vals.set(out!, value);
  }
};

const reduce: ShapeRule = (n, c) => {
  const xd = dimsOf(c, n.input[0]);
  const out = n.output[0];
  if (!xd) return;
  const keep = intOf(n, 'keepdims', 1) === 1;
  const axes = axesOf(n, c);
  if (n.input[1] && !axes) return;
  const all = !axes || axes.length === 0;
  if (all && intOf(n, 'noop_with_empty_axes', 0) === 1) { set(c, out, xd); return; }
  const at = new Set(all ? xd.map((_, i) => i) : axes!.map((a) => norm(a, xd.length)));
  set(c, out, keep ? xd.map((d, i) => (at.has(i) ? 1 : d)) : xd.filter((_, i) => !at.has(i)));
};

const argReduce: ShapeRule = (n, c) => {
  const xd = dimsOf(c, n.input[0]);
  if (!xd) return;
  const axis = norm(intOf(n, 'axis', 0), xd.length);
  set(c, n.output[0], intOf(n, 'keepdims', 1) ? xd.map((d, i) => (i === axis ? 1 : d)) : xd.filter((_, i) => i !== axis));
};

const ops = (names: string[], rule: ShapeRule): [string, ShapeRule][] => names.map((op) => [op, rule]);

export const SHAPE_RULES: Record<string, ShapeRule> = {
  Constant: (n, c) => {
    const out = n.output[0]!;
    const a = n.attribute[0];
    if (a?.t) c.constant(out, a.t);
    else if (a?.name === 'value_int') { c.dims.set(out, []); c.vals.set(out, [num(a.i)]); }
    else if (a?.name === 'value_ints') { c.dims.set(out, [a.ints!.length]); c.vals.set(out, a.ints!.map(num)); }
    else if (a?.name === 'value_float') c.dims.set(out, []);
    else if (a?.name === 'value_floats') c.dims.set(out, [a.floats!.length]);
  },
  ...Object.fromEntries(ops(['Identity', 'Cast', 'CastLike'], cast)),
  ...Object.fromEntries(ops([
    'Neg', 'Sqrt', 'Reciprocal', 'Erf', 'Tanh', 'Sigmoid', 'Relu', 'Exp', 'Log', 'Abs', 'Softmax', 'LogSoftmax', 'Dropout',
    'LayerNormalization', 'Not', 'Floor', 'Ceil', 'Sign', 'Gelu', 'IsNaN', 'IsInf', 'Softplus', 'Trilu', 'Clip',
    'SimplifiedLayerNormalization', 'RMSNormalization', 'Cos', 'Sin', 'Tan', 'Round', 'LeakyRelu', 'Elu', 'Selu', 'Celu',
    'HardSigmoid', 'HardSwish', 'Mish', 'ThresholdedRelu', 'Atan', 'Asin', 'Acos', 'Sinh', 'Cosh', 'BitwiseNot', 'Shrink',
    'CumSum',
  ], same)),
  ...Object.fromEntries(ops(['Pad', 'Tile'], sameRank)),
  TopK: (n, c) => { const xd = dimsOf(c, n.input[0]); if (xd) for (const o of n.output) set(c, o, unknowns(c, xd.length)); },
  ...Object.fromEntries(ops([
    'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Where', 'Equal', 'Greater', 'Less', 'And', 'Or', 'Xor', 'Max', 'Min', 'Sum', 'Mod',
    'GreaterOrEqual', 'LessOrEqual',
  ], elementwise)),
  MatMul: (n, c) => {
    const out = n.output[0];
    const [a, b] = [c.dims.get(n.input[0]!), c.dims.get(n.input[1]!)];
    if (!a || !b || a.length === 0 || b.length === 0) return;
    if (a.length === 1 && b.length === 1) set(c, out, []);
    else if (a.length === 1) set(c, out, [...b.slice(0, -2), b[b.length - 1]!]);
    else if (b.length === 1) set(c, out, a.slice(0, -1));
    else {
      const batch = broadcast(c, [a.slice(0, -2), b.slice(0, -2)]);
      if (batch) set(c, out, [...batch, a[a.length - 2]!, b[b.length - 1]!]);
    }
  },
  Gemm: (n, c) => {
    const [a, b] = [c.dims.get(n.input[0]!), c.dims.get(n.input[1]!)];
    if (a?.length === 2 && b?.length === 2) set(c, n.output[0], [intOf(n, 'transA', 0) ? a[1]! : a[0]!, intOf(n, 'transB', 0) ? b[0]! : b[1]!]);
  },
  Transpose: (n, c) => {
    const xd = dimsOf(c, n.input[0]);
    if (!xd) return;
    const perm = attr(n, 'perm')?.ints?.map(num) ?? xd.map((_, i) => xd.length - 1 - i);
    set(c, n.output[0], perm.map((p) => xd[p]!));
  },
  Reshape: (n, c) => {
    const [x] = n.input;
    const xd = dimsOf(c, x);
    const out = n.output[0];
    const shape = c.vals.get(n.input[1]!);
    const allowZero = intOf(n, 'allowzero', 0) === 1;
    if (!shape) { const k = lengthOf(c, n.input[1]); if (k !== undefined) set(c, out, unknowns(c, k)); return; }
    const entries = shape.map((s, i): Dim | 'infer' => {
      // A size from the graph may be 0 at run time, which (allowzero 0) copies the input's size there instead.
      if (typeof s !== 'number') return allowZero || (typeof s === 'string' && c.positive.has(s)) || (xd?.[i] !== undefined && c.sameDim(s, xd[i]!)) ? s : c.unknown();
      if (s === -1) return 'infer';
      if (s === 0) return allowZero ? c.unknown() : xd?.[i] ?? c.unknown();
      return s;
    });
    const known = entries.filter((e): e is Dim => e !== 'infer');
    set(c, out, entries.map((e) => (e === 'infer' ? inferred(c, xd, known) : e)));
    if (xd?.length === 1 && c.vals.has(x!) && shape.length === 1) c.vals.set(out!, c.vals.get(x!)!);
  },
  Flatten: (n, c) => {
    const xd = dimsOf(c, n.input[0]);
    if (!xd) return;
    const axis = norm(intOf(n, 'axis', 1), xd.length);
    const p = (ds: Dim[]) => (ds.length === 0 ? 1 : ds.length === 1 ? ds[0]! : ds.every((d) => typeof d === 'number') ? (ds as number[]).reduce((a, v) => a * v, 1) : c.unknown());
    set(c, n.output[0], [p(xd.slice(0, axis)), p(xd.slice(axis))]);
  },
  Unsqueeze: (n, c) => {
    const [x] = n.input;
    const xd = dimsOf(c, x);
    const out = n.output[0];
    const axes = axesOf(n, c);
    if (!xd || !axes) return;
    const r = xd.length + axes.length;
    const at = new Set(axes.map((a) => norm(a, r)));
    const res: Dim[] = [];
    let k = 0;
    for (let i = 0; i < r; i++) res.push(at.has(i) ? 1 : xd[k++]!);
    set(c, out, res);
    if (xd.length === 0 && c.vals.has(x!)) c.vals.set(out!, c.vals.get(x!)!);
  },
  Squeeze: (n, c) => {
    const [x] = n.input;
    const xd = dimsOf(c, x);
    const out = n.output[0];
    if (!xd) return;
    const axes = axesOf(n, c);
    if (axes && axes.length > 0) {
      const at = new Set(axes.map((a) => norm(a, xd.length)));
      set(c, out, xd.filter((_, i) => !at.has(i)));
    } else if ((axes || !n.input[1]) && xd.every((d) => typeof d === 'number')) {
      // No axes given, or an empty list: every axis of size 1 goes (known only when every size is).
      set(c, out, xd.filter((d) => d !== 1));
    }
    if (xd.length === 1 && c.vals.has(x!)) c.vals.set(out!, c.vals.get(x!)!);
  },
  Expand: (n, c) => {
    const xd = dimsOf(c, n.input[0]);
    const out = n.output[0];
    const shape = c.vals.get(n.input[1]!);
    const k = lengthOf(c, n.input[1]);
    if (xd && shape) set(c, out, broadcast(c, [xd, shape.map((s) => (typeof s === 'number' && s <= 0 ? c.unknown() : s))]));
    else if (xd && k !== undefined) set(c, out, unknowns(c, Math.max(xd.length, k)));
  },
  Concat: (n, c) => {
    const out = n.output[0];
    const ds = n.input.map((t) => c.dims.get(t));
    if (ds.some((d) => !d) || ds.length === 0) return;
    const list = ds as Dim[][];
    const r = list[0]!.length;
    if (list.some((d) => d.length !== r) || r === 0) return;
    const axis = norm(intOf(n, 'axis', 0), r);
    // Every operand has the same size on the other axes: a number or symbol any of them shows.
    set(c, out, list[0]!.map((_, i) => (i === axis ? sum(c, list.map((d) => d[i]!)) : list.map((d) => d[i]!).find((d) => !isLe(d)) ?? c.unknown())));
    const v = n.input.map((t) => c.vals.get(t));
    if (r === 1 && v.every((e) => e !== undefined)) c.vals.set(out!, (v as Dim[][]).flat());
  },
  Split: (n, c) => {
    const xd = dimsOf(c, n.input[0]);
    if (!xd || xd.length === 0) return;
    const axis = norm(intOf(n, 'axis', 0), xd.length);
    const d = xd[axis]!;
    const k = n.output.length;
    // Sizes given (as an input, whatever is known of it, or an attribute), or equal pieces of a known size.
    const given = n.input[1] ? c.vals.get(n.input[1]) ?? [] : attr(n, 'split')?.ints?.map(num);
    const each: Dim[] | undefined = given ? (given.length === k ? given : undefined) : typeof d === 'number' && d % k === 0 ? Array<number>(k).fill(d / k) : undefined;
    n.output.forEach((o, i) => set(c, o, xd.map((v, j) => (j === axis ? each?.[i] ?? c.unknown() : v))));
  },
  Slice: (n, c) => {
    const [x] = n.input;
    const xd = dimsOf(c, x);
    const out = n.output[0];
    if (!xd) return;
    const [starts, ends] = [ints(c, n.input[1]), c.vals.get(n.input[2]!)];
    const axes = n.input[3] ? ints(c, n.input[3]) : starts?.map((_, i) => i);
    const steps = n.input[4] ? ints(c, n.input[4]) : starts?.map(() => 1);
    const res = [...xd];
    const sliced = new Set<number>();
    const HUGE = 2 ** 62;
    starts?.forEach((s, i) => {
      const a = axes?.[i];
      if (a === undefined) return;
      const ax = norm(a, xd.length);
      sliced.add(ax);
      const e = ends?.[i];
      const D = xd[ax]!;
      res[ax] = c.unknown();
      if (steps?.[i] !== 1 || e === undefined || s < 0) return;
      if (typeof e === 'number') {
        if (e >= HUGE) { if (s === 0) res[ax] = D; else if (typeof D === 'number') res[ax] = Math.max(0, D - s); return; }
        if (typeof D === 'number') res[ax] = Math.max(0, Math.min(D, e < 0 ? e + D : e) - Math.min(D, s));
        return;
      }
      // [0 : a size] of an axis: that size if it is the axis', otherwise at most it (and at least 1 when the
      // axis has a known size: a table, such as a causal mask or rotary cache, sliced to the sequence length).
      if (s === 0 && !isLe(e)) res[ax] = c.sameDim(e, D) ? D : typeof D === 'number' && D >= 1 ? { le: e } : c.unknown();
    });
    if (!starts || !ends || !axes || starts.length !== ends.length || axes.length !== starts.length) for (let i = 0; i < res.length; i++) if (!sliced.has(i)) res[i] = c.unknown();
    set(c, out, res);
    const v = c.vals.get(x!);
    if (xd.length === 1 && v && starts?.length === 1 && steps?.[0] === 1 && typeof ends?.[0] === 'number') {
      const L = v.length;
      const clamp = (q: number) => Math.min(L, Math.max(0, q < 0 ? q + L : q));
      c.vals.set(out!, v.slice(clamp(starts[0]!), clamp(ends[0] as number)));
    }
  },
  Gather: (n, c) => {
    const [x] = n.input;
    const xd = dimsOf(c, x);
    const out = n.output[0];
    const id = c.dims.get(n.input[1]!);
    if (!xd || !id) return;
    const axis = norm(intOf(n, 'axis', 0), xd.length);
    set(c, out, [...xd.slice(0, axis), ...id, ...xd.slice(axis + 1)]);
    const v = c.vals.get(x!);
    const idx = ints(c, n.input[1]);
    if (xd.length === 1 && v && idx) c.vals.set(out!, idx.map((i) => v[i < 0 ? i + v.length : i]!));
  },
  Shape: (n, c) => {
    const xd = dimsOf(c, n.input[0]);
    const out = n.output[0];
    if (!xd) return;
    const r = xd.length;
    const clamp = (q: number) => Math.min(r, Math.max(0, q < 0 ? q + r : q));
    const picked = xd.slice(clamp(intOf(n, 'start', 0)), clamp(intOf(n, 'end', r)));
    set(c, out, [picked.length]);
    c.vals.set(out!, picked);
  },
  Size: (n, c) => {
    const xd = dimsOf(c, n.input[0]);
    const out = n.output[0];
    set(c, out, []);
    if (xd?.every((d) => typeof d === 'number')) c.vals.set(out!, [(xd as number[]).reduce((a, v) => a * v, 1)]);
  },
  ConstantOfShape: (n, c) => {
    const [x] = n.input;
    const out = n.output[0];
    const shape = c.vals.get(x!);
    if (!shape) { const k = lengthOf(c, x); if (k !== undefined) set(c, out, unknowns(c, k)); return; }
    set(c, out, shape.map((s) => (typeof s === 'number' && s < 0 ? c.unknown() : s)));
    const t = attr(n, 'value')?.t;
    const fill = t ? c.intValues(t)?.[0] : undefined;
    const len = shape[0];
    if (fill !== undefined && shape.length === 1 && typeof len === 'number' && len <= 64) c.vals.set(out!, Array<number>(len).fill(fill));
  },
  ...Object.fromEntries(ops(['ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL2', 'ReduceSumSquare', 'ReduceLogSumExp'], reduce)),
  ...Object.fromEntries(ops(['ArgMax', 'ArgMin'], argReduce)),
  Range: (n, c) => set(c, n.output[0], [c.unknown()]),
  NonZero: (n, c) => { const xd = dimsOf(c, n.input[0]); if (xd) set(c, n.output[0], [xd.length, c.unknown()]); },
};
