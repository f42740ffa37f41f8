// Symbolic shapes: what every dimension of a tensor is, known without running the graph, where that can be
// proven. The backward graph (autodiff.ts) uses them to sum a broadcast gradient over axes fixed when the graph
// is built instead of axes found at run time (Shape, Equal, Not, NonZero and a ReduceSum per broadcasting
// operator, which also keep onnxruntime from fusing the forward operators they read).
import { DataType, int64Data, num, type Attribute, type Graph, type OnnxNode, type TensorProto } from './model';

/**
 * A dimension: a number; a symbol (a string: two equal symbols are equal sizes at run time, whatever they are,
 * 0 included: an empty past key/value cache); or { le: bound }, a size at most the bound (a number or a
 * symbol) and 0 only when the bound is: a slice [0:T] of a table, or an input fed broadcast or full (UPTO).
 */
export type Dim = number | string | { le: number | string };

export interface ShapeFacts {
  /** Every dimension of a tensor, when its rank is known. */
  dims: Map<string, Dim[]>;
  /** The elements of small 1-D or scalar integer tensors (shape arithmetic), as dimensions: scalars hold one. */
  vals: Map<string, Dim[]>;
}

/**
 * The dim_param prefix of a graph input dimension that is 1 or the size after the prefix (a dim_param of another
 * input, or a number): the engine's ablation inputs, fed either broadcast (1) or per batch row / position.
 */
export const UPTO = 'circuitlens.upto:';

const isLe = (d: Dim): d is { le: number | string } => typeof d === 'object';

/** Whether two dimensions are provably equal at run time. */
export function sameDim(a: Dim, b: Dim): boolean {
  return !isLe(a) && !isLe(b) && a === b;
}

/**
 * Infers dimensions in node order (the graph is topologically sorted). Sound rather than complete: a dimension
 * that cannot be proven gets a fresh symbol (equal to nothing else) and a tensor whose rank cannot be is left
 * out. Assumes what every run that succeeds satisfies (operands broadcast), that inputs sharing a dim_param are
 * fed the same size there, that UPTO inputs are fed as their dim_param says, and that `positive` dim_params are
 * never 0.
 */
