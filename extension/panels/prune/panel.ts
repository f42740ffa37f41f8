import type { PruneState } from '../../../protocol/prune';
import type { ResultView } from '../result-panel';

/** The pruning panel: metric and accuracy against sparsity per strategy, drawn from the state the host computed. */
export const PRUNE_VIEW: ResultView<PruneState> = {
  type: 'circuitlens.prune', bundle: 'prune', what: 'pruning',
  restorable: (saved): saved is PruneState => !!saved?.curves,
};
