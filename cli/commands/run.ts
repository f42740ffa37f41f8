import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { metricOf } from '../../core/analysis/metrics';
import { UserError } from '../../core/errors';
import { parseNodeList } from '../../core/ids';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { cliRuntime, JSON_OPTION, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';
import { loadSuiteAndModel } from '../common';
import { shorten } from '../text';

export const RUN_USAGE: Usage = {
  synopsis: 'circuitlens run SUITE [--model MODEL] [--ablate IDS] [--ablation zero|mean|resample] [--runtime node|wasm] [--json]',
  about: 'The metrics of a prompt suite (*.suite.yaml) on its model, prompt by prompt; optionally with nodes ablated.\n'
    + 'Text output shortens long prompts; --json has them whole.',
  options: [
    ['--model MODEL', 'the model (default: the suite\'s model:)'],
    ['--ablate IDS', 'nodes to ablate, e.g. a1.h2,m0'],
    ['--ablation zero|mean|resample', 'how ablated nodes are replaced (default: the suite\'s ablation:)'],
    RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"metric", "value", "accuracy", "logitDiff", "prob", "kl", "ablated", "ablation", "prompts": [{"text", "value", "top1", "answer", "correct", "prob", "logitDiff", "kl", "tags"}]}',
};

export async function runCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, ablate: { type: 'string' }, ablation: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' },
  }, RUN_USAGE);
  if (positionals.length !== 1) throw usageError('expected one suite file', RUN_USAGE);
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(values.runtime));
  try {
    const { suite, ablation: kind, engine, all: prompts } = await loadSuiteAndModel(ws, positionals[0]!, values.model, values.ablation);
    const nodes = values.ablate ? parseNodeList(values.ablate, engine.info) : [];
    if (kind === 'resample' && nodes.length && prompts.some((p) => !p.corruptedIds)) {
      throw new UserError(`${ws.display(suite.file)}: resample ablation needs a corrupted counterpart for every prompt`);
    }
    const ctx = await prepare(engine, prompts, kind);
    const [res] = await evaluateSets(ctx, [nodes]);
    const tok = engine.tokenizer;
    const report = {
      metric: suite.metric,
      value: res!.metrics[suite.metric],
      accuracy: res!.metrics.accuracy,
      logitDiff: prompts.every((p) => p.foil !== undefined) ? res!.metrics.logit_diff : null,
      prob: res!.metrics.prob,
      kl: res!.metrics.kl,
      ablated: nodes,
      ablation: kind,
      prompts: prompts.map((p, i) => {
        const s = res!.scores[i]!;
        return {
          text: p.text, value: metricOf(s, suite.metric), top1: tok ? tok.tokenText(s.top1) : String(s.top1),
          answer: tok ? tok.tokenText(p.answer) : String(p.answer), correct: s.correct, prob: s.prob,
          logitDiff: Number.isNaN(s.logitDiff) ? null : s.logitDiff, kl: s.kl, tags: p.tags,
        };
      }),
    };
    if (values.json) out(JSON.stringify(report, null, 2));
    else {
      out(`${suite.name}: ${prompts.length} prompts${nodes.length ? `, ${kind}-ablating ${nodes.join(', ')}` : ''}`);
      out(`  ${suite.metric} ${report.value.toFixed(4)}   accuracy ${report.accuracy.toFixed(3)}   prob ${report.prob.toFixed(3)}${report.logitDiff !== null && suite.metric !== 'logit_diff' ? `   logit_diff ${report.logitDiff.toFixed(3)}` : ''}${nodes.length ? `   KL ${report.kl.toFixed(4)}` : ''}`);
      for (const p of report.prompts) out(`  ${p.correct ? '✓' : '✗'} ${JSON.stringify(shorten(p.text))} → ${JSON.stringify(p.top1)} (answer ${JSON.stringify(p.answer)}, ${suite.metric} ${p.value.toFixed(3)})${p.tags.length ? `  [${p.tags.join(', ')}]` : ''}`);
    }
    return 0;
  } finally {
    await ws.dispose();
  }
}