export function inferShapes(graph: Graph, opts: { positive?: Iterable<string> } = {}): ShapeFacts {
  // Symbols of sizes every run has at least 1 of (the caller's word, e.g. input_ids' batch and sequence).
  const positive = new Set([...(opts.positive ?? [])].map((p) => `$${p}`));
  const dims = new Map<string, Dim[]>();
  const vals = new Map<string, Dim[]>();
  let fresh = 0;
  const unknown = (): Dim => `?${fresh++}`;
  const set = (t: string | undefined, d: Dim[] | undefined) => { if (t && d) dims.set(t, d); };
  const constant = (name: string, t: TensorProto) => {
    const d = t.dims.map(num);
    dims.set(name, d);
    const n = d.reduce((a, v) => a * v, 1);
    if (d.length <= 1 && n <= 64) {
      const v = n === 0 && (t.dataType === DataType.INT64 || t.dataType === DataType.INT32) ? [] : intValues(t);
      if (v && v.length === n) vals.set(name, v);
    }
  };
  for (const t of graph.initializer) constant(t.name, t);
  for (const v of graph.input) {
    if (dims.has(v.name)) continue;
    const shape = v.type?.tensorType?.shape?.dim;
    if (!shape) continue;
    dims.set(v.name, shape.map((d): Dim => {
      if (d.dimValue !== undefined && d.dimValue !== null && num(d.dimValue) > 0) return num(d.dimValue);
      const p = d.dimParam;
      if (!p) return unknown();
      if (p.startsWith(UPTO)) {
        const bound = p.slice(UPTO.length);
        return /^\d+$/.test(bound) ? (Number(bound) === 1 ? 1 : { le: Number(bound) }) : { le: `$${bound}` };
      }
      return `$${p}`;
    }));
  }

  // Ranks the graph declares for tensors nodes compute (outputs, value_info): used, as dims of unknown sizes, where
  // the rules below prove nothing (the sizes in those declarations may predate rewrites; a rank does not change).
  const declared = new Map<string, number>();
  for (const v of [...graph.output, ...graph.valueInfo]) {
    const d = v.type?.tensorType?.shape?.dim;
    if (d) declared.set(v.name, d.length);
  }
  const unknowns = (r: number): Dim[] => Array.from({ length: r }, () => unknown());
  /** The length of a 1-D tensor (a shape whose values are not known), when known. */
  const lengthOf = (t: string | undefined): number | undefined => {
    const d = t ? dims.get(t) : undefined;
    return d?.length === 1 && typeof d[0] === 'number' ? d[0] : undefined;
  };

  const attr = (n: OnnxNode, name: string): Attribute | undefined => n.attribute.find((a) => a.name === name);
  const intOf = (n: OnnxNode, name: string, fallback: number) => { const a = attr(n, name); return a ? num(a.i) : fallback; };
  /** Constant integers: a tensor's known numeric values. */
  const ints = (t: string | undefined): number[] | undefined => {
    const v = t ? vals.get(t) : undefined;
    return v && v.every((x) => typeof x === 'number') ? (v as number[]) : undefined;
  };
  const axesOf = (n: OnnxNode): number[] | undefined => (n.input[1] ? ints(n.input[1]) : attr(n, 'axes')?.ints?.map(num));
  const norm = (a: number, r: number) => (a < 0 ? a + r : a);

  /** The size of one broadcast axis from its operands' sizes there, or a fresh symbol when it cannot be proven. */
  const broadcastDim = (ds: Dim[]): Dim => {
    const plain = [...new Set(ds.filter((d): d is number | string => !isLe(d) && d !== 1))];
    const les = ds.filter(isLe);
    const numbers = plain.filter((d) => typeof d === 'number');
    // A size other than 1 among the operands is the result (a valid broadcast has one).
    if (numbers.length === 1) return numbers[0]!;
    if (numbers.length > 1) return unknown();
    if (plain.length === 1) return les.every((d) => d.le === plain[0]) ? plain[0]! : unknown();
    if (plain.length > 1) return unknown();
    if (les.length === 0) return 1;
    return les.every((d) => d.le === les[0]!.le) ? { le: les[0]!.le } : unknown();
  };
  const broadcast = (list: (Dim[] | undefined)[]): Dim[] | undefined => {
    if (list.some((d) => d === undefined)) return undefined;
    const ds = list as Dim[][];
    const r = Math.max(...ds.map((d) => d.length));
    return Array.from({ length: r }, (_, i) => broadcastDim(ds.map((d) => d[d.length - r + i]).filter((d): d is Dim => d !== undefined)));
  };
  /** A product of dimensions as a number times symbols, or undefined when a factor is a bounded size. */
  const product = (ds: Dim[]): { k: number; syms: string[] } | undefined => {
    let k = 1;
    const syms: string[] = [];
    for (const d of ds) {
      if (isLe(d)) return undefined;
      if (typeof d === 'number') k *= d; else syms.push(d);
    }
    return { k, syms: syms.sort() };
  };
  /** Reshape's −1: the input's size over the other entries', when that division is exact. */
  const inferred = (input: Dim[] | undefined, others: Dim[]): Dim => {
    if (!input) return unknown();
    const o = product(others);
    if (!o) return unknown();
    // A single bounded dimension alone, reshaped with only 1s beside it, keeps its bound.
    const les = input.filter(isLe);
    if (les.length === 1 && input.every((d) => d === 1 || isLe(d)) && o.k === 1 && o.syms.length === 0) return les[0]!;
    const p = product(input);
    if (!p || o.k === 0 || p.k % o.k !== 0) return unknown();
    const rest = [...p.syms];
    for (const s of o.syms) {
      const i = rest.indexOf(s);
      if (i < 0) return unknown();
      rest.splice(i, 1);
    }
    const k = p.k / o.k;
    if (rest.length === 0) return k;
    return rest.length === 1 && k === 1 ? rest[0]! : unknown();
  };
  const sum = (ds: Dim[]): Dim => (ds.every((d) => typeof d === 'number') ? (ds as number[]).reduce((a, v) => a + v, 0) : ds.length === 1 ? ds[0]! : unknown());

  for (const n of graph.node) {
    const [x] = n.input;
    const xd = x ? dims.get(x) : undefined;
    const out = n.output[0];
    switch (n.opType) {
      case 'Constant': {
        const a = n.attribute[0];
        if (a?.t) constant(out!, a.t);
        else if (a?.name === 'value_int') { dims.set(out!, []); vals.set(out!, [num(a.i)]); }
        else if (a?.name === 'value_ints') { dims.set(out!, [a.ints!.length]); vals.set(out!, a.ints!.map(num)); }
        else if (a?.name === 'value_float') dims.set(out!, []);
        else if (a?.name === 'value_floats') dims.set(out!, [a.floats!.length]);
        break;
      }
      case 'Identity': case 'Cast': case 'CastLike': {
        set(out, xd);
        // Values survive a cast that holds them: to int64, or to int32 / float when they are small (sizes are).
        const to = n.opType === 'Cast' ? intOf(n, 'to', 0) : DataType.INT64;
        const v = vals.get(x!);
        const small = v?.every((e) => typeof e !== 'number' || Math.abs(e) < 2 ** 24);
        if (v && (n.opType === 'Identity' || to === DataType.INT64 || (small && (to === DataType.INT32 || to === DataType.FLOAT || to === DataType.DOUBLE)))) vals.set(out!, v);
        break;
      }
      case 'Neg': case 'Sqrt': case 'Reciprocal': case 'Erf': case 'Tanh': case 'Sigmoid': case 'Relu': case 'Exp': case 'Log':
      case 'Abs': case 'Softmax': case 'LogSoftmax': case 'Dropout': case 'LayerNormalization': case 'Not': case 'Floor':
      case 'Ceil': case 'Sign': case 'Gelu': case 'IsNaN': case 'IsInf': case 'Softplus': case 'Trilu': case 'Clip':
      case 'SimplifiedLayerNormalization': case 'RMSNormalization': case 'Cos': case 'Sin': case 'Tan': case 'Round':
      case 'LeakyRelu': case 'Elu': case 'Selu': case 'Celu': case 'HardSigmoid': case 'HardSwish': case 'Mish': case 'ThresholdedRelu':
      case 'Atan': case 'Asin': case 'Acos': case 'Sinh': case 'Cosh': case 'BitwiseNot': case 'Shrink': case 'CumSum':
        set(out, xd);
        break;
      case 'Pad': case 'Tile':
        if (xd) set(out, unknowns(xd.length));
        break;
      case 'TopK':
        if (xd) for (const o of n.output) set(o, unknowns(xd.length));
        break;
      case 'Add': case 'Sub': case 'Mul': case 'Div': case 'Pow': case 'Where': case 'Equal': case 'Greater': case 'Less':
      case 'And': case 'Or': case 'Xor': case 'Max': case 'Min': case 'Sum': case 'Mod': case 'GreaterOrEqual': case 'LessOrEqual': {
        set(out, broadcast(n.input.filter(Boolean).map((t) => dims.get(t))));
        const v = n.input.map((t) => vals.get(t));
        if (v.every((e) => e !== undefined) && n.input.every((t) => (dims.get(t)?.length ?? 2) <= 1)) {
          const value = valueOf(n.opType, v as Dim[][]);
          if (value) vals.set(out!, value);
        }
        break;
      }
      case 'MatMul': {
        const [a, b] = [dims.get(n.input[0]!), dims.get(n.input[1]!)];
        if (!a || !b || a.length === 0 || b.length === 0) break;
        if (a.length === 1 && b.length === 1) set(out, []);
        else if (a.length === 1) set(out, [...b.slice(0, -2), b[b.length - 1]!]);
        else if (b.length === 1) set(out, a.slice(0, -1));
        else {
          const batch = broadcast([a.slice(0, -2), b.slice(0, -2)]);
          if (batch) set(out, [...batch, a[a.length - 2]!, b[b.length - 1]!]);
        }
        break;
      }
      case 'Gemm': {
        const [a, b] = [dims.get(n.input[0]!), dims.get(n.input[1]!)];
        if (a?.length === 2 && b?.length === 2) set(out, [intOf(n, 'transA', 0) ? a[1]! : a[0]!, intOf(n, 'transB', 0) ? b[0]! : b[1]!]);
        break;
      }
      case 'Transpose': {
        if (!xd) break;
        const perm = attr(n, 'perm')?.ints?.map(num) ?? xd.map((_, i) => xd.length - 1 - i);
        set(out, perm.map((p) => xd[p]!));
        break;
      }
      case 'Reshape': {
        const shape = vals.get(n.input[1]!);
        const allowZero = intOf(n, 'allowzero', 0) === 1;
        if (!shape) { const k = lengthOf(n.input[1]); if (k !== undefined) set(out, unknowns(k)); break; }
        const entries = shape.map((s, i): Dim | 'infer' => {
          // A size from the graph may be 0 at run time, which (allowzero 0) copies the input's size there instead.
          if (typeof s !== 'number') return allowZero || (typeof s === 'string' && positive.has(s)) || (xd?.[i] !== undefined && sameDim(s, xd[i]!)) ? s : unknown();
          if (s === -1) return 'infer';
          if (s === 0) return allowZero ? unknown() : xd?.[i] ?? unknown();
          return s;
        });
        const known = entries.filter((e): e is Dim => e !== 'infer');
        set(out, entries.map((e) => (e === 'infer' ? inferred(xd, known) : e)));
        if (xd?.length === 1 && vals.has(x!) && shape.length === 1) vals.set(out!, vals.get(x!)!);
        break;
      }
      case 'Flatten': {
        if (!xd) break;
        const axis = norm(intOf(n, 'axis', 1), xd.length);
        const p = (ds: Dim[]) => (ds.length === 0 ? 1 : ds.length === 1 ? ds[0]! : ds.every((d) => typeof d === 'number') ? (ds as number[]).reduce((a, v) => a * v, 1) : unknown());
        set(out, [p(xd.slice(0, axis)), p(xd.slice(axis))]);
        break;
      }
      case 'Unsqueeze': {
        const axes = axesOf(n);
        if (!xd || !axes) break;
        const r = xd.length + axes.length;
        const at = new Set(axes.map((a) => norm(a, r)));
        const res: Dim[] = [];
        let k = 0;
        for (let i = 0; i < r; i++) res.push(at.has(i) ? 1 : xd[k++]!);
        set(out, res);
        if (xd.length === 0 && vals.has(x!)) vals.set(out!, vals.get(x!)!);
        break;
      }
      case 'Squeeze': {
        if (!xd) break;
        const axes = axesOf(n);
        if (axes && axes.length > 0) {
          const at = new Set(axes.map((a) => norm(a, xd.length)));
          set(out, xd.filter((_, i) => !at.has(i)));
        } else if ((axes || !n.input[1]) && xd.every((d) => typeof d === 'number')) {
          // No axes given, or an empty list: every axis of size 1 goes (known only when every size is).
          set(out, xd.filter((d) => d !== 1));
        }
        if (xd.length === 1 && vals.has(x!)) vals.set(out!, vals.get(x!)!);
        break;
      }
      case 'Expand': {
        const shape = vals.get(n.input[1]!);
        const k = lengthOf(n.input[1]);
        if (xd && shape) set(out, broadcast([xd, shape.map((s) => (typeof s === 'number' && s <= 0 ? unknown() : s))]));
        else if (xd && k !== undefined) set(out, unknowns(Math.max(xd.length, k)));
        break;
      }
      case 'Concat': {
        const ds = n.input.map((t) => dims.get(t));
        if (ds.some((d) => !d) || ds.length === 0) break;
        const list = ds as Dim[][];
        const r = list[0]!.length;
        if (list.some((d) => d.length !== r) || r === 0) break;
        const axis = norm(intOf(n, 'axis', 0), r);
        // Every operand has the same size on the other axes: a number or symbol any of them shows.
        set(out, list[0]!.map((_, i) => (i === axis ? sum(list.map((d) => d[i]!)) : list.map((d) => d[i]!).find((d) => !isLe(d)) ?? unknown())));
        const v = n.input.map((t) => vals.get(t));
        if (r === 1 && v.every((e) => e !== undefined)) vals.set(out!, (v as Dim[][]).flat());
        break;
      }
      case 'Split': {
        if (!xd || xd.length === 0) break;
        const axis = norm(intOf(n, 'axis', 0), xd.length);
        const d = xd[axis]!;
        const k = n.output.length;
        // Sizes given (as an input, whatever is known of it, or an attribute), or equal pieces of a known size.
        const given = n.input[1] ? vals.get(n.input[1]) ?? [] : attr(n, 'split')?.ints?.map(num);
        const each: Dim[] | undefined = given ? (given.length === k ? given : undefined) : typeof d === 'number' && d % k === 0 ? Array<number>(k).fill(d / k) : undefined;
        n.output.forEach((o, i) => set(o, xd.map((v, j) => (j === axis ? each?.[i] ?? unknown() : v))));
        break;
      }
      case 'Slice': {
        if (!xd) break;
        const [starts, ends] = [ints(n.input[1]), vals.get(n.input[2]!)];
        const axes = n.input[3] ? ints(n.input[3]) : starts?.map((_, i) => i);
        const steps = n.input[4] ? ints(n.input[4]) : starts?.map(() => 1);
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
          res[ax] = unknown();
          if (steps?.[i] !== 1 || e === undefined || s < 0) return;
          if (typeof e === 'number') {
            if (e >= HUGE) { if (s === 0) res[ax] = D; else if (typeof D === 'number') res[ax] = Math.max(0, D - s); return; }
            if (typeof D === 'number') res[ax] = Math.max(0, Math.min(D, e < 0 ? e + D : e) - Math.min(D, s));
            return;
          }
          // [0 : a size] of an axis: that size if it is the axis', otherwise at most it (and at least 1 when the
          // axis has a known size: a table, such as a causal mask or rotary cache, sliced to the sequence length).
          if (s === 0 && !isLe(e)) res[ax] = sameDim(e, D) ? D : typeof D === 'number' && D >= 1 ? { le: e } : unknown();
        });
        if (!starts || !ends || !axes || starts.length !== ends.length || axes.length !== starts.length) for (let i = 0; i < res.length; i++) if (!sliced.has(i)) res[i] = unknown();
        set(out, res);
        const v = vals.get(x!);
        if (xd.length === 1 && v && starts?.length === 1 && steps?.[0] === 1 && typeof ends?.[0] === 'number') {
          const L = v.length;
          const c = (q: number) => Math.min(L, Math.max(0, q < 0 ? q + L : q));
          vals.set(out!, v.slice(c(starts[0]!), c(ends[0] as number)));
        }
        break;
      }
      case 'Gather': {
        const id = dims.get(n.input[1]!);
        if (!xd || !id) break;
        const axis = norm(intOf(n, 'axis', 0), xd.length);
        set(out, [...xd.slice(0, axis), ...id, ...xd.slice(axis + 1)]);
        const v = vals.get(x!);
        const idx = ints(n.input[1]);
        if (xd.length === 1 && v && idx) vals.set(out!, idx.map((i) => v[i < 0 ? i + v.length : i]!));
        break;
      }
      case 'Shape': {
        if (!xd) break;
        const r = xd.length;
        const c = (q: number) => Math.min(r, Math.max(0, q < 0 ? q + r : q));
        const picked = xd.slice(c(intOf(n, 'start', 0)), c(intOf(n, 'end', r)));
        set(out, [picked.length]);
        vals.set(out!, picked);
        break;
      }
      case 'Size':
        set(out, []);
        if (xd?.every((d) => typeof d === 'number')) vals.set(out!, [(xd as number[]).reduce((a, v) => a * v, 1)]);
        break;
      case 'ConstantOfShape': {
        const shape = vals.get(x!);
        if (!shape) { const k = lengthOf(x); if (k !== undefined) set(out, unknowns(k)); break; }
        set(out, shape.map((s) => (typeof s === 'number' && s < 0 ? unknown() : s)));
        const t = attr(n, 'value')?.t;
        const fill = t ? intValues(t)?.[0] : undefined;
        const len = shape[0];
        if (fill !== undefined && shape.length === 1 && typeof len === 'number' && len <= 64) vals.set(out!, Array<number>(len).fill(fill));
        break;
      }
      case 'ReduceMean': case 'ReduceSum': case 'ReduceMax': case 'ReduceMin': case 'ReduceProd': case 'ReduceL2': case 'ReduceSumSquare': case 'ReduceLogSumExp': {
        if (!xd) break;
        const keep = intOf(n, 'keepdims', 1) === 1;
        const axes = axesOf(n);
        if (n.input[1] && !axes) break;
        const all = !axes || axes.length === 0;
        if (all && intOf(n, 'noop_with_empty_axes', 0) === 1) { set(out, xd); break; }
        const at = new Set(all ? xd.map((_, i) => i) : axes!.map((a) => norm(a, xd.length)));
        set(out, keep ? xd.map((d, i) => (at.has(i) ? 1 : d)) : xd.filter((_, i) => !at.has(i)));
        break;
      }
      case 'ArgMax': case 'ArgMin': {
        if (!xd) break;
        const axis = norm(intOf(n, 'axis', 0), xd.length);
        set(out, intOf(n, 'keepdims', 1) ? xd.map((d, i) => (i === axis ? 1 : d)) : xd.filter((_, i) => i !== axis));
        break;
      }
      case 'Range': set(out, [unknown()]); break;
      case 'NonZero': if (xd) set(out, [xd.length, unknown()]); break;
      default: break;
    }
    for (const o of n.output) if (o && !dims.has(o) && declared.has(o)) dims.set(o, unknowns(declared.get(o)!));
  }
  return { dims, vals };
}

/** The values of an int64 or int32 tensor (undefined for other types). */
export function intValues(t: TensorProto): number[] | undefined {
  if (t.dataType === DataType.INT64) return int64Data(t);
  if (t.dataType !== DataType.INT32) return undefined;
  return t.rawData?.length ? Array.from(new Int32Array(new Uint8Array(t.rawData).slice().buffer)) : t.int32Data;
}

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

