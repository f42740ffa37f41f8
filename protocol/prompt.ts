// Messages of the attention and logit-lens views (both trace one prompt in the view's worker), shared by their
// panel (extension/panels/prompt) and the views (webview/attention, webview/lens).
import type { ComputeSetup } from './compute';

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

export type PromptToView = { t: 'state'; state: PromptState };
export type PromptToHost = { t: 'ready' } | { t: 'status'; backend: string; message: string } | { t: 'error'; message: string };
