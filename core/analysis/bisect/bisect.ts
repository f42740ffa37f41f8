// Bisecting a regression to its tensors: a canary check passes on GOOD and fails on BAD (the same architecture,
// other weights). Candidate models are BAD with some initializers copied from GOOD; the check is re-run on each.
// Round 1 restores one (layer, component) group at a time; then a minimal set of groups that makes the check pass
// is found (the most restoring, then the most changed, preferred), within it a minimal set of tensors
// (minimal-set.ts), and each tensor of that set is measured alone for how much it restores.
// A heuristic: restoring is assumed monotone, and a tensor that matters only together with another can hide.
// Every candidate is a model of its own: the engine batches prompts within a check, never different weights in
// one call, so candidates run one after another and the number of evaluations is the cost reported.
import type { Engine } from '../../engine/engine';
import { UserError } from '../../errors';
import type { CanaryCheck } from '../../formats/canary';
import type { HooksSidecar } from '../../onnx/detect';
import type { OnnxModel, TensorProto } from '../../onnx/model';
import { COMPONENT_ORDER, describeRole, weightComponents, type WeightComponent, type WeightRole } from '../../onnx/weight-components';
import { differingInitializers, relativeChange } from '../../onnx/weight-swap';
import type { Workspace } from '../../workspace';
import { measureCheck, openCanary, type OpenedCanary } from '../verify/canary';
import type { CheckMeasure } from '../verify/check';
import { maxEvaluations, minimalPassingSet } from './minimal-set';

/** One side of the comparison (core/nodejs/model-variants.ts makes these from files). */
export interface BisectModel {
  path: string;
  /** The decoded model with every initializer's bytes in memory. */
  model: OnnxModel;
  hooks?: { sidecar?: HooksSidecar; sidecarPath?: string };
  /** An engine on this model with the given initializers put in place of its own; released by the caller. */
  engineWith(replace: readonly TensorProto[]): Promise<Engine>;
}

export interface BisectOptions {
  /** The check to bisect (default: the first check that fails on BAD). */
  check?: string;
  /** Progress lines (evaluations done, rate, estimate). */
  report?: (line: string) => void;
  signal?: AbortSignal;
}

/** A check measured on one candidate; `restored`: the share of the BAD → GOOD gap of the check's value recovered. */
export interface Measured { value: number; passes: boolean; restored: number }

export interface BisectGroup extends Measured {
  group: string;
  /** ‖BAD − GOOD‖ / ‖GOOD‖ over the group's differing tensors (float32 ones; undefined otherwise). */
  change?: number;
  component: WeightComponent;
  layer?: number;
  /** The group's tensors that differ between GOOD and BAD (only those are copied). */
  tensors: string[];
}

export interface Culprit extends Measured {
  tensor: string;
  component: WeightComponent;
  layer?: number;
  group: string;
  /** The nodes that read it (exports rename weights; the node names say where they sit). */
  consumers: string[];
  /** ‖BAD − GOOD‖ / ‖GOOD‖ of this tensor (float32; undefined otherwise). */
  change?: number;
}

export interface BisectResult {
  check: string;
  /** The check's line in the canary file. */
  line: number;
  /** What the check asserts, e.g. `accuracy >= 0.95`; `value` below is that quantity (top1: the logit margin). */
  expected: string;
  good: { value: number; message: string };
  bad: { value: number; message: string };
  /** Most restoring first. Restored together they make the check pass when `restores` is true. */
  culprits: Culprit[];
  restores: boolean;
  /** The culprits restored together. */
  together?: Measured;
  groups: BisectGroup[];
  /** Candidate models run (each: one model built, the check's prompts run on it), the baselines included. */
  evaluations: number;
  initializers: number;
  differing: number;
  seconds: number;
}

/** Said with every result: what the numbers are and are not. */
export const BISECT_CAVEATS = [
  'heuristic: groups and tensors are narrowed assuming that restoring more never breaks a passing check; a tensor that matters only together with another can hide behind it',
  'every candidate is a model of its own, so candidates run one at a time (the engine batches a check\'s prompts, not different weights)',
];

