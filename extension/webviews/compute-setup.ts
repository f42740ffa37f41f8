import type { BackendPreference } from '../../webview/compute/protocol';

/** What a webview needs to start its compute worker: everything by webview URI, fetched by the view. */
export interface ComputeSetup {
  workerUri: string;
  wasmUri: string;
  modelUri: string;
  tokenizerUri?: string;
  prefer: BackendPreference;
  /** The model's name, for messages. */
  what: string;
}
