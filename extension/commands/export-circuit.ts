import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { parseCircuit } from '../../core/formats/circuit';
import { toEapIg } from '../../core/formats/eap-ig';
import { writeFileAtomic } from '../../core/nodejs/workspace';
import { saveTarget } from '../save-target';
import { CIRCUITS, modelFor, pick, showProblems, type Command, type Services } from './common';

/** Export Circuit: the circuit as EAP-IG / MIB JSON beside it (`x.eap-ig.json`; asks before replacing one). */
export function exportCircuit({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, CIRCUITS, 'circuit', arg);
    if (!f) return;
    const { circuit, diagnostics } = parseCircuit(f, fs.readFileSync(f, 'utf8'));
    if (!circuit) { showProblems(state, diagnostics); return; }
    const modelPath = circuit.model?.path ? path.resolve(path.dirname(f), circuit.model.path) : await modelFor(state);
    if (!modelPath) return;
    const engine = await state.engine(modelPath);
    const wanted = f.replace(/\.circuit\.json$/, '.eap-ig.json');
    const out = await saveTarget(wanted, state.ws.display(wanted));
    if (!out) return;
    await writeFileAtomic(out, JSON.stringify(toEapIg(circuit, { ...engine.info, parallel: engine.info.features.block === 'parallel' }), null, 2) + '\n');
    void vscode.window.showInformationMessage(`Exported ${state.ws.display(out)} (EAP-IG / MIB circuit JSON)`);
  };
}
