// Where the faithfulness anchor (`protect --anchor`) ablates: the nodes outside the circuit, as PyTorch modules.
// The snippet's faithfulness_anchor_loss runs the model twice, whole and with these nodes mean-ablated (the circuit
// alone, as `verify` ablates), and adds KL(whole || circuit alone) to the fine-tuning loss. A head outside the
// circuit is its slice of its output projection's input (the concatenated heads, d_head entries); an MLP is the
// output of its down projection (bias included: the MLP's output). Found from the graph (weight-slices for a
// head's W_O rows; the MatMul or Gemm that writes the MLP's output) and named by the export's PyTorch names.
import { UserError } from '../../errors';
import { headId, mlpId } from '../../ids';
import { GraphIndex } from '../../onnx/graph';
import { ownedSlices, type OwnedSlice } from '../../onnx/weight-slices';
import { pytorchNames, storedNameOf, type ProtectModel } from './protect';

/** A head outside the circuit: input features [start, end) of `module` (its output projection). */
export interface AnchorHead { node: string; module: string; start: number; end: number }
/** An MLP outside the circuit: `module`'s output is the MLP's output. */
export interface AnchorMlp { node: string; module: string }
export interface Anchor { ablation: 'mean'; heads: AnchorHead[]; mlps: AnchorMlp[] }

/** The nodes of the model outside `circuit`, as the PyTorch modules the snippet hooks. */
export function anchorModules(pm: ProtectModel, circuit: readonly string[], what: string): Anchor {
  const storedName = storedNameOf(pm);
  const names = pytorchNames(pm, storedName);
  const inCircuit = new Set(circuit);
  const moduleOf = (id: string, initializer: string, part: string) => {
    const p = names.get(storedName(initializer));
    if (!p || !p.pytorch.endsWith('.weight')) {
      throw new UserError(`${what}: --anchor needs the PyTorch module of ${id}'s ${part} ("${storedName(initializer)}"), and the export did not keep its name`);
    }
    return p.pytorch.slice(0, -'.weight'.length);
  };
  const heads: AnchorHead[] = [];
  const mlps: AnchorMlp[] = [];
  const g = new GraphIndex(pm.model.graph!);
  // Two passes over the graph (ownedSlices infers its shapes), not one per head: each layer's head count from its
  // first head's W_O slice, then the slices of every head outside the circuit.
  const graph = pm.model.graph!;
  const firsts = ownedSlices(graph, pm.structure, pm.structure.layers.map((_, l) => headId(l, 0)), what);
  const outsideHeads = pm.structure.layers.map((_, l) => {
    const first = firsts.get(headId(l, 0))!.find((s) => s.role === 'W_O')!;
    return Array.from({ length: first.dims[first.axis]! / (first.end - first.start) }, (_, h) => headId(l, h)).filter((id) => !inCircuit.has(id));
  });
  const outside = outsideHeads.flat();
  const sliced = outside.length ? ownedSlices(graph, pm.structure, outside, what) : new Map<string, OwnedSlice[]>();
  pm.structure.layers.forEach((L, l) => {
    for (const id of outsideHeads[l]!) {
      const o = sliced.get(id)!.find((s) => s.role === 'W_O')!;
      heads.push({ node: id, module: moduleOf(id, o.initializer, 'output projection'), start: o.start, end: o.end });
    }
    const id = mlpId(l);
    if (inCircuit.has(id)) return;
    mlps.push({ node: id, module: moduleOf(id, downProjection(g, L.mlpOut, id, what), 'down projection') });
  });
  return { ablation: 'mean', heads, mlps };
}

/** The weight of the MatMul or Gemm whose output, plus constant biases and reshaped, is the MLP's output. */
function downProjection(g: GraphIndex, mlpOut: string, id: string, what: string): string {
  let n = g.producerOf(mlpOut);
  const isConst = (t: string) => g.isConstant(t);
  // A bias Add, or a Reshape back from the 2-D product (torch.onnx's Conv1D and addmm exports), keeps the values.
  for (;;) {
    if (n?.opType === 'Add' && n.input.filter(isConst).length === 1) n = g.producerOf(n.input.find((t) => !isConst(t))!);
    else if (n?.opType === 'Reshape' || n?.opType === 'Identity') n = g.producerOf(n.input[0]!);
    else break;
  }
  if ((n?.opType === 'MatMul' || n?.opType === 'Gemm') && g.initializers.has(n.input[1] ?? '')) return n.input[1]!;
  throw new UserError(`${what}: --anchor cannot tell which module writes ${id}'s output: the MLP's output comes from ${n ? `"${n.name || n.output[0]}" (${n.opType})` : 'no node'}, not a projection with a weight (plus a bias)`);
}
