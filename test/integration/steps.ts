// The real-client walk through CircuitLens (explorer, graph, ablation, save, canaries, attention, logit lens),
// shared by every way of getting a VS Code window: code-server in Chromium (extension.test.ts, run by `npm test`)
// and desktop VS Code through Electron (electron/suite.ts, where VS Code can be downloaded). Each step acts only
// through the UI and waits on what the UI shows, never on fixed sleeps.
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FrameLocator, Locator, Page } from 'playwright-core';
import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { faithfulness } from '../../core/analysis/metrics';
import { resolvePrompts } from '../../core/analysis/prompts';
import { parseSuite } from '../../core/formats/suite';
import { allComponentNodes, type NodeId } from '../../core/ids';
import { loadEngine } from '../../core/nodejs/load';
import { cluster as brokerCluster, freePort, workKinds } from '../cli/broker-harness';
import { EXAMPLES, ROOT } from '../helpers';
import { answerDialog, answerInputBox, openFileByName, pickQuickItem, runCommand, waitForNotification, webviewOf } from './vscode';

/** What a step needs from the environment: the workbench window with `workspace` open. */
export interface Driver {
  /** The workbench: a code-server tab in Chromium, or desktop VS Code's Electron window. */
  page: Page;
  /** The open folder, made by prepareWorkspace(). */
  workspace: Workspace;
  /** Where the screenshots go (media/screenshots unless given). */
  screenshotDir?: string;
}

export interface Workspace {
  dir: string;
  /** broken.canary.yaml's deliberately failing check: its name, 1-based line and column. */
  failing: { name: string; line: number; col: number };
}

/** Carried from step to step. */
export interface Shared {
  graph?: FrameLocator;
  /** The faithfulness the graph view showed, as text (3 decimals). */
  shownFaithfulness?: string;
}

export interface Step {
  name: string;
  timeoutMs: number;
  run(d: Driver, s: Shared): Promise<void>;
}

/** The nodes marked in the graph: an induction circuit (a previous-token head, both MLPs, the layer-1 heads). */
export const CIRCUIT: NodeId[] = ['a0.h1', 'm0', 'a1.h0', 'a1.h1', 'a1.h2', 'a1.h3', 'm1'];
const GRAPH_NODES = ['input', 'logits', 'm0', 'm1', ...[0, 1].flatMap((l) => [0, 1, 2, 3].map((h) => `a${l}.h${h}`))];
const SAVED_NAME = 'it-circuit';
const SWEEP_SUITE = 'induction-sweep.suite.yaml';
const FINETUNED = 'induction-gpt2-finetuned.onnx';
const BROKEN_CHECK = 'induction circuit is faithful';

/** A temporary copy of examples/ plus broken.canary.yaml: the gpt2 canary demanding faithfulness ≥ 0.99 of its
 *  circuit (which has about 0.81), so exactly one check fails, at a known line. */
export function prepareWorkspace(): Workspace {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'circuitlens-it-'));
  // Without the references and the later checkpoint (examples/checkpoints/, for compare); the sweep suite joins later
  // (its step): the steps before it expect the one suite they pick without asking.
  fs.cpSync(EXAMPLES, dir, { recursive: true, filter: (src) => !src.includes(`${path.sep}references`) && !src.includes(`${path.sep}checkpoints`) && path.basename(src) !== SWEEP_SUITE });
  const lines = fs.readFileSync(path.join(dir, 'induction-gpt2.canary.yaml'), 'utf8').split('\n');
  const at = lines.findIndex((l) => l.trim() === `- name: ${BROKEN_CHECK}`);
  const bound = lines.findIndex((l, i) => i > at && /^\s+faithfulness:/.test(l));
  assert.ok(at >= 0 && bound > at, 'induction-gpt2.canary.yaml no longer has the check this test breaks');
  lines[bound] = lines[bound]!.replace(/faithfulness:.*/, 'faithfulness: ">= 0.99"');
  const name = lines.findIndex((l) => l.startsWith('name:'));
  lines[name] = 'name: broken canary (one check fails on purpose)';
  fs.writeFileSync(path.join(dir, 'broken.canary.yaml'), lines.join('\n'));
  return { dir, failing: { name: BROKEN_CHECK, line: at + 1, col: lines[at]!.indexOf('name:') + 1 } };
}

