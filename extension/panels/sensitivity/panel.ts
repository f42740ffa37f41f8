import type { SensitivityState } from '../../../protocol/sensitivity';
import type { ResultView } from '../result-panel';

/** The quantization-sensitivity panel: a table and bar charts per weight scope, drawn from the state the host computed. */
export const SENSITIVITY_VIEW: ResultView<SensitivityState> = {
  type: 'circuitlens.sensitivity', bundle: 'sensitivity', what: 'sensitivity',
  restorable: (saved): saved is SensitivityState => !!saved?.rows,
};