export async function bisect(ws: Workspace, canaryFile: string, good: BisectModel, bad: BisectModel, opts: BisectOptions = {}): Promise<BisectResult> {
  const t0 = Date.now();
  const opened = await openCanary(ws, canaryFile);
  const [goodName, badName] = [ws.display(good.path), ws.display(bad.path)];
  const differing = differingInitializers(good.model, bad.model, goodName, badName);
  if (differing.length === 0) throw new UserError(`${goodName} and ${badName} hold the same weights: no tensor can explain a difference between them`);
  const roles = new Map(weightComponents(bad.model, badName, bad.hooks).map((r) => [r.tensor, r]));
  const goodTensors = new Map(good.model.graph!.initializer.map((t) => [t.name, t]));
  const badTensors = new Map(bad.model.graph!.initializer.map((t) => [t.name, t]));
  const change = (names: readonly string[]) => relativeChange(names.map((n) => goodTensors.get(n)!), names.map((n) => badTensors.get(n)!));

  let evaluations = 0;
  const measure = async (engine: Engine, check: CanaryCheck): Promise<CheckMeasure> => {
    evaluations++;
    try {
      return await measureCheck(ws, opened, check, engine, opts.signal);
    } finally {
      await engine.release();
    }
  };
  const { check, bad: badM } = await chooseCheck(opened, opts.check, badName, async (c) => measure(await bad.engineWith([]), c));
  const goodM = await measure(await good.engineWith([]), check);
  if (!goodM.pass) {
    throw new UserError(`check "${check.name}" fails on ${goodName} too (${goodM.message}); bisect looks for the tensors that break a check the good model passes`, ws.display(opened.file), check.line, check.col);
  }
  const gap = goodM.value - badM.value;
  const measured = (m: CheckMeasure): Measured => ({ value: m.value, passes: m.pass, restored: gap !== 0 && Number.isFinite(gap) ? (m.value - badM.value) / gap : m.pass ? 1 : 0 });

  const cache = new Map<string, Promise<Measured>>();
  const restoring = (names: readonly string[]): Promise<Measured> => {
    const key = [...names].sort().join('\n');
    let m = cache.get(key);
    if (!m) {
      m = bad.engineWith(names.map((n) => goodTensors.get(n)!)).then((e) => measure(e, check)).then(measured);
      cache.set(key, m);
    }
    return m;
  };
  const progress = makeProgress(opts.report, t0, () => evaluations);

  // Round 1: each (layer, component) group restored alone.
  const groups = groupTensors(differing, roles);
  const groupResults: BisectGroup[] = [];
  for (const g of groups) {
    const c = change(g.tensors);
    groupResults.push({ ...g, ...(c !== undefined ? { change: c } : {}), ...(await restoring(g.tensors)) });
    progress(`round 1 (one group at a time): ${groupResults.length}/${groups.length} groups`, groups.length - groupResults.length);
  }

  // The groups that matter: the most restoring one that passes alone; else the groups in order of how much they
  // restore (ties: how much their weights changed) are restored 1, 2, 4, … at a time until the check passes (all
  // of them: GOOD's weights in BAD's graph), and a minimal set of groups is found among those.
  const byRestored = [...groupResults].sort((a, b) => Math.round(100 * b.restored) - Math.round(100 * a.restored) || (b.change ?? 0) - (a.change ?? 0));
  let selected: BisectGroup[];
  const passingAlone = byRestored.find((g) => g.passes);
  /** Tensors known to make the check pass: the fallback when narrowing meets a non-monotone case. */
  let known: string[] = [];
  if (passingAlone) { selected = [passingAlone]; known = passingAlone.tensors; } else {
    let prefix = byRestored;
    for (let size = 2; ; size *= 2) {
      prefix = byRestored.slice(0, size);
      const m = await restoring(prefix.flatMap((g) => g.tensors));
      progress(`restoring the ${prefix.length} most restoring groups together`, size >= byRestored.length ? 0 : Math.ceil(Math.log2(byRestored.length / size)));
      if (m.passes) break;
      if (size >= byRestored.length) return finish([], false, m);
    }
    known = prefix.flatMap((g) => g.tensors);
    const groupBound = maxEvaluations(prefix.length);
    let groupSteps = 0;
    selected = await minimalPassingSet(prefix, async (gs) => {
      const m = await restoring(gs.flatMap((g) => g.tensors));
      progress(`narrowing ${prefix.length} groups`, groupBound - ++groupSteps);
      return m.passes;
    });
  }

  // Within the groups that matter: a minimal set of tensors, the most changed tried first.
  const changes = new Map(selected.flatMap((g) => g.tensors).map((n) => [n, change([n]) ?? 0]));
  const candidates = [...changes.keys()].sort((a, b) => changes.get(b)! - changes.get(a)!);
  const bound = maxEvaluations(candidates.length);
  let step = 0;
  let found = await minimalPassingSet(candidates, async (names) => {
    const m = await restoring(names);
    progress(`narrowing ${candidates.length} tensors of ${selected.map((g) => g.group).join(', ')}`, bound - ++step);
    return m.passes;
  });
  let together = await restoring(found);
  // Restoring was not monotone here: fall back to the selected groups' tensors, else to a set seen passing.
  for (const fallback of [candidates, known]) {
    if (together.passes) break;
    found = fallback;
    together = await restoring(found);
  }
  const culprits: Culprit[] = [];
  for (const name of found) {
    const role = roles.get(name)!;
    const m = await restoring([name]);
    const c = change([name]);
    culprits.push({ tensor: name, component: role.component, ...(role.layer !== undefined ? { layer: role.layer } : {}), group: groupName(role), consumers: role.consumers, ...(c !== undefined ? { change: c } : {}), ...m });
    progress(`measuring each culprit alone: ${culprits.length}/${found.length}`, found.length - culprits.length);
  }
  culprits.sort((a, b) => b.restored - a.restored);
  return finish(culprits, together.passes, together);

  function finish(cs: Culprit[], restores: boolean, t: Measured | undefined): BisectResult {
    return {
      check: check.name, line: check.line, expected: expectedText(check),
      good: { value: goodM.value, message: goodM.message }, bad: { value: badM.value, message: badM.message },
      culprits: cs, restores, ...(t ? { together: t } : {}), groups: groupResults, evaluations,
      initializers: bad.model.graph!.initializer.length, differing: differing.length, seconds: (Date.now() - t0) / 1000,
    };
  }
}

