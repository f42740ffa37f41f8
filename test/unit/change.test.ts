import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { changeOf, changeScale } from '../../core/analysis/compare/change';

test('changes are judged on |score| against a tenth of the largest |score| on either checkpoint', () => {
  const scale = changeScale([0.5, -2, 0.1], [1, 0.3]);
  assert.equal(scale, 2);
  assert.equal(changeOf(0.1, 0.5, scale), 'gained');
  assert.equal(changeOf(-2, 0.3, scale), 'lost');
  assert.equal(changeOf(0.5, 0.6, scale), 'unchanged', 'within 0.2 of the scale');
  assert.equal(changeOf(0.5, -0.5, scale), 'unchanged', 'a sign flip of equal size is no change in importance');
  assert.equal(changeOf(0, 0, 0), 'unchanged');
});
