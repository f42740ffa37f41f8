import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { summarizeSweep, thresholdVerdict } from '../../core/analysis/sweep/sweep';
import { firstCrossing, percentileInterval, quantile, resampleMeans, seededRandom } from '../../core/analysis/sweep/stats';
import type { PromptScore } from '../../core/analysis/metrics';
import type { ResolvedPrompt } from '../../core/analysis/prompts';
import { parseBound, parseCanary } from '../../core/formats/canary';
import type { Diagnostic } from '../../core/formats/diagnostics';
import { parseSuite, sweepValueOf } from '../../core/formats/suite';
import { fill, placeholders } from '../../core/formats/template';

const at = (ds: Diagnostic[]) => ds.map((d) => `${d.line}:${d.col} ${d.message}`);

describe('template placeholders', () => {
  test('{VAR} and {repeat(VAR, "TEXT")} with either quote and escapes', () => {
    assert.deepEqual(placeholders(`{repeat(n, 'the ')}{A} {repeat( k , "a\\"b")}`).found, [
      { kind: 'var', name: 'A' }, { kind: 'repeat', name: 'n', text: 'the ' }, { kind: 'repeat', name: 'k', text: 'a"b' },
    ]);
    assert.equal(fill(`{repeat(n, 'the ')}{A}.`, { n: 3, A: 'Mary' }), 'the the the Mary.');
    assert.equal(fill(`{repeat(n, 'x')}|{n}`, { n: '0' }), '|0');
    assert.equal(fill('{B} stays', { A: 'a' }), '{B} stays');
    assert.throws(() => fill(`{repeat(n, 'x')}`, { n: 'two' }), /whole number/);
    assert.throws(() => fill(`{repeat(n, 'xx')}`, { n: 60_000 }), /limit is 100000/);
  });

  test('malformed calls say what to write', () => {
    assert.match(placeholders(`{rep(n, 'x')}`).error!, /unknown function rep\(\)/);
    assert.match(placeholders('{repeat(n, x)}').error!, /malformed: write \{repeat\(VAR, "TEXT"\)\}/);
    assert.match(placeholders(`{repeat(n, 'x'`).error!, /is not closed/);
    assert.equal(placeholders('a {b c} d').error, undefined, 'braces that are no placeholder stay text, as before');
  });
});

describe('suites with sweep:', () => {
  const suite = [
    'name: s',
    'sweep:',
    '  n: [0, 2, 5]',
    'templates:',
    `  - pattern: "{repeat(n, 'the ')}{A} b {A}"`,
    '    answer: " b"',
    '    foil: " {A}"',
    '    tags: [task]',
    '    variables: {A: [x, y]}',
    '  - pattern: "c d c"',
    '    answer: " d"',
    '    foil: " c"',
    '    variables: {Z: [z]}',
    'prompts:',
    '  - ids: [1, 2, 1]',
    '    answer: 2',
    '    foil: 1',
    '    tags: [n=7]',
  ].join('\n');

  test('templates that use a swept variable expand once per value, each prompt tagged with it', () => {
    const { suite: s, diagnostics } = parseSuite('s.suite.yaml', suite);
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(s!.sweep, { n: [0, 2, 5] });
    const texts = s!.prompts.map((p) => `${p.text ?? p.ids}|${p.tags.join(',')}`);
    assert.deepEqual(texts, [
      '1,2,1|n=7',
      'x b x|task,n=0', 'the the x b x|task,n=2', 'the the the the the x b x|task,n=5',
      'y b y|task,n=0', 'the the y b y|task,n=2', 'the the the the the y b y|task,n=5',
      'c d c|',
    ]);
    assert.deepEqual(s!.prompts.map((p) => sweepValueOf(p.tags, 'n')), [7, 0, 2, 5, 0, 2, 5, undefined]);
  });

  test('a suite without sweep: parses as before', () => {
    const { suite: s } = parseSuite('s.suite.yaml', 'name: s\nprompts:\n  - text: "a b a"\n    answer: " b"\n    foil: " a"\n');
    assert.equal(s!.sweep, undefined);
  });

  test('mistakes are reported at their lines', () => {
    const { suite: s, diagnostics } = parseSuite('s.suite.yaml', [
      'name: s',
      'sweep:',
      '  n: [0, 1.5]',
      '  m: [3]',
      'templates:',
      `  - pattern: "{repeat(k, 'x')} a"`,
      '    answer: " a"',
      '    foil: " b"',
      '    variables: {n: [q]}',
      `  - pattern: "{again(n, 'x')} a"`,
      '    answer: " a"',
      '    foil: " b"',
      'prompts:',
      '  - text: "a"',
      '    answer: " a"',
      '    foil: " a"',
      '    tags: [n=many]',
    ].join('\n'));
    assert.equal(s, undefined);
    assert.deepEqual(at(diagnostics), ['3:10 sweep.n[2] must be integer', '4:6 sweep.m must NOT have fewer than 2 items']);
    const second = parseSuite('s.suite.yaml', [
      'name: s',
      'sweep:',
      '  n: [0, 1]',
      'templates:',
      `  - pattern: "{repeat(k, 'x')} a"`,
      '    answer: " a"',
      '    foil: " b"',
      '    variables: {n: [q]}',
      `  - pattern: "{again(n, 'x')} a"`,
      '    answer: " a"',
      '    foil: " b"',
      'prompts:',
      '  - text: "a"',
      '    answer: " a"',
      '    foil: " a"',
      '    tags: [n=many]',
    ].join('\n'));
    assert.equal(second.suite, undefined);
    assert.deepEqual(at(second.diagnostics).sort(), [
      '16:12 tag "n=many" gives the swept variable n a value that is not a number',
      '5:14 placeholder {k} has no entry under variables or sweep (variables: n; sweep: n)',
      '8:17 n is a swept variable (under sweep:); a template cannot give it values too',
      `9:14 unknown function again() in {again(n, 'x')} (templates know {repeat(VAR, "TEXT")})`,
    ]);
  });

  test('repeat of a template variable needs whole numbers', () => {
    const { diagnostics } = parseSuite('s.suite.yaml', `name: s\ntemplates:\n  - pattern: "{repeat(k, 'x')} a"\n    answer: " a"\n    foil: " b"\n    variables: {k: ["2", two]}\n`);
    assert.deepEqual(at(diagnostics)[0], `6:20 repeat needs a whole number of times, got "two" (in pattern's repeat(k, ...))`);
  });
});

