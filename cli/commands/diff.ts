import { differentialActivation } from '../../core/analysis/attribute/differential';
import { UserError } from '../../core/errors';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { cliRuntime, JSON_OPTION, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';
import { taskPrompts } from '../../core/analysis/open-suite';
import { loadSuiteAndModel } from '../common';
import { f3 } from '../text';

export const DIFF_USAGE: Usage = {
  synopsis: 'circuitlens diff SUITE [--model MODEL] [--runtime node|wasm] [--json]',
  about: 'Differential activation: how differently each head and MLP acts on the suite\'s task prompts and on its\n'
    + 'prompts tagged control, at the last position. A first ranking, not a causal test.',
  options: [
    ['--model MODEL', 'the model (default: the suite\'s model:)'],
    RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"task": count, "control": count, "nodes": [{"id", "taskNorm", "controlNorm", "effectSize", "taskEntropy"?, "controlEntropy"?}]}',
};

export async function diffCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, { model: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' } }, DIFF_USAGE);
  if (positionals.length !== 1) throw usageError('expected one suite file', DIFF_USAGE);
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(values.runtime));
  try {
    const opened = await loadSuiteAndModel(ws, positionals[0]!, values.model);
    const { suite, engine, control } = opened;
    const task = taskPrompts(opened);
    if (control.length === 0) throw new UserError(`${ws.display(suite.file)} has no prompts tagged control to compare with`);
    const rows = await differentialActivation(engine, task, control);
    if (values.json) out(JSON.stringify({ task: task.length, control: control.length, nodes: rows }, null, 2));
    else {
      out(`${suite.name}: task (${task.length}) vs control (${control.length}) prompts, last position; a first ranking, not a causal test`);
      out('  node      task norm  control norm  effect size (d)  entropy task/control');
      for (const r of rows) out(`  ${r.id.padEnd(8)} ${f3(r.taskNorm).padStart(10)} ${f3(r.controlNorm).padStart(13)} ${f3(r.effectSize).padStart(16)}  ${r.taskEntropy !== undefined ? `${f3(r.taskEntropy)} / ${f3(r.controlEntropy!)}` : ''}`);
    }
    return 0;
  } finally {
    await ws.dispose();
  }
}
