// Drives the packaged extension in a real VS Code: code-server (installed by scripts/setup-code-server.sh
// into .tools/) in Debian's Chromium through playwright-core. Offline: no browser or VS Code downloads.
import { spawn, execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser, type FrameLocator, type Page } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CIRCUITLENS_CHROMIUM ?? '/usr/bin/chromium';
/** Flags for Chromium as root in a container, with no network besides localhost. Playwright adds --headless,
 *  --no-sandbox and a fresh temporary --user-data-dir itself (it refuses one in args). */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

/** The code-server launcher: $CODE_SERVER, else .tools/bin/code-server in the nearest folder above this file or the cwd. */
export function codeServerBin(): string {
  if (process.env.CODE_SERVER) return process.env.CODE_SERVER;
  for (const start of [__dirname, process.cwd()]) {
    for (let d = start; d !== path.dirname(d); d = path.dirname(d)) {
      const p = path.join(d, '.tools', 'bin', 'code-server');
      if (fs.existsSync(p)) return p;
    }
  }
  throw new Error('code-server not found: run scripts/setup-code-server.sh (or set CODE_SERVER)');
}

/** Chromium for the workbench; `webgpu` adds --enable-unsafe-webgpu (navigator.gpu in webviews). */
export function launchBrowser(opts: { webgpu?: boolean; args?: string[] } = {}): Promise<Browser> {
  const args = [...CHROMIUM_ARGS, ...(opts.webgpu ? ['--enable-unsafe-webgpu'] : []), ...(opts.args ?? [])];
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args });
}

/** User settings of a quiet, offline, trusted test workbench (code-server or desktop VS Code). */
export const WORKBENCH_SETTINGS: Record<string, unknown> = {
  'workbench.startupEditor': 'none', 'workbench.tips.enabled': false, 'security.workspace.trust.enabled': false,
  'telemetry.telemetryLevel': 'off', 'update.mode': 'none', 'extensions.autoUpdate': false,
  'extensions.autoCheckUpdates': false, 'chat.disableAIFeatures': true,
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
  // Modal dialogs drawn by the workbench (as code-server always does), not by the OS, so tests can answer them.
  'window.dialogStyle': 'custom',
};

export interface CodeServer {
  url: string;
  /** Temporary folder holding user-data/, extensions/, config.yaml and code-server.log. */
  dir: string;
  /** Everything code-server printed so far. */
  log(): string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Starts code-server on a free 127.0.0.1 port with fresh user-data/extensions dirs and `vsix` installed;
 *  resolves once its HTTP server answers. `stop()` kills it and removes the temporary folder
 *  (kept when CIRCUITLENS_KEEP_TMP is set). */
export async function startCodeServer(opts: { vsix?: string; workspace?: string; settings?: Record<string, unknown>; timeoutMs?: number; workspaceTrust?: boolean }): Promise<CodeServer> {
  const bin = codeServerBin();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'circuitlens-cs-'));
  const userData = path.join(dir, 'user-data');
  const extensions = path.join(dir, 'extensions');
  const config = path.join(dir, 'config.yaml'); // empty: keeps code-server off ~/.config/code-server
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.mkdirSync(extensions);
  fs.writeFileSync(config, '');
  // workspaceTrust: Workspace Trust on, as VS Code ships (the workbench asks whether to trust a folder it opens).
  const trust = opts.workspaceTrust ? { 'security.workspace.trust.enabled': true } : {};
  fs.writeFileSync(path.join(userData, 'User', 'settings.json'), JSON.stringify({ ...WORKBENCH_SETTINGS, ...trust, ...opts.settings }, null, 2));
  const common = ['--config', config, '--user-data-dir', userData, '--extensions-dir', extensions];
  // An unreachable local gallery, so nothing queries open-vsx.org.
  const env = { ...process.env, EXTENSIONS_GALLERY: JSON.stringify({ serviceUrl: 'http://127.0.0.1:9/gallery', itemUrl: 'http://127.0.0.1:9/item' }) };

  if (opts.vsix) {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(bin, [...common, '--install-extension', path.resolve(opts.vsix!)], { timeout: 120_000, env }, (err, stdout, stderr) =>
        err ? reject(new Error(`code-server --install-extension failed: ${err.message}\n${stdout}${stderr}`)) : resolve(stdout + stderr)))
      .catch((e: unknown) => { fs.rmSync(dir, { recursive: true, force: true }); throw e; });
    if (!/successfully installed/i.test(out)) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw new Error(`installing ${opts.vsix} failed:\n${out}`);
    }
  }

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = [...common, '--auth', 'none', '--disable-telemetry', '--disable-update-check', ...(opts.workspaceTrust ? [] : ['--disable-workspace-trust']),
    '--disable-getting-started-override', '--bind-addr', `127.0.0.1:${port}`, ...(opts.workspace ? [opts.workspace] : [])];
  // Own process group, so stop() also reaches code-server's children (its server, extension host, pty host).
  const proc = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  const logFile = fs.createWriteStream(path.join(dir, 'code-server.log'));
  const onData = (b: Buffer) => { output += b.toString(); logFile.write(b); };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let alive = true;
  void exited.then(() => { alive = false; });

  const kill = (sig: NodeJS.Signals) => { try { process.kill(-proc.pid!, sig); } catch { /* already gone */ } };
  const stop = async () => {
    if (alive) {
      kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise<void>((r) => { timer = setTimeout(r, 5000); })]);
      clearTimeout(timer);
      if (alive) { kill('SIGKILL'); await exited; }
    }
    logFile.end();
    if (!process.env.CIRCUITLENS_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    if (!alive) { await stop(); throw new Error(`code-server exited during startup:\n${output}`); }
    try {
      if ((await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) })).ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) { await stop(); throw new Error(`code-server did not answer on ${url}:\n${output}`); }
    await sleep(200);
  }
  return { url, dir, log: () => output, stop };
}

