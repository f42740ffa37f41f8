// The pure parts of redundancy and relate (no model): Jaccard, hubs by membership, pairs, and the canary file
// format's backup/interaction and relate/jaccard checks.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { allPairs } from '../../core/analysis/redundancy/redundancy';
import { jaccard, membershipHubs, most } from '../../core/analysis/relate/relate';
import { parseCanary } from '../../core/formats/canary';

const canary = (checks: string) => parseCanary('x.canary.yaml', `model: m.onnx\nsuite: s.suite.yaml\nchecks:\n${checks}`);

describe('relations', () => {
  test('jaccard: shared over either; two empty sets are equal', () => {
    assert.equal(jaccard(['a0.h0', 'a0.h1', 'm0'], ['a0.h1', 'm0', 'm1']), 0.5);
    assert.equal(jaccard([], []), 1);
    assert.equal(jaccard(['m0'], []), 0);
    assert.equal(jaccard(['m0', 'm0'], ['m0']), 1);
  });

  test('hubs by membership: in more than half of two or more circuits', () => {
    assert.equal(most(2), 2);
    assert.equal(most(3), 2);
    assert.equal(most(4), 3);
    assert.deepEqual([...membershipHubs([{ nodes: ['m0', 'a0.h0'] }])], []);
    assert.deepEqual([...membershipHubs([{ nodes: ['m0', 'a0.h0'] }, { nodes: ['m0'] }])], [['m0', 2]]);
    const four = membershipHubs([{ nodes: ['m0', 'a1.h1'] }, { nodes: ['m0', 'a1.h1'] }, { nodes: ['m0'] }, { nodes: ['a1.h2'] }]);
    assert.deepEqual([...four], [['m0', 3]]);
  });

  test('allPairs: every unordered pair once', () => {
    assert.deepEqual(allPairs(['a0.h0', 'a0.h1', 'm0']), [['a0.h0', 'a0.h1'], ['a0.h0', 'm0'], ['a0.h1', 'm0']]);
  });

  test('canary: backup/interaction and relate/jaccard parse; misuse is an error at its line', () => {
    const ok = canary('  - {name: b, backup: [a0.h2, a0.h3], metric: accuracy, interaction: ">= 0.2"}\n  - {name: j, circuit: a.circuit.json, relate: b.circuit.json, jaccard: ">= 0.5"}\n');
    assert.deepEqual(ok.diagnostics, []);
    assert.deepEqual(ok.canary!.checks.map((c) => c.assertion.quantity), ['interaction', 'jaccard']);
    assert.deepEqual(ok.canary!.checks[0]!.backup, ['a0.h2', 'a0.h3']);
    assert.equal(ok.canary!.checks[1]!.relate, 'b.circuit.json');
    const bad = (checks: string, re: RegExp) => {
      const r = canary(checks);
      assert.equal(r.canary, undefined);
      assert.ok(r.diagnostics.some((d) => re.test(d.message) && d.line >= 4), JSON.stringify(r.diagnostics));
    };
    bad('  - {name: x, backup: [a0.h2, a0.h3, m0], interaction: ">= 0.2"}\n', /./);
    bad('  - {name: x, interaction: ">= 0.2"}\n', /add backup: \[a1\.h0, a1\.h1\]/);
    bad('  - {name: x, backup: [a0.h2, a0.h3], accuracy: ">= 0.2"}\n', /a backup check asserts interaction/);
    // jaccard without relate compares the circuit with its re-discovery on the model (compare's check): no error.
    assert.deepEqual(canary('  - {name: x, circuit: a.circuit.json, jaccard: ">= 0.5"}\n').diagnostics, []);
    bad('  - {name: x, relate: b.circuit.json, jaccard: ">= 0.5"}\n', /jaccard is measured for a circuit: add circuit/);
    bad('  - {name: x, relate: b.circuit.json, accuracy: ">= 0.5"}\n', /a relate check asserts jaccard/);
  });
});
