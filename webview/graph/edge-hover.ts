// Hover for the graph view's edges: the drawn edge nearest the pointer (edge-lod.ts nearestEdge) names itself in a
// tooltip of its own. Nodes keep Plotly's hover; while Plotly shows one, this tooltip stays hidden.
import { nearestEdge, type AxisMap, type EdgeLod } from './edge-lod';

interface Axis { _offset: number; _length: number; range: [number, number] }
interface PlotWithLayout extends HTMLElement { _fullLayout?: { xaxis?: Axis; yaxis?: Axis } }

/** What is drawn now: the edges' level of detail and how many of them (a prefix of the sorted list). */
export interface DrawnEdges { lod: EdgeLod; shown: number }

function axisMap(a: Axis, flip: boolean): AxisMap {
  const [r0, r1] = a.range;
  // Plotly's y axis grows upwards: pixel 0 is the top of the plot area.
  return flip ? { offset: a._offset + a._length, from: r0, scale: -a._length / (r1 - r0) } : { offset: a._offset, from: r0, scale: a._length / (r1 - r0) };
}

export function edgeHover(plot: PlotWithLayout & { on(event: string, cb: () => void): void }, drawn: () => DrawnEdges | undefined): void {
  const tip = document.createElement('div');
  tip.id = 'edge-hover';
  tip.setAttribute('role', 'tooltip');
  Object.assign(tip.style, {
    position: 'absolute', display: 'none', pointerEvents: 'none', whiteSpace: 'pre', zIndex: '10', padding: '3px 6px', borderRadius: '3px', fontSize: '12px',
    background: 'var(--vscode-editorHoverWidget-background, #252526)', color: 'var(--vscode-editorHoverWidget-foreground, #cccccc)',
    border: '1px solid var(--vscode-editorHoverWidget-border, #454545)',
  });
  plot.style.position = 'relative';
  plot.append(tip);
  let nodeHovered = false;
  let pending: MouseEvent | undefined;
  const hide = () => { tip.style.display = 'none'; };
  plot.on('plotly_hover', () => { nodeHovered = true; hide(); });
  plot.on('plotly_unhover', () => { nodeHovered = false; });
  plot.addEventListener('mouseleave', () => { pending = undefined; hide(); });
  // At most one lookup per frame, on the latest pointer position.
  plot.addEventListener('mousemove', (e) => {
    if (!pending) requestAnimationFrame(() => { const m = pending; pending = undefined; if (m) show(m); });
    pending = e;
  }, { passive: true });
  function show(e: MouseEvent): void {
    const d = drawn();
    const xa = plot._fullLayout?.xaxis;
    const ya = plot._fullLayout?.yaxis;
    if (nodeHovered || !d || !xa || !ya || e.buttons) { hide(); return; }
    const box = plot.getBoundingClientRect();
    const px = e.clientX - box.left;
    const py = e.clientY - box.top;
    const r = nearestEdge(d.lod, d.shown, px, py, axisMap(xa, false), axisMap(ya, true));
    if (r < 0) { hide(); return; }
    tip.textContent = d.lod.edges[r]!.describe();
    tip.style.display = 'block';
    tip.style.left = `${Math.min(px + 12, box.width - tip.offsetWidth - 4)}px`;
    tip.style.top = `${py + 12}px`;
  }
}
