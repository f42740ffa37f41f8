import * as vscode from 'vscode';
import { GraphPanel } from '../panels/graph/panel';
import type { Command } from './common';

/** Save Marked Nodes as Circuit (palette, editor title): what the graph view's "Save as circuit" does. */
export function saveCircuit(): Command {
  return async () => {
    const p = GraphPanel.current;
    if (!p) { void vscode.window.showWarningMessage('Open an attribution graph and mark nodes first.'); return; }
    await p.save(p.marked);
  };
}
