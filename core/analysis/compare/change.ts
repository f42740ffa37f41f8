// How a node's or an edge's attribution changed between two checkpoints, in the words of the diff view: gained
// (matters more on B), lost (matters less), or unchanged. Importance is |score|; a change counts when it exceeds a
// fraction of the largest |score| on either checkpoint, so noise on near-zero scores does not light up the graph.

export type Change = 'gained' | 'lost' | 'unchanged';

/** The fraction of the largest |score| a change must exceed to count. */
export const CHANGE_FRACTION = 0.1;

export function changeOf(scoreA: number, scoreB: number, scale: number, fraction = CHANGE_FRACTION): Change {
  const d = Math.abs(scoreB) - Math.abs(scoreA);
  if (d > fraction * scale) return 'gained';
  if (-d > fraction * scale) return 'lost';
  return 'unchanged';
}

/** The largest |score| over both checkpoints (the scale changes are measured against). */
export function changeScale(a: Iterable<number>, b: Iterable<number>): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  for (const x of b) m = Math.max(m, Math.abs(x));
  return m;
}
