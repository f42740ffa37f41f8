import * as fs from 'node:fs';
import * as vscode from 'vscode';
import { resolvePrompts } from '../../core/analysis/prompts';
import type { Engine } from '../../core/engine/engine';
import { parseSuite } from '../../core/formats/suite';
import type { PromptState } from '../../protocol/prompt';
import { PromptPanel } from '../panels/prompt/panel';
import type { State } from '../state';
import { activeSuite, fileOf, modelFor, type Command, type Services } from './common';

/** Offered when the workspace has no suite to take a prompt from. */
const DEMO_PROMPT = 'Mary walked garden red apple dog Mary walked garden red';

interface Offer { text: string; answer?: number; foil?: number }

/**
 * The prompt the views offer: the active suite's first prompt (its first task prompt when it has controls), with
 * its answer and foil as this model tokenizes them; the demo sentence when there is no suite.
 */
async function offeredPrompt(state: State, engine: Engine): Promise<Offer> {
  const file = await activeSuite(state);
  if (!file) return { text: DEMO_PROMPT };
  try {
    const { suite } = parseSuite(file, fs.readFileSync(file, 'utf8'));
    const withText = suite?.prompts.filter((p) => p.text !== undefined) ?? [];
    const first = withText.find((p) => !p.tags.includes('control')) ?? withText[0];
    if (!suite || !first) return { text: DEMO_PROMPT };
    const index = suite.prompts.indexOf(first);
    const resolved = resolvePrompts(suite, engine).prompts.find((p) => p.index === index);
    return { text: first.text!, answer: resolved?.answer, foil: resolved?.foil };
  } catch {
    return { text: DEMO_PROMPT };
  }
}

/** Open Attention View, Open Logit Lens and Trace Prompt: one prompt traced in a view's compute worker. */
export function openPromptView({ state }: Services, view: 'attention' | 'lens'): Command {
  return async (arg) => {
    const modelPath = fileOf(arg)?.endsWith('.onnx') ? fileOf(arg)! : await modelFor(state);
    if (!modelPath) return;
    const engine = await state.engine(modelPath);
    const tokenizer = engine.tokenizer;
    if (!tokenizer) { void vscode.window.showErrorMessage('This model has no tokenizer.json beside it; the views need text prompts.'); return; }
    const offer = await offeredPrompt(state, engine);
    const text = await vscode.window.showInputBox({ title: view === 'attention' ? 'Attention: prompt to trace' : 'Logit lens: prompt to trace', value: offer.text });
    if (!text) return;
    const ids = tokenizer.encode(text);
    engine.checkIds(ids);
    const vocab = Array.from({ length: engine.info.vocab }, (_, i) => tokenizer.tokenText(i));
    // The suite's answer and foil belong to its prompt: an edited prompt is traced without them.
    const target = text === offer.text ? { answer: offer.answer, foil: offer.foil } : {};
    const ps: PromptState = {
      version: 1, view, modelPath, text, ids, tokens: ids.map((i) => tokenizer.tokenText(i)), layers: engine.info.layers, heads: engine.info.heads, ...target,
      compute: { workerUri: '', wasmUri: '', modelUri: '', prefer: 'auto', what: '' }, vocab,
    };
    PromptPanel.show(state, ps);
  };
}
