import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ROOT } from '../helpers';

export interface CliResult { code: number; stdout: string; stderr: string }

/** Runs the built CLI (bin/circuitlens.js) as a user would, in the repository root. */
export function cli(args: string[], cwd = ROOT): CliResult {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'circuitlens.js'), ...args], { cwd, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Attention signatures of every head on a repeated sequence (traced through the CLI): the mean attention to
 * the previous token, and to the token after the earlier occurrence of the current one (induction). */
export function headSignatures(model: string): Map<string, { prev: number; induction: number }> {
  const r = cli(['trace', model, '--prompt', 'Mary walked garden red apple dog Mary walked garden red', '--hooks', '*hook_pattern', '--json']);
  const j = JSON.parse(r.stdout);
  const T = j.ids.length;
  const out = new Map<string, { prev: number; induction: number }>();
  for (const [hook, t] of Object.entries(j.activations) as [string, { shape: number[]; data: number[] }][]) {
    const layer = Number(/blocks\.(\d+)/.exec(hook)![1]);
    for (let h = 0; h < t.shape[0]!; h++) {
      let prev = 0, ind = 0;
      for (let q = 1; q < T; q++) prev += t.data[h * T * T + q * T + q - 1]! / (T - 1);
      // Second half, position q: the earlier occurrence of token q is at q-6; induction attends to q-5.
      for (let q = 6; q < T; q++) ind += t.data[h * T * T + q * T + q - 5]! / (T - 6);
      out.set(`a${layer}.h${h}`, { prev, induction: ind });
    }
  }
  return out;
}
