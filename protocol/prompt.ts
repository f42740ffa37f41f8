// Messages of the attention and logit-lens views (both trace one prompt in the view's worker), shared by their
// panel (extension/panels/prompt) and the views (webview/attention, webview/lens).
import type { ComputeSetup, ComputeStatus } from './compute';
import type { ViewToHost } from './ipc';

export interface PromptState {
  version: 1;
  view: 'attention' | 'lens';
  modelPath: string;
  text: string;
  ids: number[];
  /** Token texts for axis labels. */
  tokens: string[];
  answer?: number;
  foil?: number;
  layers: number;
  heads: number;
  compute: ComputeSetup;
  /** Token id → text, for the vocabulary (logit-lens labels). */
  vocab: string[];
}

/** The views send ready, errors and their worker's status; the host answers ready with StateToView<PromptState>. */
export type PromptToHost = ViewToHost | ComputeStatus;
