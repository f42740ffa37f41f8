// The pure parts of distributed weight variants: a point's job id (a hash of the context, the variant and the
// circuit: stable across reruns and key order, different when anything the result depends on differs) and the
// exact JSON points travel in (NaN, ±Infinity and −0 kept).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import { fromWire, toWire, type VariantWork } from '../../core/analysis/distributed/plan';
import { variantJobId } from '../../core/analysis/distributed/variants';

const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

test('variantJobId: deterministic, independent of key order, changed by the context, the variant and the circuit', () => {
  const circuit = { schemaVersion: 1, name: 'c', nodes: ['a0.h1' as const, 'm1' as const] };
  const prune: VariantWork = { kind: 'variant', variant: { kind: 'prune', strategy: 'magnitude', sparsity: 0.5 }, circuit };
  const id = variantJobId(hash, 'k1', prune);
  assert.match(id, /^cl-[0-9a-f]{32}-0-1$/);
  assert.equal(variantJobId(hash, 'k1', JSON.parse(JSON.stringify(prune))), id, 'through JSON');
  assert.equal(variantJobId(hash, 'k1', { circuit: { nodes: circuit.nodes, name: 'c', schemaVersion: 1 }, variant: { sparsity: 0.5, strategy: 'magnitude', kind: 'prune' }, kind: 'variant' }), id, 'key order');
  const others: [string, VariantWork][] = [
    ['k2', prune],
    ['k1', { ...prune, variant: { kind: 'prune', strategy: 'magnitude', sparsity: 0.7 } }],
    ['k1', { ...prune, variant: { kind: 'prune', strategy: 'layer-waves', sparsity: 0.5 } }],
    ['k1', { kind: 'variant', variant: prune.variant }],
    ['k1', { ...prune, circuit: { ...circuit, nodes: ['a0.h1'] } }],
  ];
  const ids = others.map(([k, w]) => variantJobId(hash, k, w));
  assert.equal(new Set([id, ...ids]).size, others.length + 1, 'each change gives another id');
  const q = (groupSize?: number, scope: 'all' | 'attn' = 'all'): VariantWork => ({ kind: 'variant', variant: { kind: 'quantize', quantize: { scheme: 'int4', ...(groupSize ? { groupSize } : {}) }, scope: { kind: scope } } });
  assert.equal(variantJobId(hash, 'k1', q()), variantJobId(hash, 'k1', { kind: 'variant', variant: { kind: 'quantize', quantize: { scheme: 'int4', groupSize: undefined }, scope: { kind: 'all' } } }), 'an absent group size is no group size');
  assert.equal(new Set([q(), q(32), q(128), q(undefined, 'attn')].map((w) => variantJobId(hash, 'k1', w))).size, 4);
});

test('toWire/fromWire: points keep every number exactly through JSON', () => {
  const point = { metric: NaN, kl: -0, big: Infinity, small: -Infinity, x: 0.1 + 0.2, tiny: 5e-324, byLayer: { 0: 0.25, shared: -0 }, list: [1, NaN, { y: -Infinity }], ok: true, name: 'm', none: null };
  const back = fromWire(JSON.parse(JSON.stringify(toWire(point)))) as typeof point;
  assert.deepEqual(back, point);
  assert.ok(Object.is(back.kl, -0) && Object.is(back.byLayer.shared, -0) && Number.isNaN(back.metric));
  assert.equal(back.x, 0.1 + 0.2);
  // Plain JSON would not: what the wire format is for.
  assert.notDeepEqual(JSON.parse(JSON.stringify(point)), point);
  // Strings and objects that merely look alike stay as they are.
  assert.deepEqual(fromWire({ $number: 'toString' }), { $number: 'toString' });
  assert.deepEqual(fromWire({ $number: 'NaN', other: 1 }), { $number: 'NaN', other: 1 });
});