/** Opens the workbench on `workspaceFolder` in a new context of `browser`; resolves once `.monaco-workbench` shows. */
export async function openWorkbench(browser: Browser, url: string, workspaceFolder: string, timeoutMs = 60_000): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${url}/?folder=${encodeURIComponent(path.resolve(workspaceFolder))}`, { timeout: timeoutMs });
  await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: timeoutMs });
  return page;
}

/** Runs a command by its palette title ("Category: Title"): F1, types it, picks the matching row. Retries while the
 *  palette finds nothing yet ("0 Results" / "No matching commands": extension contributions arrive a few seconds
 *  after the workbench on a cold start). A retry never runs the command twice: VS Code closes the palette when a row
 *  is accepted, so a palette still open with the ">title" filter 5 s after the click means the click was lost. */
export async function runCommand(page: Page, title: string, timeoutMs = 30_000): Promise<void> {
  const widget = page.locator('.quick-input-widget');
  const input = widget.locator('input.input');
  const row = widget.locator('.monaco-list-row', { hasText: title }).first();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (!(await input.isVisible())) await page.keyboard.press('F1');
      await input.fill(`>${title}`, { timeout: 3000 });
      await row.waitFor({ state: 'visible', timeout: 2000 });
      await row.click({ timeout: 3000 });
      // Done when the palette closes, or when the command opened its own quick pick or input box in the same
      // widget (its input then no longer holds the ">title" filter).
      const until = Date.now() + 5000;
      while (await widget.isVisible() && (await input.inputValue().catch(() => '')).startsWith('>')) {
        if (Date.now() > until) throw new Error('the palette stayed open');
        await sleep(100);
      }
      return;
    } catch (e) {
      const palette = (await widget.innerText({ timeout: 1000 }).catch(() => '')).replace(/\s+/g, ' ').trim();
      if (Date.now() > deadline) throw new Error(`command "${title}" not found in the palette (it shows: "${palette}")`, { cause: e });
      await page.keyboard.press('Escape');
      await widget.waitFor({ state: 'hidden', timeout: 2000 }).catch(() => undefined);
      await sleep(1000);
    }
  }
}

/** Waits for a notification toast containing `text` and returns its message. */
export async function waitForNotification(page: Page, text: string | RegExp, timeoutMs = 15_000): Promise<string> {
  const toast = page.locator('.notification-toast .notification-list-item-message', { hasText: text }).first();
  await toast.waitFor({ state: 'visible', timeout: timeoutMs });
  return toast.innerText();
}

/** The content frame of the active webview (VS Code nests it: iframe.webview > #active-frame). */
export function webviewFrame(page: Page): FrameLocator {
  return page.frameLocator('iframe.webview').frameLocator('#active-frame');
}

/** The content frame of the visible webview whose view is `view` (CircuitLens sets <body data-view>); waits for it.
 *  Unlike webviewFrame(), this copes with several webviews (hidden panels keep theirs when retainContextWhenHidden).
 *  `has` (a selector) waits for the one that shows it, where two panels share a view (Backup Heads, Relate Circuits). */
export async function webviewOf(page: Page, view: string, timeoutMs = 30_000, has?: string): Promise<FrameLocator> {
  const inner = (name: string) => page.locator(`iframe.webview[name="${name}"]`).contentFrame().locator('#active-frame').contentFrame();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const name of await page.locator('iframe.webview').evaluateAll((els) => els.map((e) => e.getAttribute('name') ?? ''))) {
      if (!name || !(await page.locator(`iframe.webview[name="${name}"]`).isVisible())) continue;
      if (await inner(name).locator(`body[data-view="${view}"]${has ? ` ${has}` : ''}`).count().catch(() => 0)) return inner(name);
    }
    if (Date.now() > deadline) throw new Error(`no visible "${view}" webview after ${timeoutMs} ms`);
    await sleep(250);
  }
}

/** Waits for the open quick pick to list `label` and picks it. */
export async function pickQuickItem(page: Page, label: string | RegExp, timeoutMs = 15_000): Promise<void> {
  const widget = page.locator('.quick-input-widget');
  const row = widget.locator('.monaco-list-row', { hasText: label }).first();
  await row.waitFor({ state: 'visible', timeout: timeoutMs });
  await row.click();
  await widget.waitFor({ state: 'hidden', timeout: 5000 });
}

/** Waits for an input box (showInputBox), optionally types `value` over its text, presses Enter; returns its title
 *  line and the text it first offered. */
export async function answerInputBox(page: Page, value?: string, timeoutMs = 15_000): Promise<{ title: string; offered: string }> {
  const widget = page.locator('.quick-input-widget');
  const input = widget.locator('input.input');
  await widget.waitFor({ state: 'visible', timeout: timeoutMs });
  await input.waitFor({ state: 'visible', timeout: timeoutMs });
  const title = (await widget.locator('.quick-input-title').innerText().catch(() => '')).trim();
  const offered = await input.inputValue();
  if (value !== undefined) await input.fill(value);
  await input.press('Enter');
  await widget.waitFor({ state: 'hidden', timeout: 5000 });
  return { title, offered };
}

/** Opens a workspace file by name through Quick Open (the palette without ">"); resolves when its tab is active. */
export async function openFileByName(page: Page, name: string, timeoutMs = 15_000): Promise<void> {
  const widget = page.locator('.quick-input-widget');
  const input = widget.locator('input.input');
  if (!(await input.isVisible())) await page.keyboard.press('F1');
  await input.fill(name);
  await widget.locator('.monaco-list-row', { hasText: name }).first().waitFor({ state: 'visible', timeout: timeoutMs });
  await input.press('Enter');
  await widget.waitFor({ state: 'hidden', timeout: 5000 });
  await page.locator('.tabs-container .tab.active', { hasText: name }).waitFor({ state: 'visible', timeout: timeoutMs });
}

/** Waits for a modal dialog (showWarningMessage with modal: true), clicks the button `button`; returns its message. */
export async function answerDialog(page: Page, button: string, timeoutMs = 15_000): Promise<string> {
  const dialog = page.locator('.monaco-dialog-box');
  await dialog.waitFor({ state: 'visible', timeout: timeoutMs });
  const message = (await dialog.locator('.dialog-message-text').innerText().catch(() => '')).trim();
  await dialog.locator('.dialog-buttons .monaco-button', { hasText: new RegExp(`^${button}$`) }).click();
  await dialog.waitFor({ state: 'hidden', timeout: 5000 });
  return message;
}
