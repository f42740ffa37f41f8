// The engine's int64 feeds (token ids, positions): written as 32-bit halves, checked against BigInt64Array.from.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';

test('token ids become int64 feeds without a BigInt per value, the same numbers as BigInt64Array.from', async () => {
  const { int64Of } = await import('../../core/engine/feeds');
  const rows = [[0, 1, 216, 2 ** 31 - 1], [-1, -(2 ** 31) + 1, 5, 50256]];
  assert.deepEqual([...int64Of(rows, 8)], [...BigInt64Array.from(rows.flat(), (v) => BigInt(v))]);
  // Values beyond 32 bits take the BigInt path.
  assert.deepEqual([...int64Of([[2 ** 40, 3]], 2)], [2n ** 40n, 3n]);
  assert.throws(() => int64Of([[1.5]], 1), RangeError);
});
