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
