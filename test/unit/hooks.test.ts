// Hook names (DESIGN §2): built from one table of kinds with their shapes.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { allHookNames, HOOKS, hookName, hookShape, parseHookName, selectHooks, type HookKind } from '../../core/hooks';

test('hook names and shapes are those of DESIGN §2', () => {
  const want: Record<HookKind, [string, string[]]> = {
    embed: ['hook_embed', ['T', 'D']],
    pos_embed: ['hook_pos_embed', ['T', 'D']],
    resid_pre: ['blocks.3.hook_resid_pre', ['T', 'D']],
    pattern: ['blocks.3.attn.hook_pattern', ['H', 'T', 'T']],
    z: ['blocks.3.attn.hook_z', ['T', 'H', 'Dh']],
    attn_out: ['blocks.3.hook_attn_out', ['T', 'D']],
    mlp_out: ['blocks.3.hook_mlp_out', ['T', 'D']],
    resid_post: ['blocks.3.hook_resid_post', ['T', 'D']],
    ln_final: ['ln_final.hook_normalized', ['T', 'D']],
    logits: ['logits', ['T', 'V']],
  };
  assert.deepEqual(Object.keys(HOOKS).sort(), Object.keys(want).sort());
  for (const [kind, [name, shape]] of Object.entries(want) as [HookKind, [string, string[]]][]) {
    assert.equal(hookName(kind, 3), name);
    assert.deepEqual([...HOOKS[kind].shape], shape, kind);
    const parsed = parseHookName(name);
    assert.deepEqual(parsed, 'block' in HOOKS[kind] ? { kind, layer: 3 } : { kind });
  }
  const sizes = { T: 5, D: 64, H: 4, Dh: 16, V: 100 };
  assert.deepEqual(hookShape('z', sizes), [5, 4, 16]);
  assert.deepEqual(hookShape('pattern', sizes, 2), [2, 4, 5, 5], 'batch first in the engine');
  assert.deepEqual(hookShape('logits', sizes), [5, 100]);
});

test('parseHookName refuses what is not a hook', () => {
  for (const s of ['blocks.x.hook_z', 'blocks.0.hook_z', 'blocks.0.attn.hook_q', 'hook_embed ', 'blocks.0.', 'ln_final', 'blocks.-1.hook_mlp_out']) assert.equal(parseHookName(s), undefined, s);
  assert.deepEqual(parseHookName('blocks.12.hook_resid_post'), { kind: 'resid_post', layer: 12 });
});

test('allHookNames: forward order, positional embeddings only when present', () => {
  assert.deepEqual(allHookNames(1, true), [
    'hook_embed', 'hook_pos_embed', 'blocks.0.hook_resid_pre', 'blocks.0.attn.hook_pattern', 'blocks.0.attn.hook_z',
    'blocks.0.hook_attn_out', 'blocks.0.hook_mlp_out', 'blocks.0.hook_resid_post', 'ln_final.hook_normalized', 'logits',
  ]);
  const two = allHookNames(2, false);
  assert.equal(two.length, 2 + 2 * 6 + 1);
  assert.ok(!two.includes('hook_pos_embed'));
  assert.equal(two.indexOf('blocks.1.hook_resid_pre'), two.indexOf('blocks.0.hook_resid_post') + 1);
  for (const h of two) assert.equal(hookName(parseHookName(h)!.kind, parseHookName(h)!.layer), h);
  assert.deepEqual(selectHooks(two, 'blocks.*.attn.hook_z'), ['blocks.0.attn.hook_z', 'blocks.1.attn.hook_z']);
  assert.throws(() => selectHooks(two, 'hook_pos_embed'), /matches no hook of this model/);
});
