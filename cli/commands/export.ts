import * as path from 'node:path';
import { UserError } from '../../core/errors';
import { toEapIg } from '../../core/formats/eap-ig';
import { toNeuronpedia } from '../../core/formats/neuronpedia';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { FORCE_OPTION, oneOf, parse, usageError, type Usage } from '../args';
import { readCircuitFile, VERSION } from '../common';
import { outFile, writeOutFile } from '../out-file';

export const EXPORT_USAGE: Usage = {
  synopsis: 'circuitlens export CIRCUIT --format eap-ig|neuronpedia [--model MODEL] [--out FILE [--force]] [--scan MODEL_ID] [--slug SLUG] [--prompt TEXT]',
  about: 'Writes a circuit as EAP-IG / MIB circuit JSON (eap-ig: every edge of the model, with in_graph flags; readable by\n'
    + 'EAP-IG\'s Graph.from_json) or as a Neuronpedia attribution graph (neuronpedia: one node per head and MLP).\n'
    + 'Without --out the JSON is printed.',
  options: [
    ['--format eap-ig|neuronpedia', 'the format (default eap-ig)'],
    ['--model MODEL', 'the model (default: the circuit\'s model)'],
    ['--out FILE', 'write to FILE instead of printing'],
    FORCE_OPTION,
    ['--scan MODEL_ID', 'neuronpedia: the model id in the graph (default: the model file\'s name)'],
    ['--slug SLUG', 'neuronpedia: the graph\'s slug (letters, digits, - and _)'],
    ['--prompt TEXT', 'neuronpedia: place nodes on this prompt\'s tokens (needs the tokenizer)'],
    ['--json', 'accepted; the output is JSON either way'],
  ],
  json: 'the output is always JSON: EAP-IG {"cfg": {"n_layers", "n_heads", "parallel_attn_mlp", "d_model"}, "nodes": {id: {"in_graph", "score"?}}, "edges": {id: {"in_graph", "score"?}}}, or a Neuronpedia graph {"metadata", "qParams", "nodes", "links"}',
};

export async function exportCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    format: { type: 'string' }, model: { type: 'string' }, out: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' },
    scan: { type: 'string' }, slug: { type: 'string' }, prompt: { type: 'string' },
  }, EXPORT_USAGE);
  if (positionals.length !== 1) throw usageError('expected one circuit file', EXPORT_USAGE);
  const format = oneOf(values.format, ['eap-ig', 'neuronpedia'] as const, '--format', 'eap-ig');
  if (format !== 'neuronpedia') {
    const only = (['scan', 'slug', 'prompt'] as const).filter((k) => values[k] !== undefined);
    if (only.length) throw usageError(`--${only[0]} applies to --format neuronpedia only`, EXPORT_USAGE);
  }
  if (values.slug !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(values.slug)) throw new UserError(`--slug must be letters, digits, - and _ (got "${values.slug}")`);
  const outPath = values.out !== undefined ? outFile(values.out, values.force) : undefined;
  const ws = new NodeWorkspace();
  try {
    const { circuit: c, modelPath } = await readCircuitFile(ws, positionals[0]!, values.model, format === 'eap-ig' ? 'the export lists every edge of the model' : 'the graph places nodes by the model\'s layers');
    const engine = await ws.loadEngine(modelPath);
    let graph: unknown;
    if (format === 'eap-ig') graph = toEapIg(c, { ...engine.info, parallel: engine.info.features.block === 'parallel' });
    else {
      let promptTokens: string[] | undefined;
      if (values.prompt !== undefined) {
        const tok = engine.tokenizer;
        if (!tok) throw new UserError(`--prompt needs the model's tokenizer.json, and ${ws.display(modelPath)} has none beside it`);
        promptTokens = tok.encode(values.prompt).map((id) => tok.tokenText(id));
        if (promptTokens.length === 0) throw new UserError('--prompt is empty once tokenized');
      }
      graph = toNeuronpedia(c, engine.info, {
        scan: values.scan ?? path.basename(modelPath).replace(/\.onnx$/i, ''), slug: values.slug, promptTokens, prompt: values.prompt, generatorVersion: VERSION,
      });
    }
    const json = JSON.stringify(graph, null, 2);
    if (outPath) await writeOutFile(outPath, json + '\n', values.force);
    else out(json);
    return 0;
  } finally {
    await ws.dispose();
  }
}
