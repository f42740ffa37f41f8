import { loadEngine } from '../../core/nodejs/load';
import { cliRuntime, JSON_OPTION, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';

export const INFO_USAGE: Usage = {
  synopsis: 'circuitlens info MODEL [--runtime node|wasm] [--json]',
  about: 'The architecture, dimensions, tokenizer and hook map (TransformerLens hook name → ONNX tensor) of a model.',
  options: [RUNTIME_OPTION, JSON_OPTION],
  json: '{"architecture", "layers", "heads", "dModel", "vocab", "hooks": {hook: onnxTensor}, "dHead", "contextLength", "opset", "features", "detection", "tokenizer", "normalized"?}',
};

export async function infoCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' }, runtime: { type: 'string' } }, INFO_USAGE);
  if (positionals.length !== 1) throw usageError('expected one model file', INFO_USAGE);
  const engine = await loadEngine(positionals[0]!, cliRuntime(values.runtime));
  const i = engine.info;
  if (values.json) {
    out(JSON.stringify({
      architecture: i.architecture, layers: i.layers, heads: i.heads, dModel: i.dModel, vocab: i.vocab, hooks: i.hooks,
      dHead: i.dHead, contextLength: i.contextLength ?? null, opset: i.opset, features: i.features, detection: i.detection,
      tokenizer: !!engine.tokenizer, ...(i.normalized ? { normalized: i.normalized } : {}),
    }, null, 2));
  } else {
    out(`${positionals[0]}: ${i.architecture} (${i.features.norm}, ${i.features.positions} positions, ${i.features.mlp} MLP, ${i.features.qkv} QKV, ${i.features.block} blocks), opset ${i.opset}`);
    for (const note of i.normalized ?? []) out(`  loaded as: ${note}`);
    out(`  ${i.layers} layers × ${i.heads} heads, d_model ${i.dModel}, d_head ${i.dHead}, vocab ${i.vocab}, context ${i.contextLength ?? 'unknown'}`);
    out(`  tokenizer: ${engine.tokenizer ? 'yes' : 'none (pass token ids)'}; hooks from ${i.detection}:`);
    for (const [h, t] of Object.entries(i.hooks)) out(`    ${h.padEnd(30)} ${t}`);
  }
  await engine.release();
  return 0;
}
