import type { SweepState } from '../../../protocol/sweep';
import type { ResultView } from '../result-panel';

/** The sweep panel: metric and accuracy against the swept variable, drawn from the state the host computed. */
export const SWEEP_VIEW: ResultView<SweepState> = {
  type: 'circuitlens.sweep', bundle: 'sweep', what: 'sweep',
  restorable: (saved): saved is SweepState => !!saved?.points,
};
