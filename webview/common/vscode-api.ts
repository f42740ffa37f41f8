import type { StateToView, ViewToHost } from '../../protocol/ipc';

/** The webview side of the host channel, typed by each view's protocol. */
export interface VsCodeApi<ToHost, S> {
  postMessage(m: ToHost): void;
  getState(): S | undefined;
  setState(s: S): void;
}

declare function acquireVsCodeApi<ToHost, S>(): VsCodeApi<ToHost, S>;

export function hostApi<ToHost, S>(): VsCodeApi<ToHost, S> {
  return acquireVsCodeApi<ToHost, S>();
}

/**
 * The host channel of a view that draws the state its host sends: `show` draws each `state` message; a failed draw
 * is shown in the page and reported to the host. The view starts from its saved state when `restorable` says it can
 * draw it (after a reload), else it asks the host for the state (`ready`).
 */
export function drawStates<S>(vscode: VsCodeApi<ViewToHost, S>, show: (s: S) => Promise<void>, restorable?: (saved: S | undefined) => saved is S): void {
  const draw = (s: S) => show(s).catch((err: Error) => {
    document.getElementById('app')!.textContent = `Error: ${err.message}`;
    vscode.postMessage({ t: 'error', message: err.message });
  });
  window.addEventListener('message', (e: MessageEvent<StateToView<S>>) => { if (e.data.t === 'state') void draw(e.data.state); });
  const saved = vscode.getState();
  if (restorable?.(saved)) void draw(saved);
  else vscode.postMessage({ t: 'ready' });
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

/** Colours from the active VS Code theme (light, dark, high contrast). */
export function themeColor(name: string, fallback: string): string {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}
