import { UserError } from './errors';

/** TransformerLens hook names (DESIGN §2). */
export type HookName = string;

export type HookKind = 'embed' | 'pos_embed' | 'resid_pre' | 'pattern' | 'z' | 'attn_out' | 'mlp_out' | 'resid_post' | 'ln_final' | 'logits';

/** The rank of each hook's tensor in the engine (batch first). */
export const HOOK_RANK: Record<HookKind, number> = {
  embed: 3, pos_embed: 3, resid_pre: 3, pattern: 4, z: 4, attn_out: 3, mlp_out: 3, resid_post: 3, ln_final: 3, logits: 3,
};

export function hookName(kind: HookKind, layer?: number): HookName {
  switch (kind) {
    case 'embed': return 'hook_embed';
    case 'pos_embed': return 'hook_pos_embed';
    case 'ln_final': return 'ln_final.hook_normalized';
    case 'logits': return 'logits';
    case 'pattern': return `blocks.${layer}.attn.hook_pattern`;
    case 'z': return `blocks.${layer}.attn.hook_z`;
    default: return `blocks.${layer}.hook_${kind}`;
  }
}

export function parseHookName(name: string): { kind: HookKind; layer?: number } | undefined {
  if (name === 'hook_embed') return { kind: 'embed' };
  if (name === 'hook_pos_embed') return { kind: 'pos_embed' };
  if (name === 'ln_final.hook_normalized') return { kind: 'ln_final' };
  if (name === 'logits') return { kind: 'logits' };
  const m = /^blocks\.(\d+)\.(attn\.hook_pattern|attn\.hook_z|hook_resid_pre|hook_attn_out|hook_mlp_out|hook_resid_post)$/.exec(name);
  if (!m) return undefined;
  const layer = Number(m[1]);
  const kind = ({ 'attn.hook_pattern': 'pattern', 'attn.hook_z': 'z', hook_resid_pre: 'resid_pre', hook_attn_out: 'attn_out', hook_mlp_out: 'mlp_out', hook_resid_post: 'resid_post' } as const)[m[2] as 'attn.hook_z'];
  return { kind, layer };
}

/** All hook names of a model in forward order. */
export function allHookNames(layers: number, hasPosEmbed: boolean): HookName[] {
  const out: HookName[] = ['hook_embed'];
  if (hasPosEmbed) out.push('hook_pos_embed');
  for (let l = 0; l < layers; l++) {
    for (const k of ['resid_pre', 'pattern', 'z', 'attn_out', 'mlp_out', 'resid_post'] as const) out.push(hookName(k, l));
  }
  out.push('ln_final.hook_normalized', 'logits');
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
