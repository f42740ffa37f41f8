import { attentionStatistics } from '../../core/analysis/attention/attention';
import { checkTemperature } from '../../core/analysis/attention/temperature';
import { DEFAULT_TEMPERATURES } from '../../core/analysis/attention/stats';
import { prepare } from '../../core/analysis/evaluate';
import { UserError } from '../../core/errors';
import { allComponentNodes, parseNodeList, type NodeId } from '../../core/ids';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { cliRuntime, JSON_OPTION, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';
import { loadSuiteAndModel } from '../common';
import { f3 } from '../text';

export const ATTENTION_USAGE: Usage = {
  synopsis: 'circuitlens attention SUITE [--model MODEL] [--head IDS] [--temperatures 0.5,0.75,1,1.5,2] [--runtime node|wasm] [--json]',
  about: 'Per attention head over the suite\'s prompts: the entropy of its attention at each query position (nats;\n'
    + 'uniform attention at position q has ln(q+1)), and the suite\'s metrics when the head\'s softmax temperature\n'
    + 'changes (its attention scores divided by T before the softmax: T > 1 flattens the pattern, T < 1 sharpens it).',
  options: [
    ['--model MODEL', 'the model (default: the suite\'s model:)'],
    ['--head IDS', 'heads to report, e.g. a1.h0 or a1.h0,a0.h2 (default: every head)'],
    ['--temperatures LIST', `temperatures to run (default ${DEFAULT_TEMPERATURES.join(',')}; 1 is the model as it is)`],
    RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"suite", "metric", "prompts", "temperatures", "positions", "maxEntropy", "heads": [{"id", "meanEntropy", "entropy": [per position], "byTemperature": [{"temperature", "metric", "accuracy", "logitDiff", "prob", "kl"}]}]}',
};

export async function attentionCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, head: { type: 'string' }, temperatures: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' },
  }, ATTENTION_USAGE);
  if (positionals.length !== 1) throw usageError('expected one suite file', ATTENTION_USAGE);
  const temperatures = values.temperatures === undefined ? DEFAULT_TEMPERATURES : parseTemperatures(values.temperatures);
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(values.runtime));
  try {
    const { suite, engine, all: prompts } = await loadSuiteAndModel(ws, positionals[0]!, values.model);
    const heads: NodeId[] = values.head ? parseNodeList(values.head, engine.info) : allComponentNodes(engine.info).filter((n) => n.startsWith('a'));
    const notHead = heads.find((h) => !h.startsWith('a'));
    if (notHead) throw new UserError(`--head takes attention heads a<L>.h<H> (got "${notHead}")`);
    const runs = heads.length * temperatures.filter((t) => t !== 1).length * prompts.length;
    process.stderr.write(`circuitlens attention: ${heads.length} head${heads.length === 1 ? '' : 's'} × ${temperatures.length} temperatures × ${prompts.length} prompts (${runs} tempered runs)\n`);
    const ctx = await prepare(engine, prompts, 'zero');
    let shown = 0;
    const stats = await attentionStatistics(ctx, heads, temperatures, (done, total) => {
      const pct = Math.floor((100 * done) / total);
      if (pct >= shown + 25 || done === total) { shown = pct; process.stderr.write(`circuitlens attention: ${done}/${total} runs\n`); }
    });
    const hasFoil = prompts.every((p) => p.foil !== undefined);
    const report = {
      suite: suite.name, metric: suite.metric, prompts: prompts.length, temperatures, positions: stats.positions, maxEntropy: stats.maxEntropy,
      heads: stats.heads.map((h) => ({
        id: h.id, meanEntropy: h.meanEntropy, entropy: h.entropy,
        byTemperature: h.byTemperature.map((p) => ({
          temperature: p.temperature, metric: p.metrics[suite.metric], accuracy: p.metrics.accuracy,
          logitDiff: hasFoil ? p.metrics.logit_diff : null, prob: p.metrics.prob, kl: p.metrics.kl,
        })),
      })),
    };
    if (values.json) { out(JSON.stringify(report, null, 2)); return 0; }
    out(`${suite.name}: ${prompts.length} prompts; entropy in nats (uniform attention at position q: ln(q+1)); ${suite.metric} by softmax temperature of the head`);
    out(`  head     mean H   ${temperatures.map((t) => `τ=${t}`.padStart(9)).join(' ')}   entropy per position`);
    for (const h of report.heads) {
      const curve = h.byTemperature.map((p) => f3(p.metric).padStart(9)).join(' ');
      out(`  ${h.id.padEnd(8)} ${f3(h.meanEntropy).padStart(6)}   ${curve}   ${h.entropy.map((e) => e.toFixed(2)).join(' ')}`);
    }
    return 0;
  } finally {
    await ws.dispose();
  }
}

function parseTemperatures(s: string): number[] {
  const items = s.split(',').map((x) => x.trim()).filter(Boolean);
  if (items.length === 0) throw new UserError('--temperatures is empty (e.g. 0.5,1,2)');
  const ts = items.map((x) => checkTemperature(Number(x), `--temperatures "${x}"`));
  return [...new Set(ts)].sort((a, b) => a - b);
}
