// The packaged extension (circuitlens.vsix) in a real VS Code client: code-server (installed into .tools/ by
// scripts/setup-code-server.sh) in Debian's Chromium through playwright-core, one server and one browser for the
// whole file. The steps (test/integration/steps.ts) open the Circuit Explorer, select a model, open the
// attribution graph, mark and ablate a circuit (checked against the Node engine), save it, read the canaries'
// results (Test Explorer, Problems, status bar) and open the attention and logit-lens views; screenshots go to
// media/screenshots/. Skipped when code-server is not installed or circuitlens.vsix is missing (`npm run package`).
import { after, before, describe, test } from 'node:test';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { ROOT } from '../helpers';
import { prepareWorkspace, STEPS, type Driver, type Shared } from './steps';
import { codeServerBin, launchBrowser, openWorkbench, startCodeServer, type CodeServer } from './vscode';

const VSIX = path.join(ROOT, 'circuitlens.vsix');

const skip = ((): string | false => {
  try { codeServerBin(); } catch (e) { return `${(e as Error).message}`; }
  if (!fs.existsSync(VSIX)) return `${path.relative(ROOT, VSIX)} is missing: run npm run package`;
  return false;
})();

/** Newest source file the .vsix is built from, to warn about a stale package. */
function newestSource(): number {
  let t = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) { if (e.name !== 'generated') walk(p); } else if (/\.(ts|css|json)$/.test(e.name)) t = Math.max(t, fs.statSync(p).mtimeMs);
    }
  };
  for (const d of ['extension', 'webview', 'core', 'media']) if (fs.existsSync(path.join(ROOT, d))) walk(path.join(ROOT, d));
  return t;
}

function findFile(dir: string, name: string): string | undefined {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) { const f = findFile(p, name); if (f) return f; } else if (e.name === name) return p;
  }
  return undefined;
}

describe('CircuitLens in VS Code (code-server in Chromium)', { skip }, () => {
  let server: CodeServer | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let driver: Driver;
  const shared: Shared = {};
  let broken: string | undefined;

  let note: string | undefined;

  before(async () => {
    if (fs.statSync(VSIX).mtimeMs < newestSource()) note = `note: ${path.basename(VSIX)} is older than the sources; run npm run package to test the current code`;
    const workspace = prepareWorkspace();
    // Backend of the webviews: auto (WebGPU through SwiftShader, else WASM) unless CIRCUITLENS_IT_BACKEND says.
    const backend = process.env.CIRCUITLENS_IT_BACKEND ?? 'auto';
    server = await startCodeServer({ vsix: VSIX, workspace: workspace.dir, settings: { 'circuitlens.webviewBackend': backend } });
    browser = await launchBrowser({ webgpu: backend !== 'wasm' });
    page = await openWorkbench(browser, server.url, workspace.dir);
    driver = { page, workspace };
  }, { timeout: 120_000 });

  after(async () => {
    await browser?.close().catch(() => undefined);
    await server?.stop();
    if (driver && !process.env.CIRCUITLENS_KEEP_TMP) fs.rmSync(driver.workspace.dir, { recursive: true, force: true });
  });

  for (const [i, step] of STEPS.entries()) {
    test(`${i + 1}. ${step.name}`, { timeout: step.timeoutMs }, async (t) => {
      if (broken) { t.skip(`step "${broken}" failed`); return; }
      if (note) { t.diagnostic(note); note = undefined; }
      const t0 = Date.now();
      try {
        await step.run(driver, shared);
        t.diagnostic(`${Date.now() - t0} ms`);
      } catch (e) {
        broken = `${i + 1}`;
        // What a failure needs to be understood: the window as it was, and the extension's log.
        const dir = path.join(ROOT, 'test-results');
        fs.mkdirSync(dir, { recursive: true });
        await page?.screenshot({ path: path.join(dir, `integration-step-${i + 1}.png`) }).catch(() => undefined);
        const log = server && findFile(path.join(server.dir, 'user-data', 'logs'), 'CircuitLens.log');
        if (log) t.diagnostic(`CircuitLens.log (last lines):\n${fs.readFileSync(log, 'utf8').split('\n').slice(-15).join('\n')}`);
        t.diagnostic(`screenshot: test-results/integration-step-${i + 1}.png`);
        throw e;
      }
    });
  }
});