describe('bootstrap and interpolation', () => {
  test('quantiles interpolate like numpy (type 7)', () => {
    const s = Float64Array.from([3, 1, 4, 1, 5, 9, 2, 6]).sort();
    // numpy.quantile([3, 1, 4, 1, 5, 9, 2, 6], q)
    assert.equal(quantile(s, 0.025), 1.0);
    assert.ok(Math.abs(quantile(s, 0.975) - 8.475) < 1e-12);
    assert.equal(quantile(s, 0.5), 3.5);
    assert.ok(Math.abs(quantile(s, 0.3) - 2.1) < 1e-12);
    assert.deepEqual(percentileInterval([3, 1, 4, 1, 5, 9, 2, 6], 0.95).map((x) => Number(x.toFixed(9))), [1, 8.475]);
  });

  test('the seeded generator repeats, is uniform, and resampled means centre on the mean', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const xs = Array.from({ length: 20000 }, () => a());
    assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b()));
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    assert.ok(Math.abs(xs.reduce((s, x) => s + x, 0) / xs.length - 0.5) < 0.01);
    const col = Array.from({ length: 50 }, (_, i) => (i % 5 === 0 ? 1 : 0)); // mean 0.2
    const [m] = resampleMeans([col], 4000, seededRandom(1));
    const mean = m!.reduce((s, x) => s + x, 0) / m!.length;
    assert.ok(Math.abs(mean - 0.2) < 0.005, `${mean}`);
    // The bootstrap standard error of a proportion: sqrt(p(1−p)/n) = 0.0566.
    const sd = Math.sqrt(m!.reduce((s, x) => s + (x - mean) ** 2, 0) / m!.length);
    assert.ok(Math.abs(sd - Math.sqrt(0.2 * 0.8 / 50)) < 0.004, `${sd}`);
    const [lo, hi] = percentileInterval(m!, 0.95);
    assert.ok(lo! < 0.2 && hi! > 0.2 && hi! - lo! > 0.15 && hi! - lo! < 0.3);
    // Constant rows give a point interval.
    assert.deepEqual(percentileInterval(resampleMeans([[1, 1, 1]], 100, seededRandom(0))[0]!, 0.95), [1, 1]);
  });

  test('first crossing: linear interpolation, direction, ties at the level, none', () => {
    assert.deepEqual(firstCrossing([0, 4, 8], [1, 0.75, 0.25], 0.5), { value: 6, direction: 'falls', between: [4, 8] });
    const up = firstCrossing([0, 10], [0.2, 0.7], 0.5)!;
    assert.ok(Math.abs(up.value - 6) < 1e-12 && up.direction === 'rises');
    assert.deepEqual(firstCrossing([0, 2, 4], [1, 0.5, 0.1], 0.5), { value: 2, direction: 'falls', between: [2, 4] }, 'at the level counts as above');
    assert.deepEqual(firstCrossing([0, 2, 4, 6], [1, 0.2, 0.9, 0], 0.5)?.between, [0, 2], 'the first of several');
    assert.equal(firstCrossing([0, 2], [1, 0.6], 0.5), null);
    assert.equal(firstCrossing([0, 2], [0.1, 0.2], 0.5), null);
  });

  const prompt = (n: number): ResolvedPrompt => ({ index: 0, text: '', ids: [1], answer: 1, tags: ['task', `n=${n}`] });
  const score = (correct: boolean, d: number): PromptScore => ({ logitDiff: d, prob: 0, correct, kl: 0, top1: correct ? 1 : 2 });
  // Accuracy 1 at n=0, 0.75 at n=4, 0.25 at n=8: n* = 6.
  const rows: [number, boolean, number][] = [[0, true, 3], [0, true, 5], [0, true, 4], [0, true, 4], [4, true, 2], [4, true, 2], [4, true, 2], [4, false, -2],
    [8, true, 1], [8, false, -1], [8, false, -1], [8, false, -3]];

  test('summarizeSweep groups by value and finds n*', () => {
    const r = summarizeSweep(rows.map(([n]) => prompt(n)), rows.map(([, c, d]) => score(c, d)), 'n', 'logit_diff', { resamples: 500 });
    assert.deepEqual(r.points.map((p) => [p.value, p.prompts, p.metric, p.accuracy]), [[0, 4, 4, 1], [4, 4, 1, 0.75], [8, 4, -1, 0.25]]);
    assert.deepEqual(r.points[0]!.ci!.accuracy, [1, 1]);
    const [lo, hi] = r.points[0]!.ci!.metric;
    assert.ok(lo >= 3 && lo < 4 && hi > 4 && hi <= 5, `${lo} ${hi}`);
    assert.equal(r.critical!.value, 6);
    assert.equal(r.critical!.direction, 'falls');
    // A resample may keep n=4 above the level or not: n* moves between 0 and 8, around 6.
    assert.ok(r.critical!.ci![0] >= 0 && r.critical!.ci![0] < 6 && r.critical!.ci![1] >= 6 && r.critical!.ci![1] <= 8, `${r.critical!.ci}`);
    assert.deepEqual(r.bootstrap, { resamples: 500, confidence: 0.95, seed: 0 });
    const again = summarizeSweep(rows.map(([n]) => prompt(n)), rows.map(([, c, d]) => score(c, d)), 'n', 'logit_diff', { resamples: 500 });
    assert.deepEqual(again, r, 'seeded: the same intervals every run');
    assert.equal(summarizeSweep(rows.map(([n]) => prompt(n)), rows.map(([, c, d]) => score(c, d)), 'n', 'logit_diff', { level: 0.8, resamples: 0 }).critical!.value.toFixed(12), (0 + ((1 - 0.8) / (1 - 0.75)) * 4).toFixed(12));
  });

  test('threshold verdicts: on n*, and on the bounds a sweep without a crossing gives', () => {
    const pts = (accs: number[]) => accs.map((accuracy, i) => ({ value: i * 4, prompts: 1, metric: 0, accuracy, ci: null }));
    const crossing = { variable: 'n', level: 0.5, points: pts([1, 0.75, 0.25]), critical: { value: 6, direction: 'falls' as const, between: [4, 8] as [number, number], level: 0.5, ci: null, resolved: 1 } };
    assert.equal(thresholdVerdict(crossing, parseBound('>= 6')).pass, true);
    assert.equal(thresholdVerdict(crossing, parseBound('> 6')).pass, false);
    assert.match(thresholdVerdict(crossing, parseBound('>= 7')).message, /n\* 6 \(accuracy falls below 0.5 between n=4 and n=8\) is not >= 7/);
    const above = { variable: 'n', level: 0.5, points: pts([1, 0.9, 0.6]), critical: null };
    assert.equal(thresholdVerdict(above, parseBound('>= 8')).pass, true, 'n* > 8 >= 8');
    assert.equal(thresholdVerdict(above, parseBound('>= 9')).pass, false, 'cannot tell beyond the sweep');
    assert.equal(thresholdVerdict(above, parseBound('<= 100')).pass, false);
    const below = { variable: 'n', level: 0.5, points: pts([0.2, 0.1, 0]), critical: null };
    assert.equal(thresholdVerdict(below, parseBound('<= 0')).pass, true);
    assert.equal(thresholdVerdict(below, parseBound('>= 0')).pass, false);
  });
});

