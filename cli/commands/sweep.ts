import { runSweep, SWEEP_DEFAULTS } from '../../core/analysis/sweep/sweep';
import { UserError } from '../../core/errors';
import { parseNodeList } from '../../core/ids';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { cliRuntime, JSON_OPTION, numberFlag, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';
import { BROKER_FLAGS, BROKER_OPTIONS, checkBrokerFlag, withWorkersFor } from '../broker';
import { loadSuiteAndModel } from '../common';
import { stderrProgress } from '../progress';
import { f3 } from '../text';

export const SWEEP_USAGE: Usage = {
  synopsis: 'circuitlens sweep SUITE [--model MODEL] [--variable VAR] [--level L] [--resamples B] [--seed S] [--confidence C] [--ablate IDS] [--ablation zero|mean|resample] [--broker URL [--model-url URL]] [--runtime node|wasm] [--json]',
  about: 'Critical thresholds: the suite\'s metric and accuracy at each value of a swept variable (a suite with sweep:,\n'
    + 'e.g. the padding before the evidence), with percentile bootstrap intervals (prompts resampled within each\n'
    + 'value), and n*: where accuracy crosses --level as the variable grows, interpolated linearly between the two\n'
    + 'values around it (null when accuracy never crosses). Task prompts only (not tagged control). With --broker,\n'
    + 'the prompts run on workers (the clean run and, with --ablate, the ablated run, in the local run\'s engine calls).',
  options: [
    ['--model MODEL', 'the model (default: the suite\'s model:)'],
    ['--variable VAR', 'the swept variable (default: the suite\'s only one)'],
    ['--level L', `the accuracy level that defines n* (default ${SWEEP_DEFAULTS.level})`],
    ['--resamples B', `bootstrap resamples per value (default ${SWEEP_DEFAULTS.resamples}; 0: no intervals)`],
    ['--seed S', `seed of the bootstrap (default ${SWEEP_DEFAULTS.seed})`],
    ['--confidence C', `coverage of the intervals (default ${SWEEP_DEFAULTS.confidence})`],
    ['--ablate IDS', 'nodes ablated at every value, e.g. a1.h2,m0'],
    ['--ablation zero|mean|resample', 'how ablated nodes are replaced (default: the suite\'s ablation:)'],
    ...BROKER_OPTIONS, RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"suite", "name", "model", "variable", "metric", "level", "ablation", "ablated", "points": [{"value", "prompts", "metric", "accuracy", "ci": {"metric": [lo, hi], "accuracy": [lo, hi]} | null}], "critical": {"value", "direction": "falls"|"rises", "between": [a, b], "level", "ci": [lo, hi] | null, "resolved"} | null, "bootstrap": {"resamples", "confidence", "seed"}}',
};

export async function sweepCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, variable: { type: 'string' }, level: { type: 'string' }, resamples: { type: 'string' }, seed: { type: 'string' },
    confidence: { type: 'string' }, ablate: { type: 'string' }, ablation: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' }, ...BROKER_FLAGS,
  }, SWEEP_USAGE);
  if (positionals.length !== 1) throw usageError('expected one suite file', SWEEP_USAGE);
  const level = numberFlag(values.level, '--level', SWEEP_DEFAULTS.level);
  if (level < 0 || level > 1) throw new UserError(`--level is an accuracy, from 0 to 1 (got ${values.level})`);
  const resamples = numberFlag(values.resamples, '--resamples', SWEEP_DEFAULTS.resamples);
  if (!Number.isInteger(resamples) || resamples < 0 || resamples > 100_000) throw new UserError(`--resamples must be a whole number from 0 to 100000 (got ${values.resamples})`);
  const seed = numberFlag(values.seed, '--seed', SWEEP_DEFAULTS.seed);
  if (!Number.isInteger(seed)) throw new UserError(`--seed must be a whole number (got ${values.seed})`);
  const confidence = numberFlag(values.confidence, '--confidence', SWEEP_DEFAULTS.confidence);
  if (!(confidence > 0 && confidence < 1)) throw new UserError(`--confidence must be between 0 and 1, e.g. 0.95 (got ${values.confidence})`);
  await checkBrokerFlag(values);
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(values.runtime));
  try {
    const opened = await loadSuiteAndModel(ws, positionals[0]!, values.model, values.ablation);
    const ablate = values.ablate ? parseNodeList(values.ablate, opened.engine.info) : [];
    process.stderr.write(`circuitlens sweep: ${opened.task.length} task prompts of ${ws.display(opened.suite.file)} on ${ws.display(opened.modelPath)}\n`);
    const progress = stderrProgress('sweep');
    const r = await withWorkersFor(values, ws, opened.modelPath, opened.suite.file, values.runtime, 'sweep',
      (remote, signal) => runSweep(opened, { variable: values.variable, level, resamples, seed, confidence, ablate, progress, remote, signal }));
    const { suite: name, ...rest } = r;
    const report = { suite: ws.display(opened.suite.file), name, model: ws.display(opened.modelPath), ...rest };
    if (values.json) { out(JSON.stringify(report, null, 2)); return 0; }
    const pct = Math.round(confidence * 100);
    const ci = (x: [number, number] | undefined) => (x ? ` [${f3(x[0])}, ${f3(x[1])}]` : '');
    out(`${opened.suite.name}: ${r.metric} and accuracy by ${r.variable}${ablate.length ? `, ${r.ablation}-ablating ${ablate.join(', ')}` : ''}; ${resamples ? `${pct}% percentile bootstrap intervals (${resamples} resamples, seed ${seed})` : 'no intervals'}`);
    out(`  ${r.variable.padStart(6)}  prompts  ${r.metric.padEnd(24)}  accuracy`);
    for (const p of r.points) out(`  ${String(p.value).padStart(6)}  ${String(p.prompts).padStart(7)}  ${(f3(p.metric) + ci(p.ci?.metric)).padEnd(24)}  ${f3(p.accuracy)}${ci(p.ci?.accuracy)}`);
    const c = r.critical;
    if (c) {
      out(`  ${r.variable}* = ${f3(c.value)}: accuracy ${c.direction === 'falls' ? 'falls below' : 'rises to'} ${level} between ${r.variable}=${c.between[0]} and ${r.variable}=${c.between[1]} (linear interpolation)`
        + (c.ci ? `; ${pct}% interval [${f3(c.ci[0])}, ${f3(c.ci[1])}] over the ${Math.round(c.resolved * 100)}% of resamples that cross` : ''));
    } else {
      const above = r.points.every((p) => p.accuracy >= level);
      out(`  ${r.variable}* = none: accuracy is ${above ? 'at or above' : 'below'} ${level} at every value swept`);
    }
    return 0;
  } finally {
    await ws.dispose();
  }
}
