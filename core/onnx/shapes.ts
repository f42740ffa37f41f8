// Symbolic shapes: what every dimension of a tensor is, known without running the graph, where that can be
// proven. The backward graph (autodiff.ts) uses them to sum a broadcast gradient over axes fixed when the graph
// is built instead of axes found at run time (Shape, Equal, Not, NonZero and a ReduceSum per broadcasting
// operator, which also keep onnxruntime from fusing the forward operators they read).
import { DataType, int64Data, num, type Graph, type TensorProto } from './model';
import { SHAPE_RULES, type ShapeContext } from './shape-rules';

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
  // the rules prove nothing (the sizes in those declarations may predate rewrites; a rank does not change).
  const declared = new Map<string, number>();
  for (const v of [...graph.output, ...graph.valueInfo]) {
    const d = v.type?.tensorType?.shape?.dim;
    if (d) declared.set(v.name, d.length);
  }
  const ctx: ShapeContext = { dims, vals, positive, unknown, constant, sameDim, intValues };
  for (const n of graph.node) {
    if (Object.hasOwn(SHAPE_RULES, n.opType)) SHAPE_RULES[n.opType]!(n, ctx);
    for (const o of n.output) if (o && !dims.has(o) && declared.has(o)) dims.set(o, Array.from({ length: declared.get(o)! }, () => unknown()));
  }
  return { dims, vals };
}

/** The values of an int64 or int32 tensor (undefined for other types). */
export function intValues(t: TensorProto): number[] | undefined {
  if (t.dataType === DataType.INT64) return int64Data(t);
  if (t.dataType !== DataType.INT32) return undefined;
  return t.rawData?.length ? Array.from(new Int32Array(new Uint8Array(t.rawData).slice().buffer)) : t.int32Data;
}
