import * as path from 'node:path';
import { UserError } from '../../core/errors';
import { serializeCircuit } from '../../core/formats/circuit';
import { fromEapIg } from '../../core/formats/eap-ig';
import { fromNeuronpedia } from '../../core/formats/neuronpedia';
import { NodeWorkspace, sha256File } from '../../core/nodejs/workspace';
import { FORCE_OPTION, JSON_OPTION, oneOf, parse, usageError, type Usage } from '../args';
import { outFile, writeOutFile } from '../out-file';

export const IMPORT_USAGE: Usage = {
  synopsis: 'circuitlens import FILE --format eap-ig|neuronpedia --out NAME.circuit.json [--force] [--model MODEL] [--suite SUITE] [--json]',
  about: 'Reads an EAP-IG / MIB circuit JSON or a Neuronpedia attribution graph and writes it as a .circuit.json.',
  options: [
    ['--format eap-ig|neuronpedia', 'the input\'s format (default eap-ig)'],
    ['--out NAME.circuit.json', 'where to write the circuit (required)'],
    FORCE_OPTION,
    ['--model MODEL', 'record this model (path and sha256) in the circuit'],
    ['--suite SUITE', 'record this suite in the circuit'],
    JSON_OPTION,
  ],
  json: '{"circuit": path, "nodes": count, "edges": count}',
};

export async function importCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    format: { type: 'string' }, out: { type: 'string' }, force: { type: 'boolean' }, model: { type: 'string' }, suite: { type: 'string' }, json: { type: 'boolean' },
  }, IMPORT_USAGE);
  if (positionals.length !== 1 || !values.out) throw usageError('expected one input file and --out', IMPORT_USAGE);
  const format = oneOf(values.format, ['eap-ig', 'neuronpedia'] as const, '--format', 'eap-ig');
  const outPath = outFile(values.out, values.force);
  const ws = new NodeWorkspace();
  const file = path.resolve(positionals[0]!);
  let json: unknown;
  try { json = JSON.parse(await ws.readText(file)); } catch (e) { throw e instanceof UserError ? e : new UserError(`${ws.display(file)} is not valid JSON: ${(e as Error).message}`); }
  const c = format === 'neuronpedia' ? fromNeuronpedia(json, ws.display(file)) : fromEapIg(json, path.basename(file));
  const rel = (p: string) => path.relative(path.dirname(outPath), path.resolve(p)).split(path.sep).join('/');
  if (values.model) c.model = { path: rel(values.model), sha256: await sha256File(path.resolve(values.model)) };
  if (values.suite) c.suite = rel(values.suite);
  c.created = new Date().toISOString();
  await writeOutFile(outPath, serializeCircuit(c), values.force);
  out(values.json ? JSON.stringify({ circuit: ws.display(outPath), nodes: c.nodes.length, edges: c.edges?.length ?? 0 }) : `wrote ${ws.display(outPath)}: ${c.nodes.length} nodes, ${c.edges?.length ?? 0} edges`);
  return 0;
}
