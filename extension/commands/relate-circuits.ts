import * as path from 'node:path';
import * as vscode from 'vscode';
import { relate, type RelateInput } from '../../core/analysis/relate/relate';
import { parseCircuit } from '../../core/formats/circuit';
import type { Workspace } from '../../core/workspace';
import { readOr } from '../files';
import { showResult } from '../panels/result-panel';
import { RELATIONS_VIEW, relateState } from '../panels/redundancy/panel';
import { CIRCUITS, showProblems, withProgress, type Command, type Services } from './common';

/** Relate Circuits: the workspace's circuits (all picked; untick to leave one out), overlaps and hubs (core/analysis/relate). */
export function relateCircuits({ state }: Services): Command {
  return async () => {
    const files = await state.findFiles(CIRCUITS);
    if (files.length < 2) { void vscode.window.showWarningMessage(`Relate Circuits needs two or more *.circuit.json files (this workspace has ${files.length}).`); return; }
    const items = files.map((f) => ({ label: path.basename(f), description: state.ws.display(f), file: f, picked: true }));
    const chosen = await vscode.window.showQuickPick(items, { title: 'CircuitLens: circuits to relate', canPickMany: true });
    if (!chosen) return;
    if (chosen.length < 2) { void vscode.window.showWarningMessage('Pick two or more circuits to relate.'); return; }
    const inputs: RelateInput[] = [];
    for (const c of chosen) {
      const parsed = parseCircuit(c.file, readOr(c.file));
      if (!parsed.circuit) { showProblems(state, parsed.diagnostics); return; }
      inputs.push({ file: c.file, circuit: parsed.circuit });
    }
    const s = await withProgress(state, `relating ${inputs.length} circuits`, async (signal, report) => {
      // Models load through state.engine, which refuses them in an untrusted workspace.
      const w = state.ws;
      const ws: Workspace = {
        readText: (p) => w.readText(p), exists: (p) => w.exists(p), resolve: (from, rel) => w.resolve(from, rel), display: (p) => w.display(p),
        sha256: (p) => w.sha256(p), loadEngine: (p) => state.engine(p),
      };
      const r = await relate(ws, inputs, { signal, report });
      return relateState(r, `Relate: ${inputs.length} circuits`);
    });
    if (s) showResult(state, RELATIONS_VIEW, s);
  };
}
