// The scopes a sensitivity run asks for, as written on the command line (`--scope attn,mlp --scope circuit:C.json`)
// or picked in the editor: parsed here once, their circuit files read by the front end.
import { UserError } from '../../errors';
import { SCOPE_KINDS, type ScopeKind } from '../../onnx/weight-scope';

/** A scope as asked for: `circuit`/`outside` with the circuit file it names (undefined: the --circuit one). */
export interface ScopeRequest { kind: ScopeKind; circuitFile?: string }

/** The rows run when no --scope is given: all, attn, mlp, embed, and circuit/outside with a circuit. */
export function defaultScopes(withCircuit: boolean): ScopeRequest[] {
  return (withCircuit ? ['all', 'attn', 'mlp', 'embed', 'circuit', 'outside'] as const : ['all', 'attn', 'mlp', 'embed'] as const).map((kind) => ({ kind }));
}

/** `--scope` values (each may be comma-listed), in order, repeats dropped. */
export function parseScopes(values: readonly string[], withCircuit: boolean): ScopeRequest[] {
  if (!values.length) return defaultScopes(withCircuit);
  const out: ScopeRequest[] = [];
  const seen = new Set<string>();
  for (const item of values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter(Boolean)) {
    const at = item.indexOf(':');
    const kind = (at < 0 ? item : item.slice(0, at)) as ScopeKind;
    const file = at < 0 ? undefined : item.slice(at + 1);
    if (!SCOPE_KINDS.includes(kind)) throw new UserError(`--scope "${item}" is not a scope (all, attn, mlp, embed, circuit:C, outside:C)`);
    if (file !== undefined && kind !== 'circuit' && kind !== 'outside') throw new UserError(`--scope "${item}": only circuit: and outside: name a circuit file`);
    if ((kind === 'circuit' || kind === 'outside') && !file && !withCircuit) throw new UserError(`--scope ${kind} needs a circuit: write ${kind}:FILE.circuit.json or pass --circuit FILE`);
    if (file === '') throw new UserError(`--scope "${item}" names no circuit file`);
    if (seen.has(item)) continue;
    seen.add(item);
    out.push({ kind, ...(file ? { circuitFile: file } : {}) });
  }
  if (!out.length) throw new UserError('--scope lists no scope');
  return out;
}
