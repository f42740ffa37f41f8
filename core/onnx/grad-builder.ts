import { UserError } from '../errors';
import { Builder, numberedNames } from './builder';
import { inferShapes, intValues, sameDim, type Dim } from './shapes';
import { AttrType, DataType, intAttr, intsAttr, num, type Graph, type OnnxNode, type TensorProto } from './model';

/**
 * The builder of the backward graph: the shared Builder (names circuitlens.bw.*, constants shared) with what the
 * gradient rules need besides nodes: static facts about the forward graph's tensors and broadcasting undone.
 */
export class GradBuilder extends Builder {
  private readonly flatIndex = new Map<string, string>();

  constructor(readonly opset: number, readonly info: StaticInfo) {
    super(numberedNames('circuitlens.bw', 'circuitlens/bw'), { shareConstants: true, opset });
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
        : this.filled(this.op('Sub', [this.shape(this.shape(gr)), this.shape(sx)]), 1, 'int64');
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
    const zeros = this.filled(size, 0);
    const attrs = [intAttr('axis', 0)];
    if (accumulate) attrs.push({ name: 'reduction', type: AttrType.STRING, s: new TextEncoder().encode('add') });
    const flat = this.op('ScatterElements', [zeros, this.op('Reshape', [picked, this.i64([-1])]), this.op('Reshape', [gr, this.i64([-1])])], attrs);
    return this.op('Reshape', [flat, this.shape(x)]);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Static facts about tensors: constants, and (from core/onnx/shapes.ts) ranks, sizes and shape arithmetic

export interface StaticInfo {
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

export function inferStatic(graph: Graph, positive: string[] = []): StaticInfo {
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