// ---------------------------------------------------------------------------------------------------------------
// Workbench reading helpers

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `read` until `ok` holds; fails with the last value read. */
async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let err: unknown;
  for (;;) {
    try {
      last = await read();
      if (ok(last)) return last;
    } catch (e) { err = e; }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(last) ?? String(err)}`);
    await sleep(250);
  }
}

interface Row { name: string; description: string; level: number; label: string }

async function treeRows(container: Locator): Promise<Row[]> {
  return container.locator('.monaco-list-row').evaluateAll((els) => els.map((e) => ({
    name: e.querySelector('.label-name')?.textContent?.trim() ?? '',
    description: e.querySelector('.label-description')?.textContent?.trim() ?? '',
    level: Number(e.getAttribute('aria-level')),
    label: e.getAttribute('aria-label') ?? '',
  })));
}

const explorerPane = (page: Page) => page.locator('.part.sidebar .pane:has(.pane-header[aria-label^="Circuit Explorer"])');

/** The Circuit Explorer as { section: rows }. */
async function explorerSections(page: Page): Promise<Record<string, Row[]>> {
  const out: Record<string, Row[]> = {};
  let section = '';
  for (const r of await treeRows(explorerPane(page))) {
    if (r.level === 1) out[section = r.name] = [];
    else if (r.level === 2 && section) out[section]!.push(r);
  }
  return out;
}

const names = (rows: Row[] | undefined) => (rows ?? []).map((r) => r.name).sort();

/** Widens the side bar (drags its sash) so tree descriptions show in screenshots. */
async function widenSideBar(page: Page, width: number): Promise<void> {
  const bar = await page.locator('.part.sidebar').boundingBox();
  if (!bar || bar.width >= width) return;
  const right = bar.x + bar.width;
  const boxes = await page.locator('.monaco-sash.vertical').evaluateAll((els) => els.map((e) => { const r = e.getBoundingClientRect(); return r.x + r.width / 2; }));
  const x = boxes.find((bx) => Math.abs(bx - right) < 6) ?? right;
  const y = bar.y + bar.height / 2;
  await page.mouse.move(x, y);
  await page.mouse.down();
  await page.mouse.move(x + (width - bar.width), y, { steps: 8 });
  await page.mouse.up();
}

/** A screenshot of the whole workbench, the pointer parked where it raises no hover. */
async function screenshot(d: Driver, name: string): Promise<string> {
  // README's screenshots are refreshed on request (CIRCUITLENS_UPDATE_SCREENSHOTS=1 npm test); otherwise a run
  // leaves them alone and writes to test-results/ (git-ignored).
  const dir = d.screenshotDir ?? path.join(ROOT, process.env.CIRCUITLENS_UPDATE_SCREENSHOTS ? 'media/screenshots' : 'test-results/screenshots');
  fs.mkdirSync(dir, { recursive: true });
  const { page } = d;
  // Toasts would cover the views; a tooltip of whatever the pointer last crossed (palette rows lie over the tab
  // strip) would cover the toolbars.
  if (await page.locator('.notification-toast').count()) await runCommand(page, 'Notifications: Clear All Notifications');
  const box = await page.locator('.part.activitybar').boundingBox();
  if (box) await page.mouse.move(box.x + box.width / 2, box.y + box.height - 120, { steps: 2 });
  await page.locator('.workbench-hover-container:visible, .monaco-hover:visible, .notification-toast:visible').first().waitFor({ state: 'hidden', timeout: 5000 }).catch(() => undefined);
  const file = path.join(dir, name);
  await page.screenshot({ path: file });
  return file;
}

// ---------------------------------------------------------------------------------------------------------------
// Graph view helpers

const nodeTrace = (f: FrameLocator) => f.locator('.scatterlayer g.trace:has(g.textpoint)');

/**
 * Node id → marked (drawn with the mark outline): the outline trace, drawn over the nodes after them, has one
 * stroked point per marked node; its points' ids come from the plot's data, their strokes from the SVG.
 */
async function plotMarks(f: FrameLocator): Promise<Map<string, boolean>> {
  const ids = await nodeTrace(f).locator('g.textpoint text').allTextContents();
  const outlined = await f.locator('#plot').evaluate((el) => ((el as unknown as { data: { customdata?: string[] }[] }).data.at(-1)?.customdata ?? []));
  const strokes = await f.locator('.scatterlayer g.trace').last().locator('path.point')
    .evaluateAll((els) => els.map((e) => parseFloat(e.ownerDocument.defaultView!.getComputedStyle(e).strokeWidth) || 0));
  const drawn = new Set(outlined.filter((_, i) => (strokes[i] ?? 0) > 0));
  return new Map(ids.map((id) => [id, drawn.has(id)]));
}

/** Marks one node by clicking it (plotly_click): hover until plotly's tooltip names it, then click; idempotent. */
async function markNode(page: Page, f: FrameLocator, id: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    if ((await plotMarks(f)).get(id)) return;
    const tr = nodeTrace(f);
    const i = (await tr.locator('g.textpoint text').allTextContents()).indexOf(id);
    assert.ok(i >= 0, `node ${id} is not in the plot`);
    const box = await tr.locator('path.point').nth(i).boundingBox();
    assert.ok(box, `node ${id} has no box`);
    const x = box.x + box.width / 2;
    const y = box.y + box.height / 2;
    try {
      await page.mouse.move(x - 30, y - 30);
      await page.mouse.move(x, y, { steps: 3 });
      await f.locator('.hoverlayer .hovertext', { hasText: id }).first().waitFor({ state: 'visible', timeout: 3000 });
      await page.mouse.click(x, y);
      await until(`${id} to be marked`, () => plotMarks(f), (m) => m.get(id) === true, 3000);
      return;
    } catch (e) {
      if (attempt >= 3) throw e;
    }
  }
}

/** Faithfulness of `nodes` and the metric with only them kept, by the Node engine (onnxruntime-node), the way
 *  the graph view computes it: task prompts (not tagged control), mean over all prompts, the suite's metric. */
async function nodeReference(dir: string, nodes: NodeId[]): Promise<{ faithfulness: number; metric: number }> {
  const suitePath = path.join(dir, 'induction.suite.yaml');
  const { suite } = parseSuite(suitePath, fs.readFileSync(suitePath, 'utf8'));
  assert.ok(suite);
  const engine = await loadEngine(path.join(dir, 'induction-gpt2.onnx'));
  try {
    const all = resolvePrompts(suite, engine).prompts;
    const ctx = await prepare(engine, all.filter((p) => !p.tags.includes('control')), suite.ablation, { meanOver: all });
    const every = allComponentNodes(engine.info);
    const [full, empty, circuit] = await evaluateSets(ctx, [[], every, every.filter((n) => !nodes.includes(n))]);
    return { faithfulness: faithfulness(suite.metric, circuit!.metrics, empty!.metrics, full!.metrics), metric: circuit!.metrics[suite.metric] };
  } finally {
    await engine.release();
  }
}

/** The first prompt of induction.suite.yaml with text and no control tag, answer and foil trimmed. */
function firstSuitePrompt(dir: string): { text: string; answer: string; foil: string } {
  const suitePath = path.join(dir, 'induction.suite.yaml');
  const { suite } = parseSuite(suitePath, fs.readFileSync(suitePath, 'utf8'));
  const p = suite!.prompts.find((x) => x.text !== undefined && !x.tags.includes('control'))!;
  return { text: p.text!, answer: String(p.answer).trim(), foil: String(p.foil).trim() };
}

/** `circuitlens ARGS` with --json (the CLI of this checkout), parsed. */
function cliJson(args: string[]): Promise<unknown> {
  return new Promise((resolve, reject) => execFile(process.execPath, [path.join(ROOT, 'bin', 'circuitlens.js'), ...args], { timeout: 120_000 },
    (err, stdout, stderr) => (err ? reject(new Error(`circuitlens ${args[0]} failed: ${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)))));
}

