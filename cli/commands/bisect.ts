import * as path from 'node:path';
import { BISECT_CAVEATS, bisect, type Measured } from '../../core/analysis/bisect/bisect';
import { round6 } from '../../core/analysis/records';
import { openModelVariants } from '../../core/nodejs/model-variants';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { cliRuntime, JSON_OPTION, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';

export const BISECT_USAGE: Usage = {
  synopsis: 'circuitlens bisect GOOD.onnx BAD.onnx --canary FILE [--check NAME] [--runtime node|wasm] [--json]',
  about: 'Finds the tensors that broke a canary check: GOOD passes it, BAD (the same architecture, other weights) fails it.\n'
    + 'Candidate models are BAD with some initializers copied from GOOD, and the check is re-run on each: first one\n'
    + '(layer, component) group at a time (embedding, norm, attention, MLP, final norm, unembedding), then bisecting the\n'
    + 'groups that matter down to a minimal set of tensors, each then measured alone. A heuristic: a tensor that matters\n'
    + 'only together with another can hide. Each candidate is its own model, so they run one at a time; the number of\n'
    + 'evaluations is reported. The canary\'s model: is not used. Exit 0 when a restoring set was found, 1 when none\n'
    + 'restores the check, 2 on bad input. Progress on stderr.',
  options: [
    ['--canary FILE', 'the canary file (*.canary.yaml) whose check regressed'],
    ['--check NAME', 'the check to bisect (default: the first check that fails on BAD)'],
    RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"check", "culprits": [{"tensor", "component", "layer"?, "group", "consumers", "restored", "value", "passes"}], "evaluations",\n'
    + '        "restores", "together", "expected", "good": {"model", "value", "message"}, "bad": {…}, "groups": [{"group", "component",\n'
    + '        "layer"?, "tensors", "restored", "value", "passes"}], "initializers", "differing", "seconds", "notes"}',
};

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
const num = (x: number) => (Number.isFinite(x) ? (Math.abs(x) >= 100 ? x.toFixed(1) : x.toFixed(4)) : String(x));
const rounded = <T extends Measured>(m: T): T => ({ ...m, value: round6(m.value), restored: round6(m.restored) });

export async function bisectCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, { canary: { type: 'string' }, check: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' } }, BISECT_USAGE);
  if (positionals.length !== 2) throw usageError('expected two models, GOOD.onnx and BAD.onnx', BISECT_USAGE);
  if (!values.canary) throw usageError('--canary FILE is required: the check to bisect is one of its checks', BISECT_USAGE);
  const runtime = cliRuntime(values.runtime);
  const ws = new NodeWorkspace(process.cwd(), runtime);
  const [goodPath, badPath] = positionals.map((p) => path.resolve(p)) as [string, string];
  const good = openModelVariants(goodPath, runtime);
  const bad = openModelVariants(badPath, runtime);
  const report = (line: string) => process.stderr.write(`circuitlens bisect: ${line}\n`);
  const r = await bisect(ws, path.resolve(values.canary), good, bad, { check: values.check, report });
  if (values.json) {
    out(JSON.stringify({
      check: r.check, culprits: r.culprits.map(rounded), evaluations: r.evaluations, restores: r.restores,
      ...(r.together ? { together: rounded(r.together) } : {}), expected: r.expected,
      good: { model: ws.display(goodPath), value: round6(r.good.value), message: r.good.message },
      bad: { model: ws.display(badPath), value: round6(r.bad.value), message: r.bad.message },
      groups: r.groups.map(rounded), initializers: r.initializers, differing: r.differing, seconds: round6(r.seconds), notes: BISECT_CAVEATS,
    }, null, 2));
  } else {
    out(`check "${r.check}" (${r.expected}): ${num(r.good.value)} on ${ws.display(goodPath)}, ${num(r.bad.value)} on ${ws.display(badPath)}`);
    out(`${r.differing} of ${r.initializers} initializers differ. Round 1, each (layer, component) group copied from GOOD alone:`);
    for (const g of r.groups) out(`  ${g.group.padEnd(26)} ${String(g.tensors.length).padStart(3)} tensor${g.tensors.length === 1 ? ' ' : 's'}  restores ${pct(g.restored).padStart(8)}${g.passes ? '  passes' : ''}`);
    if (r.restores) {
      out(`Culprits: restoring these ${r.culprits.length} tensor${r.culprits.length === 1 ? '' : 's'} makes the check pass (${num(r.together!.value)}); each alone restores:`);
      for (const c of r.culprits) out(`  ${c.tensor.padEnd(28)} ${c.group.padEnd(22)} ${pct(c.restored).padStart(8)}${c.passes ? '  passes alone' : ''}   read by ${c.consumers.slice(0, 2).join(', ')}`);
    } else out('No set of tensors copied from GOOD makes the check pass (not even all of them).');
    out(`${r.evaluations} evaluations in ${r.seconds.toFixed(1)} s, baselines included (one differing tensor at a time: ${r.differing} + 2).`);
    for (const n of BISECT_CAVEATS) out(`Note: ${n}.`);
  }
  await ws.dispose();
  return r.restores ? 0 : 1;
}
