// Reverse-mode differentiation of an ONNX graph, inside the graph: the driver. The backward graph is built by
// GradBuilder (core/onnx/grad-builder.ts) from one rule per operator (core/onnx/grad-rules.ts).
import { UserError } from '../errors';
import { GradBuilder, inferStatic, type StaticInfo } from './grad-builder';
import { differentiableInputs, differentiableOutputs, geluBack, RULES } from './grad-rules';
import { GraphIndex } from './graph';
import { DataType, floatValueInfo, opsetVersion, type OnnxModel, type OnnxNode, type ValueInfo } from './model';

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

  const b = new GradBuilder(opset, info);
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
    b.node('Identity', [total(x) ?? b.zerosLike(x)], [out], `circuitlens/grad/${x}`);
    grads[x] = out;
  }
  b.appendTo(graph);
  graph.input.push(valueInfo(GRAD_SEED, info.rank.get(y)));
  const outputs = new Set(graph.output.map((o) => o.name));
  for (const x of wrt) if (!outputs.has(grads[x]!)) graph.output.push(valueInfo(grads[x]!, info.rank.get(x)));
  return { seed: GRAD_SEED, grads };
}

function valueInfo(name: string, rank: number | undefined): ValueInfo {
  return rank === undefined ? { name, type: { tensorType: { elemType: DataType.FLOAT } } } : floatValueInfo(name, rank);
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
