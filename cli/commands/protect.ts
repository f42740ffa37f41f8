import * as path from 'node:path';
import { anchorModules, type Anchor } from '../../core/analysis/protect/anchor';
import { protectMask, readProtectModel, type ProtectResult } from '../../core/analysis/protect/protect';
import { parseSharedParts } from '../../core/analysis/protect/shared';
import { ANCHOR_SNIPPET, PROTECT_SNIPPET } from '../../core/analysis/protect/snippet';
import { UserError } from '../../core/errors';
import { circuitComponents } from '../../core/formats/circuit';
import { encodeSafetensors } from '../../core/formats/safetensors';
import { loadSidecar, readModelFile } from '../../core/nodejs/load';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { FORCE_OPTION, JSON_OPTION, parse, usageError, type Usage } from '../args';
import { readCircuitFile } from '../common';
import { outFile, writeOutFile } from '../out-file';

export const PROTECT_USAGE: Usage = {
  synopsis: 'circuitlens protect CIRCUIT --out F.safetensors [--scale S] [--shared PARTS] [--invert] [--anchor] [--model MODEL] [--force] [--json] [--snippet]\n'
    + '       circuitlens protect --snippet [--anchor]',
  about: 'Writes per-parameter learning-rate scales that protect a circuit during fine-tuning: a safetensors file with\n'
    + 'one float32 tensor per ONNX initializer (its name kept), S on the entries the circuit\'s nodes own and 1 elsewhere.\n'
    + 'A head owns its columns of the q/k/v projections and their biases (with grouped key/value heads, its group\'s\n'
    + 'keys and values) and its rows of the output projection; an MLP owns the weights only it reads. The metadata\n'
    + 'maps initializers to PyTorch parameter names where the export tells them. --snippet prints the Python that\n'
    + 'applies the mask in PyTorch (alone, without a circuit).',
  options: [
    ['--out F', 'the mask file to write (.safetensors)'],
    ['--scale S', 'the learning-rate scale of the circuit\'s entries, ≥ 0 (default 0.01; 0 freezes them)'],
    ['--shared PARTS', 'also protect, whole, the shared weights the circuit reads and writes through (no node owns them):\n'
      + 'norms (the norms in front of its heads and MLPs, and the final norm), embedding, unembedding; or all'],
    ['--invert', 'the other way round: S on every entry the circuit\'s nodes do not own, 1 on theirs (only the circuit\n'
      + 'fine-tunes at full rate; measured on the demo to hold faithfulness better than no mask, at a task cost: README)'],
    ['--anchor', 'also record the nodes outside the circuit as PyTorch modules, for the snippet\'s faithfulness anchor:\n'
      + 'a loss term KL(whole model || circuit alone) on the circuit\'s prompts (with --snippet: the snippet includes it)'],
    ['--model MODEL', 'the model (default: the circuit\'s model)'],
    FORCE_OPTION, JSON_OPTION,
    ['--snippet', 'print the PyTorch snippet that applies the mask (the summary then goes to stderr)'],
  ],
  json: '{"out", "scale", "invert"? (true with --invert), "nodes": {id: [{"initializer", "role" (W_Q|W_K|W_V|b_Q|b_K|b_V|W_O|mlp), "slice", "entries"}]},\n'
    + '  "shared": [{"initializer", "part" (norms|embedding|unembedding), "layer"?, "entries"}],\n'
    + '  "initializers": [{"name", "pytorch"?, "transposed"?, "protected", "total"}] (those with protected entries), "protectedEntries", "totalEntries",\n'
    + '  "anchor"? (with --anchor): {"ablation": "mean", "heads": [{"node", "module", "start", "end"}], "mlps": [{"node", "module"}]}}',
};