/** The named check, or the first that fails on BAD; its measurement on BAD. */
async function chooseCheck(opened: OpenedCanary, name: string | undefined, badName: string, onBad: (c: CanaryCheck) => Promise<CheckMeasure>): Promise<{ check: CanaryCheck; bad: CheckMeasure }> {
  const checks = opened.canary.checks;
  if (name !== undefined) {
    const check = checks.find((c) => c.name === name);
    if (!check) throw new UserError(`${opened.file} has no check named "${name}" (checks: ${checks.map((c) => `"${c.name}"`).join(', ')})`);
    const m = await onBad(check);
    if (m.pass) throw new UserError(`check "${name}" passes on ${badName} (${m.message}): there is no regression to bisect`, opened.file, check.line, check.col);
    return { check, bad: m };
  }
  for (const check of checks) {
    const m = await onBad(check);
    if (!m.pass) return { check, bad: m };
  }
  throw new UserError(`every check of ${opened.file} passes on ${badName}: there is no regression to bisect`);
}

function expectedText(c: CanaryCheck): string {
  const a = c.assertion;
  return a.quantity === 'top1' ? `top1 = ${JSON.stringify(a.expected)}` : `${a.quantity} ${a.bound.text}`;
}

const groupName = (r: WeightRole): string => describeRole(r.component, r.layer, r.layers);

/** The differing tensors by (layer, component), in model order: embedding, each layer's norm, attention, MLP, the rest. */
function groupTensors(differing: string[], roles: Map<string, WeightRole>): { group: string; component: WeightComponent; layer?: number; tensors: string[] }[] {
  const groups = new Map<string, { group: string; component: WeightComponent; layer?: number; tensors: string[]; rank: number }>();
  for (const name of differing) {
    const r = roles.get(name)!;
    const key = groupName(r);
    const inLayer = r.layer !== undefined ? 1 + r.layer : r.component === 'embedding' ? 0 : 1e6;
    const rank = inLayer * 10 + COMPONENT_ORDER.indexOf(r.component);
    const g = groups.get(key) ?? { group: key, component: r.component, ...(r.layer !== undefined ? { layer: r.layer } : {}), tensors: [], rank };
    g.tensors.push(name);
    groups.set(key, g);
  }
  return [...groups.values()].sort((a, b) => a.rank - b.rank).map(({ rank: _, ...g }) => g);
}

/** A progress line: the phase, evaluations so far, their rate, and an estimate from the evaluations left at most. */
function makeProgress(report: ((line: string) => void) | undefined, t0: number, evaluations: () => number): (phase: string, left: number) => void {
  return (phase, left) => {
    if (!report) return;
    const s = (Date.now() - t0) / 1000;
    const rate = evaluations() / Math.max(s, 1e-3);
    const eta = left > 0 ? `, ≤ ${left} more (≤ ${Math.ceil(left / rate)} s)` : '';
    report(`${phase} — ${evaluations()} evaluations in ${s.toFixed(1)} s (${rate.toFixed(1)}/s)${eta}`);
  };
}
