import { UserError } from './errors';

/** The axes of a hook's tensor (DESIGN §2): positions, d_model, heads, d_head, vocabulary. */
export type HookDim = 'T' | 'D' | 'H' | 'Dh' | 'V';

/**
 * Every hook point, declared once with its shape beside it (as TransformerLens declares its HookPoints): `name`
 * for hooks of the whole model, `block` for those of each layer L (`blocks.L.<block>`). Shapes are per prompt, as
 * the CLI's JSON gives them; the engine puts a batch axis first. Order is forward order: `allHookNames` follows it.
 */
export const HOOKS = {
  embed: { name: 'hook_embed', shape: ['T', 'D'] },
  pos_embed: { name: 'hook_pos_embed', shape: ['T', 'D'], optional: true },
  resid_pre: { block: 'hook_resid_pre', shape: ['T', 'D'] },
  pattern: { block: 'attn.hook_pattern', shape: ['H', 'T', 'T'] },
  /** Per-head output before the output projection. */
  z: { block: 'attn.hook_z', shape: ['T', 'H', 'Dh'] },
  attn_out: { block: 'hook_attn_out', shape: ['T', 'D'] },
  mlp_out: { block: 'hook_mlp_out', shape: ['T', 'D'] },
  resid_post: { block: 'hook_resid_post', shape: ['T', 'D'] },
  ln_final: { name: 'ln_final.hook_normalized', shape: ['T', 'D'] },
  logits: { name: 'logits', shape: ['T', 'V'] },
} as const satisfies Record<string, HookSpec>;

interface HookSpec { name?: string; block?: string; shape: readonly HookDim[]; optional?: boolean }

export type HookKind = keyof typeof HOOKS;
type Spec<K extends HookKind> = (typeof HOOKS)[K];
/** Kinds with one hook per layer, and kinds with one hook in the whole model. */
export type BlockHookKind = { [K in HookKind]: Spec<K> extends { block: string } ? K : never }[HookKind];
export type ModelHookKind = Exclude<HookKind, BlockHookKind>;

/** A TransformerLens hook name (DESIGN §2): `hook_embed`, `blocks.0.attn.hook_z`, `logits`, … */
export type StrictHookName = Spec<ModelHookKind>['name'] | `blocks.${number}.${Spec<BlockHookKind>['block']}`;

/**
 * Hook names as the engine and instrumentation key their maps. Plain strings there (a sidecar names hooks, tests
 * list them), so `StrictHookName` is opt-in for code that builds names; `hookName` returns the strict type.
 */
export type HookName = string;

const isBlock = (k: HookKind): k is BlockHookKind => 'block' in HOOKS[k];
const KINDS = Object.keys(HOOKS) as HookKind[];
const BY_NAME = new Map<string, ModelHookKind>(KINDS.filter((k) => !isBlock(k)).map((k) => [(HOOKS[k] as { name: string }).name, k as ModelHookKind]));
const BY_BLOCK = new Map<string, BlockHookKind>(KINDS.filter(isBlock).map((k) => [HOOKS[k].block, k]));
const BLOCK_HOOK = /^blocks\.(\d+)\.(.+)$/;

export function hookName(kind: ModelHookKind): StrictHookName;
export function hookName(kind: BlockHookKind, layer: number): StrictHookName;
export function hookName(kind: HookKind, layer?: number): StrictHookName;
export function hookName(kind: HookKind, layer?: number): StrictHookName {
  return isBlock(kind) ? `blocks.${layer as number}.${HOOKS[kind].block}` : (HOOKS[kind] as { name: Spec<ModelHookKind>['name'] }).name;
}

export function parseHookName(name: string): { kind: HookKind; layer?: number } | undefined {
  const whole = BY_NAME.get(name);
  if (whole) return { kind: whole };
  const m = BLOCK_HOOK.exec(name);
  const kind = m ? BY_BLOCK.get(m[2]!) : undefined;
  return kind ? { kind, layer: Number(m![1]) } : undefined;
}

/** The shape of a hook's tensor for a model's sizes and `T` positions; `batch` puts a batch axis first (the engine's). */
export function hookShape(kind: HookKind, sizes: Record<HookDim, number>, batch?: number): number[] {
  const dims = HOOKS[kind].shape.map((d) => sizes[d]);
  return batch === undefined ? dims : [batch, ...dims];
}

/** All hook names of a model in forward order (the table's, each layer's block hooks in turn). */
export function allHookNames(layers: number, hasPosEmbed: boolean): StrictHookName[] {
  const out: StrictHookName[] = [];
  const blocks = KINDS.filter(isBlock);
  for (const k of KINDS) {
    if (isBlock(k)) {
      if (k === blocks[0]) for (let l = 0; l < layers; l++) for (const b of blocks) out.push(hookName(b, l));
    } else if (hasPosEmbed || !('optional' in HOOKS[k])) {
      out.push(hookName(k));
    }
  }
  return out;
}

/** Glob over hook names, as Python's fnmatch: `*` matches any run of characters (dots too), `?` one; commas separate patterns. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function selectHooks(available: HookName[], globs: string): HookName[] {
  const patterns = globs.split(',').map((g) => g.trim()).filter(Boolean);
  const selected = new Set<HookName>();
  for (const p of patterns) {
    const re = globToRegExp(p);
    const hits = available.filter((h) => re.test(h));
    if (hits.length === 0) {
      throw new UserError(`--hooks "${p}" matches no hook of this model (hooks look like blocks.0.attn.hook_z; run \`circuitlens info MODEL\` to list them)`);
    }
    hits.forEach((h) => selected.add(h));
  }
  return available.filter((h) => selected.has(h));
}