export async function protectCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    out: { type: 'string' }, scale: { type: 'string' }, shared: { type: 'string' }, model: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' }, snippet: { type: 'boolean' }, anchor: { type: 'boolean' }, invert: { type: 'boolean' },
  }, PROTECT_USAGE);
  if (values.snippet && positionals.length === 0 && values.out === undefined) {
    out(snippet(values.anchor));
    return 0;
  }
  if (positionals.length !== 1) throw usageError('expected one circuit file', PROTECT_USAGE);
  if (values.out === undefined) throw usageError('--out F.safetensors is required', PROTECT_USAGE);
  if (values.json && values.snippet) throw usageError('--json and --snippet both print to stdout; run --snippet alone for the snippet', PROTECT_USAGE);
  const scale = values.scale === undefined ? 0.01 : Number(values.scale);
  if (values.scale !== undefined && (values.scale.trim() === '' || !Number.isFinite(scale) || scale < 0)) throw new UserError(`--scale must be a number ≥ 0 (got "${values.scale}")`);
  const shared = values.shared === undefined ? [] : parseSharedParts(values.shared);
  if (values.invert && shared.length) throw usageError('--invert and --shared: --invert already scales every weight no node of the circuit owns', PROTECT_USAGE);
  const outPath = outFile(values.out, values.force);
  const ws = new NodeWorkspace();
  try {
    const { circuit: c, modelPath } = await readCircuitFile(ws, positionals[0]!, values.model, 'the mask covers its initializers');
    process.stderr.write(`circuitlens protect: reading ${ws.display(modelPath)}\n`);
    const { sidecar, sidecarPath } = loadSidecar(modelPath);
    const pm = readProtectModel(readModelFile(modelPath), modelPath, sidecar, sidecarPath);
    const nodes = circuitComponents(c);
    const anchor: Anchor | undefined = values.anchor ? anchorModules(pm, nodes, ws.display(modelPath)) : undefined;
    const info = { circuit: c.name, model: path.basename(modelPath), ...(anchor ? { anchor: JSON.stringify(anchor) } : {}) };
    const r = protectMask(pm, nodes, scale, ws.display(modelPath), info, shared, values.invert === true);
    await writeOutFile(outPath, encodeSafetensors(r.mask), values.force);
    if (values.json) {
      const sharedJson = r.shared.map((w) => ({ initializer: w.initializer, part: w.part, ...(w.layer === undefined ? {} : { layer: w.layer }), entries: w.dims.reduce((a, v) => a * v, 1) }));
      out(JSON.stringify({ out: outPath, scale, ...(values.invert ? { invert: true } : {}), nodes: r.nodes, shared: sharedJson, initializers: r.initializers, protectedEntries: r.protectedEntries, totalEntries: r.totalEntries, ...(anchor ? { anchor } : {}) }, null, 2));
      return 0;
    }
    const text = summary(r, scale, ws.display(outPath), values.invert === true);
    if (anchor) text.push(`anchor: ${[...anchor.heads.map((h) => `${h.node} ${h.module}[${h.start}:${h.end}]`), ...anchor.mlps.map((m) => `${m.node} ${m.module}`)].join(', ') || 'nothing outside the circuit'} (mean-ablated for the circuit alone)`);
    if (values.snippet) {
      process.stderr.write(text.join('\n') + '\n');
      out(snippet(values.anchor));
    } else text.forEach((l) => out(l));
    return 0;
  } finally {
    await ws.dispose();
  }
}

function snippet(anchor?: boolean): string {
  return (anchor ? PROTECT_SNIPPET + ANCHOR_SNIPPET : PROTECT_SNIPPET).trimEnd();
}

function summary(r: ProtectResult, scale: number, shown: string, invert: boolean): string[] {
  const what = invert ? `, every entry but those of ${Object.keys(r.nodes).length} nodes (--invert)` : `, ${Object.keys(r.nodes).length} nodes`;
  const lines = [`${shown}: ${r.protectedEntries} of ${r.totalEntries} entries at scale ${scale} (${(100 * r.protectedEntries / r.totalEntries).toFixed(2)}%)${what}`];
  for (const [id, slices] of Object.entries(r.nodes)) {
    lines.push(`  ${id}:`);
    for (const s of slices) lines.push(`    ${s.role.padEnd(4)} ${s.initializer}${s.slice}  (${s.entries})`);
  }
  if (r.shared.length) lines.push(`  shared: ${r.shared.map((w) => `${w.initializer} (${w.part}${w.layer === undefined ? '' : `, layer ${w.layer}`})`).join(', ')}`);
  const named = r.initializers.filter((x) => x.pytorch);
  lines.push(`PyTorch names known for ${named.length} of ${r.initializers.length} initializers with protected entries${named.length < r.initializers.length ? ` (missing: ${r.initializers.filter((x) => !x.pytorch).map((x) => x.name).join(', ')})` : ''}`);
  return lines;
}
