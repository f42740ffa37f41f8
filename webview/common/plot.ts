// How every view draws with plotly.js: the page's global (dist/webview/plotly.min.js, loaded before the view's
// bundle), on a transparent background in the theme's text colour, with the theme's chart colours and one config.
import { themeColor } from './vscode-api';

/** The parts of plotly's global the views call; looked up at each call (the graph benchmark wraps them). */
interface PlotlyApi {
  react(div: HTMLElement, data: unknown[], layout: unknown, config: unknown): Promise<void>;
  restyle(div: HTMLElement, update: Record<string, unknown>, traces: number[]): Promise<void>;
}
declare const Plotly: PlotlyApi;

/** The active theme's text colour. */
function foreground(): string {
  return themeColor('--vscode-editor-foreground', '#cccccc');
}

/** The active theme's text colour and chart palette (fallbacks: the dark theme's). */
export function chartColors() {
  return {
    fg: foreground(),
    blue: themeColor('--vscode-charts-blue', '#3794ff'),
    red: themeColor('--vscode-charts-red', '#f14c4c'),
    orange: themeColor('--vscode-charts-orange', '#d18616'),
    green: themeColor('--vscode-charts-green', '#89d185'),
    purple: themeColor('--vscode-charts-purple', '#b180d7'),
    yellow: themeColor('--vscode-charts-yellow', '#cca700'),
  };
}

/** Grey at this opacity: grid and zero lines that show on light and dark themes alike. */
export function grey(alpha: number): string {
  return `rgba(128, 128, 128, ${alpha})`;
}

/** Draws (or redraws) a plot: `layout` over a transparent background in the theme's text colour, `config` over the
 *  views' own (no plotly logo, resized with the panel). */
export function drawPlot(div: HTMLElement, data: unknown[], layout: Record<string, unknown>, config: Record<string, unknown> = {}): Promise<void> {
  const base = { paper_bgcolor: 'rgba(0,0,0,0)', plot_bgcolor: 'rgba(0,0,0,0)', font: { color: foreground() } };
  return Plotly.react(div, data, { ...base, ...layout }, { displaylogo: false, responsive: true, ...config });
}

/** Changes some traces' attributes without a new layout. */
export function restylePlot(div: HTMLElement, update: Record<string, unknown>, traces: number[]): Promise<void> {
  return Plotly.restyle(div, update, traces);
}
