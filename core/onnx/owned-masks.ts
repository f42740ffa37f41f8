// What a circuit's nodes own (weight-slices.ts) as one mask per initializer of the model's file, 1 on every entry
// a node owns: what outside-circuit pruning never prunes (prune.ts), what the circuit: and outside: quantize scopes
// take (weight-scope.ts), and what protect's learning-rate mask scales (core/analysis/protect/).
import { detectStructure, type HooksSidecar } from './detect';
import type { OnnxModel } from './model';
import { normalizeExport } from './normalize';
import { ownedSlices, type OwnedSlice } from './weight-slices';
import { withInitializers } from './weight-swap';

/** The entries of one initializer the nodes own together: `entries[i]` = 1 (row-major, `dims`). */
export interface OwnedMask { dims: number[]; entries: Uint8Array }

export interface OwnedMasks {
  /** Per initializer with an owned entry, by the file's name. */
  masks: Map<string, OwnedMask>;
  /** Per node, its slices (ownedSlices) with the file's initializer names. */
  slices: Map<string, OwnedSlice[]>;
}

/** The file's name of an initializer of the normalised graph: normalisation renames, besides what it folds (Casts,
 * DequantizeLinears: not float32 weights), only the merged decoder's branch (`@no_past`). */
export const fileName = (n: string): string => n.replace(/@no_past$/, '');

/** What `nodes` own in `model`, as decoded from its file (not changed: normalised and detected on a copy). */
export function ownedMasks(model: OnnxModel, what: string, hooks: { sidecar?: HooksSidecar; sidecarPath?: string }, nodes: readonly string[]): OwnedMasks {
  const copy = withInitializers(model, []);
  normalizeExport(copy, what);
  const structure = detectStructure(copy, what, hooks.sidecar, hooks.sidecarPath);
  return sliceMasks(ownedSlices(copy.graph!, structure, nodes, what));
}

/** Each node's slices (ownedSlices, in a normalised graph) as masks, renamed by `nameOf` to the file's names. */
export function sliceMasks(owned: ReadonlyMap<string, readonly OwnedSlice[]>, nameOf: (n: string) => string = fileName): OwnedMasks {
  const masks = new Map<string, OwnedMask>();
  const slices = new Map<string, OwnedSlice[]>();
  for (const [node, list] of owned) {
    slices.set(node, list.map((owns) => {
      const s = { ...owns, initializer: nameOf(owns.initializer) };
      let m = masks.get(s.initializer);
      if (!m) masks.set(s.initializer, (m = { dims: s.dims, entries: new Uint8Array(s.dims.reduce((a, v) => a * v, 1)) }));
      else if (m.dims.join() !== s.dims.join()) throw new Error(`slices of "${s.initializer}" of shapes [${m.dims}] and [${s.dims}]`);
      const inner = s.dims.slice(s.axis + 1).reduce((a, v) => a * v, 1);
      const size = s.dims[s.axis]!;
      for (let o = 0; o < m.entries.length / (inner * size); o++) m.entries.fill(1, (o * size + s.start) * inner, (o * size + s.end) * inner);
      return s;
    }));
  }
  return { masks, slices };
}

/** How many entries slice `s` has. */
export function sliceEntries(s: OwnedSlice): number {
  return (s.dims.reduce((a, v) => a * v, 1) / s.dims[s.axis]!) * (s.end - s.start);
}