describe('canary threshold checks', () => {
  const canary = (check: string) => parseCanary('c.canary.yaml', `model: m.onnx\nsuite: s.suite.yaml\nchecks:\n  - name: t\n${check}\n`);
  test('parse with the level defaulting to 0.5', () => {
    const { canary: c, diagnostics } = canary('    threshold: {variable: n, ">=": 12}');
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(c!.checks[0]!.assertion, { quantity: 'threshold', variable: 'n', at: 0.5, bound: { op: '>=', value: 12, text: '>= 12' } });
    assert.equal(canary('    threshold: {variable: n, at: 0.9, "<": 3}').canary!.checks[0]!.assertion.quantity, 'threshold');
  });
  test('mistakes at their lines', () => {
    assert.deepEqual(at(canary('    threshold: {variable: n, at: 0.5}').diagnostics), ['5:16 checks[1].threshold needs exactly one of: >=, <=, >, <, ==']);
    assert.deepEqual(at(canary('    threshold: {variable: n, ">=": 1, "<": 3}').diagnostics), ['5:16 checks[1].threshold needs exactly one of: >=, <=, >, <, ==']);
    assert.deepEqual(at(canary('    threshold: {variable: n, at: 2, ">=": 1}').diagnostics), ['5:34 checks[1].threshold.at must be <= 1']);
    assert.deepEqual(at(canary('    circuit: c.circuit.json\n    threshold: {variable: n, ">=": 1}').diagnostics), ['6:5 with a circuit, assert faithfulness, necessity, faithfulness_drop or jaccard (not threshold)']);
  });
});
