// The extension's one command table: each command id → its function, each in its own file beside this one
// (shared helpers in common.ts). main.ts registers every entry; package.json "contributes" names the same ids.
import { ablateNodes } from './ablate-nodes';
import { attributeSuite } from './attribute-suite';
import type { Command, Services } from './common';
import { compareWith } from './compare-with';
import { discoverCircuit } from './discover-circuit';
import { exportCircuit } from './export-circuit';
import { openPromptView } from './prompt-views';
import { pruneCurves } from './prune-curves';
import { redundancyCommand } from './redundancy';
import { relateCircuits } from './relate-circuits';
import { refresh, runCanaries } from './run-canaries';
import { runSuite } from './run-suite';
import { saveCircuit } from './save-circuit';
import { selectModel } from './select-model';
import { sensitivityCommand } from './sensitivity';
import { sweepSuite } from './sweep-suite';
import { verifyCircuit } from './verify-circuit';

export function commandTable(s: Services): Record<string, Command> {
  return {
    'circuitlens.selectModel': selectModel(s),
    'circuitlens.tracePrompt': openPromptView(s, 'attention'),
    'circuitlens.openAttention': openPromptView(s, 'attention'),
    'circuitlens.openLogitLens': openPromptView(s, 'lens'),
    'circuitlens.runSuite': runSuite(s),
    'circuitlens.ablateNodes': ablateNodes(s),
    'circuitlens.attributeSuite': attributeSuite(s),
    'circuitlens.discoverCircuit': discoverCircuit(s),
    'circuitlens.verifyCircuit': verifyCircuit(s),
    'circuitlens.saveCircuit': saveCircuit(),
    'circuitlens.runCanaries': runCanaries(s),
    'circuitlens.exportCircuit': exportCircuit(s),
    'circuitlens.refresh': refresh(s),
    'circuitlens.sweepSuite': sweepSuite(s),
    'circuitlens.compareWith': compareWith(s),
    'circuitlens.redundancy': redundancyCommand(s),
    'circuitlens.relateCircuits': relateCircuits(s),
    'circuitlens.pruneCurves': pruneCurves(s),
    'circuitlens.quantizationSensitivity': sensitivityCommand(s),
  };
}