/** `circuitlens verify FILE --json` (the CLI of this checkout). */
function cliVerify(file: string): Promise<{ faithfulness: number; necessity: number }> {
  return new Promise((resolve, reject) => execFile(process.execPath, [path.join(ROOT, 'bin', 'circuitlens.js'), 'verify', file, '--json'], { timeout: 60_000 },
    (err, stdout, stderr) => (err ? reject(new Error(`circuitlens verify failed: ${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)))));
}

/** `circuitlens sweep SUITE --model MODEL --json` (the CLI of this checkout). */
function cliSweep(suite: string, model: string): Promise<{ points: { value: number; metric: number; accuracy: number }[]; critical: { value: number } | null }> {
  return new Promise((resolve, reject) => execFile(process.execPath, [path.join(ROOT, 'bin', 'circuitlens.js'), 'sweep', suite, '--model', model, '--json'], { timeout: 120_000 },
    (err, stdout, stderr) => (err ? reject(new Error(`circuitlens sweep failed: ${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)))));
}

/** Picks a row of the quick pick titled `title` (part of it) and returns once that pick is gone — another may open at once. */
async function clickQuickItem(page: Page, title: string, label: RegExp): Promise<void> {
  const widget = page.locator('.quick-input-widget');
  await widget.locator('.quick-input-title', { hasText: title }).waitFor({ state: 'visible', timeout: 15_000 });
  await widget.locator('.monaco-list-row', { hasText: label }).first().click().catch(async (e: unknown) => {
    // Say what took the pick's place (another quick pick, a notification), for a failure seen only on a loaded machine.
    const now = (await widget.isVisible()) ? (await widget.innerText({ timeout: 1000 }).catch(() => '')).replace(/\s+/g, ' ').slice(0, 300) : '(no quick input open)';
    const toasts = (await page.locator('.notification-toast').allInnerTexts().catch(() => [])).map((t) => t.replace(/\s+/g, ' ')).join(' | ');
    throw new Error(`quick pick "${title}": could not pick ${label}; the quick input shows: ${now}; notifications: ${toasts || 'none'}`, { cause: e });
  });
  await widget.locator('.quick-input-title', { hasText: title }).waitFor({ state: 'hidden', timeout: 10_000 });
}

/** `circuitlens compare A B --suite S --circuit C --json` (the CLI of this checkout). */
interface CompareJson { a: { task: { value: number; accuracy: number } }; b: { task: { value: number; accuracy: number } }; circuit: { faithfulnessA: number; faithfulnessB: number; entered: string[] } }
function cliCompare(a: string, b: string, suite: string, circuit: string): Promise<CompareJson> {
  return new Promise((resolve, reject) => execFile(process.execPath, [path.join(ROOT, 'bin', 'circuitlens.js'), 'compare', a, b, '--suite', suite, '--circuit', circuit, '--json'], { timeout: 180_000 },
    (err, stdout, stderr) => (err ? reject(new Error(`circuitlens compare failed: ${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout)))));
}

/** Sets circuitlens.broker in the workspace's .vscode/settings.json (undefined: removes it) and waits for the status bar to follow. */
async function setBroker(page: Page, dir: string, url: string | undefined): Promise<void> {
  const file = path.join(dir, '.vscode', 'settings.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(url ? { 'circuitlens.broker': url } : {}, null, 2));
  const item = page.locator('.statusbar-item', { hasText: /workers: / });
  if (url) await page.locator('.statusbar-item', { hasText: `workers: ${new URL(url).host}` }).waitFor({ state: 'visible', timeout: 20_000 });
  else await item.waitFor({ state: 'hidden', timeout: 20_000 });
}

/** Equal when rounded to 3 decimals (what the view shows), allowing for the rounding edge. */
function assertClose3(shown: string, want: number, what: string): void {
  assert.ok(Math.abs(Number(shown) - want) <= 5e-4 + 1e-6, `${what}: the view shows ${shown}, the Node engine gives ${want.toFixed(6)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// The steps, in order

export const STEPS: Step[] = [
  {
    name: 'the CircuitLens container opens; the Circuit Explorer lists models, suites, circuits and canaries',
    timeoutMs: 90_000,
    async run(d) {
      const { page } = d;
      await page.locator('.activitybar .action-label[aria-label="CircuitLens"]').click({ timeout: 30_000 });
      await explorerPane(page).waitFor({ state: 'visible', timeout: 15_000 });
      // Model rows show their architecture once loaded; canary rows their results once the run on open ends.
      const s = await until('the explorer to list everything, models loaded and canaries run', () => explorerSections(page), (x) =>
        names(x['Models']).length === 2 && (x['Models'] ?? []).every((r) => /2L×4H/.test(r.description))
        && names(x['Canaries']).length === 3 && (x['Canaries'] ?? []).every((r) => /failing|passing/.test(r.description)), 60_000);
      assert.deepEqual(Object.keys(s), ['Models', 'Suites', 'Circuits', 'Canaries']);
      assert.deepEqual(names(s['Models']), ['induction-gpt2.onnx', 'induction-llama.onnx']);
      assert.deepEqual(names(s['Suites']), ['induction.suite.yaml']);
      assert.deepEqual(names(s['Circuits']), ['induction-gpt2.circuit.json', 'induction-llama.circuit.json']);
      assert.deepEqual(names(s['Canaries']), ['broken.canary.yaml', 'induction-gpt2.canary.yaml', 'induction-llama.canary.yaml']);
      const canary = (n: string) => s['Canaries']!.find((r) => r.name === n)!.description;
      assert.equal(canary('broken.canary.yaml'), '1 failing');
      assert.equal(canary('induction-gpt2.canary.yaml'), '7 passing');
      assert.match(s['Suites']![0]!.description, /98 prompts · logit_diff/);
      await widenSideBar(page, 470);
      await screenshot(d, 'explorer.png');
    },
  },
  {
    name: 'Select Model picks induction-gpt2.onnx from a quick pick; the explorer marks it active',
    timeoutMs: 60_000,
    async run({ page }) {
      await runCommand(page, 'CircuitLens: Select Model');
      await pickQuickItem(page, 'induction-gpt2.onnx');
      const s = await until('induction-gpt2.onnx to be marked active', () => explorerSections(page),
        (x) => (x['Models'] ?? []).some((r) => r.name === 'induction-gpt2.onnx' && r.description.startsWith('● active')), 30_000);
      assert.ok(!s['Models']!.find((r) => r.name === 'induction-llama.onnx')!.description.includes('active'), 'only one model is active');
      const row = explorerPane(page).locator('.monaco-list-row', { has: page.locator('.label-name', { hasText: /^induction-gpt2\.onnx$/ }) });
      assert.equal(await row.locator('.codicon-pass-filled').count(), 1, 'the active model has the pass-filled icon');
    },
  },
  {
    name: 'Attribute Suite opens the attribution graph: 12 nodes and scored edges, compute backend ready',
    timeoutMs: 180_000,
    async run(d, s) {
      const { page } = d;
      await runCommand(page, 'CircuitLens: Attribute Suite (Open Attribution Graph)');
      const f = s.graph = await webviewOf(page, 'graph', 90_000);
      const ids = await until('the graph to draw its 12 nodes', () => nodeTrace(f).locator('g.textpoint text').allTextContents(), (t) => t.length === 12, 30_000);
      assert.deepEqual([...ids].sort(), [...GRAPH_NODES].sort());
      // Edges are attributed too (110 in the demo model; the weak ones hidden), and the legend says how.
      assert.match(await f.locator('#threshold-label').innerText(), /12 of 12 nodes, \d+ of 110 edges/);
      assert.match(await f.locator('#legend').innerText(), /by path patching/);
      const badge = f.locator('#backend');
      await badge.filter({ hasText: /^(WebGPU|WASM)/ }).waitFor({ state: 'visible', timeout: 90_000 });
      assert.match(await badge.getAttribute('data-backend') ?? '', /^(webgpu|wasm)$/);
      assert.match(await f.locator('#marked-count').innerText(), /^0 marked$/);
      await screenshot(d, 'graph.png');
    },
  },
  {
    name: `marking ${CIRCUIT.join(', ')} by clicking them`,
    timeoutMs: 60_000,
    async run({ page }, s) {
      const f = s.graph!;
      for (const id of CIRCUIT) await markNode(page, f, id);
      await f.locator('#marked-count').filter({ hasText: new RegExp(`^${CIRCUIT.length} marked$`) }).waitFor({ timeout: 5000 });
      const marks = await plotMarks(f);
      assert.deepEqual([...marks].filter(([, m]) => m).map(([id]) => id).sort(), [...CIRCUIT].sort());
      // The keyboard node list (checkboxes) follows the marks made in the plot.
      const boxes = await f.locator('#node-list input[data-node]').evaluateAll((els) => els.filter((e) => (e as unknown as { checked: boolean }).checked).map((e) => e.getAttribute('data-node')));
      if (await f.locator('#node-list').count()) assert.deepEqual(boxes.sort(), [...CIRCUIT].sort());
    },
  },
  {
    name: "Ablate marked shows faithfulness and metric equal to the Node engine's (3 decimals)",
    timeoutMs: 180_000,
    async run(d, s) {
      const f = s.graph!;
      const reference = nodeReference(d.workspace.dir, CIRCUIT); // the Node engine meanwhile
      await f.locator('#ablate').click();
      const value = f.locator('#faithfulness-value');
      await value.waitFor({ state: 'visible', timeout: 170_000 });
      const shown = s.shownFaithfulness = (await value.innerText()).trim();
      const metric = (await f.locator('#metric-value').innerText()).trim();
      assert.match(await f.locator('#results').innerText(), new RegExp(`${CIRCUIT.length} marked nodes kept, ${12 - 2 - CIRCUIT.length} mean-ablated; 81 prompts`));
      const ref = await reference;
      assertClose3(shown, ref.faithfulness, 'faithfulness');
      assertClose3(metric, ref.metric, 'logit_diff with only the circuit');
      await screenshot(d, 'graph-ablated.png');
    },
  },
  {
    name: `Save as circuit writes ${SAVED_NAME}.circuit.json with the marked nodes; the explorer lists it`,
    timeoutMs: 60_000,
    async run({ page, workspace }, s) {
      const f = s.graph!;
      await f.locator('#save').click();
      const box = await answerInputBox(page, SAVED_NAME);
      assert.match(box.title, /Save circuit/);
      const file = path.join(workspace.dir, `${SAVED_NAME}.circuit.json`);
      await until(`${file} to exist`, async () => fs.existsSync(file), (x) => x, 15_000);
      await f.locator('#saved-note', { hasText: `Saved ${SAVED_NAME}.circuit.json` }).waitFor({ timeout: 10_000 });
      const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
      assert.deepEqual([...saved.nodes].sort(), [...CIRCUIT].sort());
      assert.equal(saved.model.path, 'induction-gpt2.onnx');
      assert.equal(saved.suite, 'induction.suite.yaml');
      assert.equal(saved.metrics.faithfulness.toFixed(3), s.shownFaithfulness, 'the file keeps the faithfulness the view showed');
      await until(`the explorer to list ${SAVED_NAME}.circuit.json`, () => explorerSections(page),
        (x) => (x['Circuits'] ?? []).some((r) => r.name === `${SAVED_NAME}.circuit.json` && r.description.startsWith(`${CIRCUIT.length} nodes`)), 15_000);
      const v = await cliVerify(file);
      assertClose3(s.shownFaithfulness!, v.faithfulness, 'faithfulness by `circuitlens verify` of the saved file');
    },
  },
  {
    // The reported bug: "Save as circuit" offers <suite>-<model>, the very name Discover Circuit writes, and
    // Discover Circuit replaced the saved file without a word.
    name: 'a saved circuit is never overwritten silently: saving again or Discover Circuit to its name asks; Cancel and Keep both leave it byte for byte',
    timeoutMs: 120_000,
    async run({ page, workspace }, s) {
      const f = s.graph!;
      await f.locator('#save').click();
      const box = await answerInputBox(page);
      assert.equal(box.offered, 'induction-induction-gpt2', 'Save as circuit offers <suite>-<model>');
      const file = path.join(workspace.dir, `${box.offered}.circuit.json`);
      const second = path.join(workspace.dir, `${box.offered}-2.circuit.json`);
      await until(`${file} to exist`, async () => fs.existsSync(file), (x) => x, 15_000);
      const saved = fs.readFileSync(file);

      // Saving again under the same name asks; Cancel writes nothing.
      await f.locator('#save').click();
      await answerInputBox(page);
      assert.match(await answerDialog(page, 'Cancel'), new RegExp(`${box.offered}\\.circuit\\.json already exists`));
      assert.ok(fs.readFileSync(file).equals(saved), 'Cancel left the saved circuit as it was');
      assert.ok(!fs.existsSync(second), 'Cancel wrote no second file');

      // Discover Circuit (the suite and the active model: the same name) asks too; Keep both writes a fresh name.
      await runCommand(page, 'CircuitLens: Discover Circuit');
      assert.match(await answerDialog(page, 'Keep both', 60_000), new RegExp(`${box.offered}\\.circuit\\.json already exists`));
      await until(`${second} to exist`, async () => fs.existsSync(second), (x) => x, 30_000);
      assert.ok(fs.readFileSync(file).equals(saved), 'Discover Circuit left the saved circuit byte for byte');
      const discovered = JSON.parse(fs.readFileSync(second, 'utf8'));
      assert.match(discovered.name, /greedy/);
      assert.equal(discovered.model.path, 'induction-gpt2.onnx');
      await page.locator('.tabs-container .tab.active', { hasText: path.basename(second) }).waitFor({ state: 'visible', timeout: 15_000 });
    },
  },
  {
    name: 'canaries: Test Explorer results, the failing check in Problems at its line, the status bar count',
    timeoutMs: 90_000,
    async run(d) {
      const { page, workspace } = d;
      const { name, line, col } = workspace.failing;
      await page.locator('.activitybar .action-label[aria-label^="Testing"]').click();
      const tests = page.locator('.part.sidebar');
      const roots = await until('the Test Explorer to show the three canary files with results', () => treeRows(tests),
        (rows) => ['broken', 'induction-gpt2', 'induction-llama'].every((n) => rows.some((r) => r.level === 1 && /\((Passed|Failed)\)/.test(r.label) && r.label.startsWith(`${n}.canary.yaml`))), 60_000);
      assert.match(roots.find((r) => r.label.startsWith('broken.canary.yaml'))!.label, /\(Failed\)/);
      assert.match(roots.find((r) => r.label.startsWith('induction-gpt2.canary.yaml'))!.label, /\(Passed\)/);
      assert.match(roots.find((r) => r.label.startsWith('induction-llama.canary.yaml'))!.label, /\(Passed\)/);
      const broken = tests.locator('.monaco-list-row[aria-level="1"]', { hasText: 'broken.canary.yaml' });
      if ((await broken.getAttribute('aria-expanded')) !== 'true') await broken.locator('.monaco-tl-twistie').click();
      const checks = await until('the broken canary\'s 7 checks', () => treeRows(tests), (rows) => rows.filter((r) => r.level === 2).length >= 7, 15_000);
      const kids = checks.filter((r) => r.level === 2);
      assert.deepEqual(kids.filter((r) => /\(Failed\)/.test(r.label)).map((r) => r.label.replace(/ \(Failed\).*/, '')), [name]);
      assert.equal(kids.filter((r) => /\(Passed\)/.test(r.label)).length, 6);

      await runCommand(page, 'View: Focus Problems');
      const marker = page.locator('.markers-panel .monaco-list-row', { hasText: `check "${name}" failed` });
      await marker.first().waitFor({ state: 'visible', timeout: 15_000 });
      const text = await marker.first().innerText();
      assert.ok(text.includes(`[Ln ${line}, Col ${col}]`), `the Problems row says "${text}", expected [Ln ${line}, Col ${col}]`);
      assert.match(text, /faithfulness \(logit_diff\) 0\.8\d* is not >= 0\.99/);

      await openFileByName(page, 'broken.canary.yaml');
      await page.locator('.monaco-editor .squiggly-error').first().waitFor({ state: 'attached', timeout: 10_000 });
      const status = page.locator('.statusbar-item[id$="circuitlens.canaries"]');
      const aria = await until('the canary status item', async () => (await status.getAttribute('aria-label')) ?? '', (a) => /\d+ passing, \d+ failing/.test(a), 15_000);
      const [, passing, failing] = /(\d+) passing, (\d+) failing/.exec(aria)!;
      assert.equal(Number(failing), 1, aria);
      assert.equal(Number(passing), 20, aria);
      assert.match(await status.innerText(), /20\s+1/);
      await screenshot(d, 'canaries.png');
    },
  },
  {
    name: 'Open Attention View and Open Logit Lens trace a prompt: heatmaps with token labels, entropy and top tokens',
    timeoutMs: 150_000,
    async run(d) {
      const { page } = d;
      await runCommand(page, 'View: Hide Panel');
      await page.locator('.activitybar .action-label[aria-label="CircuitLens"]').click();
      await explorerPane(page).waitFor({ state: 'visible', timeout: 15_000 });
      await runCommand(page, 'CircuitLens: Open Attention View');
      const box = await answerInputBox(page);
      assert.match(box.title, /Attention: prompt to trace/);
      // The offered prompt is the active suite's first task prompt, not a built-in sentence.
      const first = firstSuitePrompt(d.workspace.dir);
      assert.equal(box.offered, first.text, 'the input box offers the suite\'s first prompt');
      const tokens = box.offered.trim().split(/\s+/);
      const att = await webviewOf(page, 'attention', 60_000);
      await att.locator('#entropy table').waitFor({ state: 'visible', timeout: 90_000 });
      const labels = (await att.locator('#plot .xtick text').allTextContents()).map((t) => t.trim());
      assert.deepEqual(labels, tokens.map((t, i) => `${i}:${t}`));
      const cells = await att.locator('#entropy td').allInnerTexts();
      assert.equal(cells.length, 2 * 4);
      for (const c of cells) assert.ok(Number.isFinite(Number(c)) && Number(c) >= 0, `entropy cell "${c}"`);
      assert.match(await att.locator('#backend').innerText(), /^(WebGPU|WASM)/);
      // Entropy per head and position beside the pattern; the selected head at five softmax temperatures below.
      await att.locator('#entropy-map .ytick').first().waitFor({ state: 'attached', timeout: 30_000 });
      assert.deepEqual((await att.locator('#entropy-map .ytick text').allTextContents()).map((t) => t.trim()).sort(), ['h0', 'h1', 'h2', 'h3']);
      await att.locator('#temperature table.temperature').waitFor({ state: 'visible', timeout: 90_000 });
      assert.equal(await att.locator('#temperature h3').innerText(), 'Softmax temperature of a1.h0');
      assert.equal(await att.locator('#temperature-plots .plot.small').count(), 5);
      const temps = await att.locator('#temperature table.temperature tbody tr').allInnerTexts();
      assert.deepEqual(temps.map((r) => r.split('\t')[0]), ['τ = 0.5', 'τ = 0.75', 'τ = 1', 'τ = 1.5', 'τ = 2']);
      await screenshot(d, 'attention.png');
      await att.locator('#temperature').scrollIntoViewIfNeeded();
      await screenshot(d, 'attention-temperature.png');

      await runCommand(page, 'CircuitLens: Open Logit Lens');
      const lensBox = await answerInputBox(page);
      assert.match(lensBox.title, /Logit lens: prompt to trace/);
      assert.equal(lensBox.offered, first.text);
      const lens = await webviewOf(page, 'lens', 60_000);
      await lens.locator('#top-tokens table').waitFor({ state: 'visible', timeout: 90_000 });
      assert.deepEqual((await lens.locator('#plot .xtick text').allTextContents()).map((t) => t.trim()), tokens.map((t, i) => `${i}:${t}`));
      assert.deepEqual((await lens.locator('#plot .ytick text').allTextContents()).map((t) => t.trim()), ['after layer 0', 'after layer 1']);
      // The suite's prompt brings its answer and foil: the lens reads out logit(answer) − logit(foil).
      assert.match(await lens.locator('#top-tokens p').innerText(), new RegExp(`answer\\s*${first.answer}, foil\\s*${first.foil}\\)`));
      const rows = await lens.locator('#top-tokens tr').allInnerTexts();
      assert.equal(rows.length, 2);
      // The induction model continues the repeat by its last layer: after "A B … A" comes "B".
      const next = tokens[tokens.indexOf(tokens[tokens.length - 1]!) + 1]!;
      assert.ok(rows[1]!.startsWith('after layer 1') && rows[1]!.split('\t')[1]?.startsWith(`${next} (`), `top token after layer 1: "${rows[1]}", expected ${next}`);
      await screenshot(d, 'logit-lens.png');
    },
  },
  {
    name: 'Sweep Suite draws metric and accuracy against the padding, with intervals and n* marked, equal to the CLI\'s',
    timeoutMs: 180_000,
    async run(d) {
      const { page, workspace } = d;
      fs.copyFileSync(path.join(EXAMPLES, SWEEP_SUITE), path.join(workspace.dir, SWEEP_SUITE));
      const cliRun = cliSweep(path.join(workspace.dir, SWEEP_SUITE), path.join(workspace.dir, 'induction-gpt2.onnx'));
      await until(`the explorer to list ${SWEEP_SUITE}`, () => explorerSections(page), (x) => names(x['Suites']).includes(SWEEP_SUITE), 30_000);
      await runCommand(page, 'CircuitLens: Sweep Suite');
      await pickQuickItem(page, SWEEP_SUITE);
      const f = await webviewOf(page, 'sweep', 120_000);
      await f.locator('#points tbody tr').first().waitFor({ state: 'visible', timeout: 60_000 });
      const want = await cliRun;
      const rows = (await f.locator('#points tbody tr').allInnerTexts()).map((r) => r.split('\t').map((c) => c.trim()));
      assert.deepEqual(rows.map((r) => Number(r[0])), want.points.map((p) => p.value));
      rows.forEach((r, i) => {
        assertClose3(r[2]!, want.points[i]!.metric, `logit_diff at n=${r[0]}`);
        assertClose3(r[4]!, want.points[i]!.accuracy, `accuracy at n=${r[0]}`);
      });
      assert.ok(want.critical, 'the CLI finds n*');
      assert.match(await f.locator('#critical').innerText(), new RegExp(`n\\* = ${want.critical!.value.toFixed(3).replace('.', '\\.')}: accuracy falls below 0\\.5`));
      // The plot: two lines and two bands, the dashed n* line and its label.
      assert.equal(await f.locator('#plot .scatterlayer g.trace').count(), 6);
      assert.match((await f.locator('#plot .annotation-text').allTextContents()).join(' '), /n\* = \d+\.\d{3}/);
      await screenshot(d, 'sweep.png');
    },
  },
  {
    name: 'Redundancy (Backup Heads) draws the pair-interaction heatmap; Relate Circuits the overlap matrix and hubs; the explorer marks hubs',
    timeoutMs: 180_000,
    async run(d) {
      const { page, workspace } = d;
      await runCommand(page, 'CircuitLens: Redundancy (Backup Heads)');
      // Two suites by now (the sweep step added one): the command asks which.
      await pickQuickItem(page, /(^|\s)induction\.suite\.yaml/);
      const f = await webviewOf(page, 'redundancy', 90_000);
      await f.locator('#plot .xtick').first().waitFor({ state: 'attached', timeout: 90_000 });
      const ticks = (await f.locator('#plot .xtick text').allTextContents()).map((t) => t.trim());
      assert.equal(ticks.length, 10, `${ticks}`);
      // Under accuracy the view lists the backups `circuitlens redundancy` finds (the CLI of this checkout).
      await f.locator('#metric').selectOption('accuracy');
      const cli = await cliJson(['redundancy', path.join(workspace.dir, 'induction.suite.yaml'), '--model', path.join(workspace.dir, 'induction-gpt2.onnx'), '--metric', 'accuracy', '--json']) as { backups: { accuracy: string[][] } };
      assert.ok(cli.backups.accuracy.length > 0, 'the gpt2 demo has backups under accuracy');
      const rows = await until('the accuracy backups table', async () => f.locator('#backups tbody tr').allInnerTexts(), (r) => r.length === cli.backups.accuracy.length, 15_000);
      assert.deepEqual(rows.map((r) => r.split('\t')[0]!.trim()), cli.backups.accuracy.map(([a, b]) => `${a} + ${b}`));
      assert.match(await f.locator('#plot .gtitle').textContent() ?? '', /interaction in accuracy/);
      await screenshot(d, 'redundancy.png');

      await runCommand(page, 'CircuitLens: Relate Circuits');
      await page.locator('.quick-input-widget .monaco-list-row').first().waitFor({ state: 'visible', timeout: 15_000 });
      await page.keyboard.press('Enter');
      // The Backup Heads panel is still open and also a "redundancy" view: wait for the one that lists hubs.
      const r = await webviewOf(page, 'redundancy', 120_000, '#hubs');
      const circuits = (await until('the workspace circuits', async () => fs.readdirSync(workspace.dir).filter((x) => x.endsWith('.circuit.json')), (x) => x.length >= 2, 5000)).length;
      assert.equal((await r.locator('#pairs tbody tr').allInnerTexts()).length, (circuits * (circuits - 1)) / 2);
      const hubs = (await r.locator('#hubs tbody tr td:first-child').allInnerTexts()).map((t) => t.trim());
      assert.ok(hubs.includes('a1.h1'), `hubs: ${hubs}`);
      await screenshot(d, 'relate.png');

      // The explorer marks hub nodes inside a circuit (two or more circuits in the workspace).
      const pane = explorerPane(page);
      // (Clicking the container's icon while its side bar shows would hide it.)
      if (!(await pane.isVisible())) await page.locator('.activitybar .action-label[aria-label="CircuitLens"]').click();
      await pane.waitFor({ state: 'visible', timeout: 15_000 });
      const row = pane.locator('.monaco-list-row[aria-level="2"][aria-label^="induction-gpt2.circuit.json "]');
      if ((await row.getAttribute('aria-expanded')) !== 'true') await row.locator('.monaco-tl-twistie').click();
      const kids = await until('hub marks under induction-gpt2.circuit.json', () => treeRows(pane), (x) => x.some((k) => k.level === 3 && k.name === 'a1.h1' && /^hub · in \d+\/\d+ circuits/.test(k.description)), 15_000);
      assert.ok(kids.some((k) => k.level === 3 && k.name === 'a1.h1'));
    },
  },
  {
    name: 'Pruning Curves… draws metric and accuracy against sparsity per strategy, with the circuit kept by outside-circuit, equal to the CLI\'s',
    timeoutMs: 180_000,
    async run(d) {
      const { page, workspace } = d;
      const suite = path.join(workspace.dir, 'induction.suite.yaml');
      const circuit = path.join(workspace.dir, 'induction-gpt2.circuit.json');
      const cliRun = cliJson(['prune', suite, '--model', path.join(workspace.dir, 'induction-gpt2.onnx'), '--circuit', circuit, '--strategy', 'magnitude,outside-circuit,layer-waves', '--json']) as
        Promise<{ curves: { strategy: string; points: { sparsity: number; reached: number; metric: number; accuracy: number; kl: number }[] }[]; circuit: { maxSparsity: number } }>;
      await runCommand(page, 'CircuitLens: Pruning Curves');
      // Two suites (the sweep step added one), then the circuit to keep.
      await clickQuickItem(page, 'pick a suite', /(^|\s)induction\.suite\.yaml/);
      await pickQuickItem(page, /(^|\s)induction-gpt2\.circuit\.json/);
      const f = await webviewOf(page, 'prune', 120_000);
      await f.locator('#points tbody tr').first().waitFor({ state: 'visible', timeout: 120_000 });
      const want = await cliRun;
      const rows = (await f.locator('#points tbody tr').allInnerTexts()).map((r) => r.split('\t').map((c) => c.trim()));
      const points = want.curves.flatMap((c) => c.points.map((p) => ({ strategy: c.strategy, ...p })));
      assert.deepEqual(rows.map((r) => `${r[0]} ${r[1]}`), points.map((p) => `${p.strategy} ${p.sparsity}`));
      rows.forEach((r, i) => {
        assertClose3(r[2]!.replace(' (capped)', ''), points[i]!.reached, `sparsity reached, ${r[0]} at ${r[1]}`);
        assertClose3(r[3]!, points[i]!.metric, `logit_diff, ${r[0]} at ${r[1]}`);
        assertClose3(r[4]!, points[i]!.accuracy, `accuracy, ${r[0]} at ${r[1]}`);
      });
      assert.ok(rows.some((r) => r[0] === 'outside-circuit' && r[2]!.endsWith('(capped)')), 'outside-circuit is capped where the circuit owns the rest');
      // The plot: metric and accuracy for each of three strategies, and the outside-circuit limit marked.
      assert.equal(await f.locator('#plot .scatterlayer g.trace').count(), 6);
      assert.match((await f.locator('#plot .annotation-text').allTextContents()).join(' '), /all but the circuit pruned/);
      await screenshot(d, 'prune.png');
    },
  },
  {
    name: 'Quantization Sensitivity… draws metric, accuracy, KL and faithfulness per weight scope (int4), equal to the CLI\'s',
    timeoutMs: 180_000,
    async run(d) {
      const { page, workspace } = d;
      const suite = path.join(workspace.dir, 'induction.suite.yaml');
      const cliRun = cliJson(['sensitivity', suite, '--model', path.join(workspace.dir, 'induction-gpt2.onnx'), '--quantize', 'int4',
        '--circuit', path.join(workspace.dir, 'induction-gpt2.circuit.json'), '--json']) as Promise<{ rows: { scope: string; metric: number; accuracy: number; faithfulness: number }[] }>;
      await runCommand(page, 'CircuitLens: Quantization Sensitivity');
      // Three quick picks in a row (suite, quantization, circuit): each opens as the last closes.
      await clickQuickItem(page, 'pick a suite', /(^|\s)induction\.suite\.yaml/);
      await clickQuickItem(page, 'quantize the weights to', /^int4\s*per output channel/);
      await pickQuickItem(page, /(^|\s)induction-gpt2\.circuit\.json/);
      const f = await webviewOf(page, 'sensitivity', 120_000);
      await f.locator('#rows tbody tr').first().waitFor({ state: 'visible', timeout: 120_000 });
      const want = await cliRun;
      const rows = (await f.locator('#rows tbody tr').allInnerTexts()).map((r) => r.split('\t').map((c) => c.trim()));
      assert.deepEqual(rows.map((r) => r[0]), ['(unquantized)', ...want.rows.map((r) => r.scope)]);
      rows.slice(1).forEach((r, i) => {
        assertClose3(r[4]!, want.rows[i]!.metric, `logit_diff of ${r[0]}`);
        assertClose3(r[6]!, want.rows[i]!.accuracy, `accuracy of ${r[0]}`);
        assertClose3(r[8]!, want.rows[i]!.faithfulness, `faithfulness of ${r[0]}`);
      });
      assert.match(await f.locator('#quantization').innerText(), /^int4$/);
      // The plot: one bar chart per quantity (metric, accuracy, KL, faithfulness), a bar per scope.
      assert.equal(await f.locator('#plot .barlayer .trace').count(), 4);
      assert.equal(await f.locator('#plot .barlayer .point').count(), 4 * want.rows.length);
      await screenshot(d, 'sensitivity.png');
    },
  },
  {
    name: 'Compare With… draws the fine-tuned checkpoint against the demo model: nodes by change, the circuit on both, metrics equal to the CLI\'s',
    timeoutMs: 240_000,
    async run(d) {
      const { page, workspace } = d;
      fs.cpSync(path.join(EXAMPLES, 'checkpoints'), path.join(workspace.dir, 'checkpoints'), { recursive: true });
      const a = path.join(workspace.dir, 'induction-gpt2.onnx');
      const b = path.join(workspace.dir, 'checkpoints', FINETUNED);
      const cliRun = cliCompare(a, b, path.join(workspace.dir, 'induction.suite.yaml'), path.join(workspace.dir, 'induction-gpt2.circuit.json'));
      const listed = (x: Record<string, Row[]>) => names(x['Models']).includes(FINETUNED);
      // The file watcher once missed the model copied inside a new folder on CI (the explorer never listed it); the
      // explorer's Refresh then finds it. Said when needed, so a watcher that keeps missing it shows in the log.
      if (!(await until(`the explorer to list ${FINETUNED}`, () => explorerSections(page), listed, 20_000).then(() => true, () => false))) {
        console.log(`step 14: the explorer did not list ${FINETUNED} from the file watcher within 20 s; CircuitLens: Refresh Explorer`);
        await runCommand(page, 'CircuitLens: Refresh Explorer');
        await until(`the explorer to list ${FINETUNED} after Refresh Explorer`, () => explorerSections(page), listed, 20_000);
      }
      await runCommand(page, 'CircuitLens: Select Model');
      await pickQuickItem(page, FINETUNED);
      await runCommand(page, 'CircuitLens: Compare With');
      // Three quick picks in a row (baseline, suite, circuit): each opens as the last closes.
      await clickQuickItem(page, 'Compare induction-gpt2-finetuned.onnx with', /(^|\s)induction-gpt2\.onnx/);
      await clickQuickItem(page, 'pick a suite', /(^|\s)induction\.suite\.yaml/);
      await pickQuickItem(page, /(^|\s)induction-gpt2\.circuit\.json/);
      // An earlier graph view may still be visible: wait for the one that shows the diff.
      const f = await webviewOf(page, 'graph', 180_000, '#diff-metrics tbody tr');
      const want = await cliRun;
      const rows = new Map((await f.locator('#diff-metrics tbody tr').allInnerTexts()).map((r) => r.split('\t').map((c) => c.trim())).map((r) => [r[0]!, r]));
      assertClose3(rows.get('accuracy (task)')![1]!, want.a.task.accuracy, 'task accuracy on A');
      assertClose3(rows.get('accuracy (task)')![2]!, want.b.task.accuracy, 'task accuracy on B');
      assertClose3(rows.get('logit_diff (task)')![2]!, want.b.task.value, 'task logit_diff on B');
      assertClose3(rows.get('circuit faithfulness (logit_diff)')![1]!, want.circuit.faithfulnessA, 'circuit faithfulness on A');
      assertClose3(rows.get('circuit faithfulness (logit_diff)')![2]!, want.circuit.faithfulnessB, 'circuit faithfulness on B');
      const summary = await f.locator('#diff-summary').innerText();
      assert.match(summary, /\d+ nodes gained, \d+ lost, \d+ unchanged/);
      assert.match(summary, new RegExp(`entered ${want.circuit.entered.length ? want.circuit.entered.join(', ') : 'none'}`));
      // The plot: both circuit rings in the legend.
      assert.match((await f.locator('#plot .legendtext').allTextContents()).join(' '), /circuit on A \(\d+\).*re-discovered on B \(\d+\)/);
      await screenshot(d, 'diff.png');
    },
  },
  {
    name: 'with circuitlens.broker set, Attribute Suite runs on a worker (Redis, circuitlens worker): an unreachable broker is an error notification, Cancel takes the queued chunks back, node scores equal the CLI\'s local attribute; Quantization Sensitivity\'s models are measured there too',
    timeoutMs: 240_000,
    async run(d) {
      const { page, workspace } = d;
      const suite = path.join(workspace.dir, 'induction.suite.yaml');
      const model = path.join(workspace.dir, 'induction-gpt2.onnx');
      const want = cliJson(['attribute', suite, '--model', model, '--json']) as Promise<{ nodes: { id: string; score: number }[] }>;
      // A redis-server of the step's own (no persistence); the worker on the default queue comes later.
      const cluster = await brokerCluster(fs.mkdtempSync(path.join(os.tmpdir(), 'cl-step-redis-')));
      const attribute = async () => {
        await runCommand(page, 'CircuitLens: Attribute Suite (Open Attribution Graph)');
        await clickQuickItem(page, 'pick a suite', /(^|\s)induction\.suite\.yaml/);
      };
      try {
        await runCommand(page, 'View: Close All Editors');
        await runCommand(page, 'CircuitLens: Select Model');
        await pickQuickItem(page, /(^|\s)induction-gpt2\.onnx/);
        // A broker nobody listens on: said at once, in a notification, before anything runs.
        const closed = await freePort();
        await setBroker(page, workspace.dir, `redis://127.0.0.1:${closed}`);
        await attribute();
        assert.match(await waitForNotification(page, /cannot reach the broker/, 30_000), new RegExp(`cannot reach the broker at redis://127\\.0\\.0\\.1:${closed}.*circuitlens\\.broker`));
        // The broker, no worker yet: the chunks wait in Redis; Cancel on the progress notification takes them back.
        await setBroker(page, workspace.dir, cluster.url);
        await attribute();
        await until('chunks queued in Redis', () => cluster.queued('circuitlens'), (q) => q.wait > 0, 60_000);
        const toast = page.locator('.notification-toast', { hasText: 'attributing induction.suite.yaml' });
        await toast.locator('.monaco-button', { hasText: 'Cancel' }).click({ timeout: 10_000 });
        await until('the queued chunks to be removed', () => cluster.queued('circuitlens'), (q) => q.wait === 0 && q.all === 0, 30_000);
        // A worker: the graph comes from its rows.
        const worker = (await cluster.workers('circuitlens', 1))[0]!;
        await attribute();
        const f = await webviewOf(page, 'graph', 120_000);
        const labels = await until('the node list to show 10 scored nodes', () => f.locator('#node-list label').allTextContents(), (t) => t.length === 10, 60_000);
        assert.match(await f.locator('#legend').innerText(), /by path patching/);
        const shown = Object.fromEntries(labels.map((l) => /^(\S+)\s+\(score (-?[\d.]+)\)$/.exec(l.trim())!).map((m) => [m[1]!, m[2]!]));
        const local = Object.fromEntries((await want).nodes.map((n) => [n.id, n.score.toFixed(4)]));
        assert.deepEqual(shown, local, 'node scores by the worker, as the graph shows them, against the CLI\'s local run');
        assert.deepEqual(workKinds([worker]), ['edge-patching', 'sets'], 'the worker computed the ablation sets and the edge sets');
        assert.deepEqual(await cluster.queued('circuitlens'), { wait: 0, all: 0 }, 'a finished run leaves no chunks');
        // Quantization Sensitivity: each quantized model is measured on the worker; the rows equal the CLI's local run.
        const wantRows = cliJson(['sensitivity', suite, '--model', model, '--quantize', 'int8', '--json']) as Promise<{ rows: { scope: string; metric: number; accuracy: number }[] }>;
        // The attribute run has ended (its progress notification is gone) before the next command starts.
        await toast.waitFor({ state: 'hidden', timeout: 60_000 });
        // Once more if a pick vanishes under the click: on a loaded CI machine the quantize pick once closed before
        // it could be clicked (cause not reproduced here); what took its place is printed, and a second failure fails.
        for (let attempt = 1; ; attempt++) {
          try {
            await runCommand(page, 'CircuitLens: Quantization Sensitivity');
            await clickQuickItem(page, 'pick a suite', /(^|\s)induction\.suite\.yaml/);
            await clickQuickItem(page, 'quantize the weights to', /^int8\s*per output channel/);
            await clickQuickItem(page, 'measure a circuit', /^No circuit/);
            break;
          } catch (e) {
            if (attempt > 1 || !/^quick pick ".*": could not pick/.test((e as Error).message)) throw e;
            console.log(`step 15, first try: ${(e as Error).message.split('\n')[0]}`);
            await page.keyboard.press('Escape');
            await page.locator('.quick-input-widget').waitFor({ state: 'hidden', timeout: 5000 }).catch(() => undefined);
          }
        }
        const sf = await webviewOf(page, 'sensitivity', 120_000);
        await sf.locator('#rows tbody tr').first().waitFor({ state: 'visible', timeout: 120_000 });
        const rows = (await sf.locator('#rows tbody tr').allInnerTexts()).map((r) => r.split('\t').map((x) => x.trim()));
        const q = await wantRows;
        assert.deepEqual(rows.map((r) => r[0]), ['(unquantized)', ...q.rows.map((r) => r.scope)]);
        rows.slice(1).forEach((r, i) => {
          assertClose3(r[4]!, q.rows[i]!.metric, `logit_diff of ${r[0]}, from the worker`);
          assertClose3(r[6]!, q.rows[i]!.accuracy, `accuracy of ${r[0]}, from the worker`);
        });
        assert.equal([...worker.err.matchAll(/chunk cl-\S+ \(variant, calls/g)].length, q.rows.length, 'the worker measured each quantized model');
      } finally {
        await setBroker(page, workspace.dir, undefined).catch(() => undefined);
        await cluster.close();
      }
    },
  },
];
