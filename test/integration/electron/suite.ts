// The same steps as extension.test.ts, in desktop VS Code (Electron) instead of code-server. Runs where VS Code can
// be downloaded — not in this repository's offline CI, and not part of `npm test` (esbuild bundles only *.test.ts):
//
//   npm i --no-save @vscode/test-electron && npm run package
//   npx esbuild test/integration/electron/suite.ts --bundle --platform=node --format=cjs --packages=external \
//     --outfile=out/electron/suite.js && xvfb-run -a node --test out/electron/suite.js
//
// @vscode/test-electron downloads VS Code (VSCODE_VERSION, default stable) and gives its CLI to install the .vsix;
// playwright-core's Electron driver then opens the window, which the steps drive exactly like the code-server tab.
import { after, before, describe, test } from 'node:test';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { _electron, type ElectronApplication } from 'playwright-core';
import { ROOT } from '../../helpers';
import { prepareWorkspace, STEPS, type Driver, type Shared } from '../steps';
import { WORKBENCH_SETTINGS } from '../vscode';

interface TestElectron {
  downloadAndUnzipVSCode(version?: string): Promise<string>;
  resolveCliArgsFromVSCodeExecutablePath(exe: string): string[];
}

describe('CircuitLens in desktop VS Code (Electron)', () => {
  let app: ElectronApplication | undefined;
  let driver: Driver;
  let dir: string;
  const shared: Shared = {};
  let failed = false;

  before(async () => {
    // Not a dependency of the project: installed by hand where this suite runs (see above).
    const te = require('@vscode/test-electron') as TestElectron;
    const exe = await te.downloadAndUnzipVSCode(process.env.VSCODE_VERSION ?? 'stable');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'circuitlens-electron-'));
    const dirs = ['--user-data-dir', path.join(dir, 'user-data'), '--extensions-dir', path.join(dir, 'extensions')];
    fs.mkdirSync(path.join(dir, 'user-data', 'User'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'user-data', 'User', 'settings.json'), JSON.stringify(WORKBENCH_SETTINGS));
    const install = spawnSync(te.resolveCliArgsFromVSCodeExecutablePath(exe)[0]!, [...dirs, '--install-extension', path.join(ROOT, 'circuitlens.vsix')], { encoding: 'utf8' });
    if (install.status !== 0) throw new Error(`installing circuitlens.vsix failed:\n${install.stdout}${install.stderr}`);
    const workspace = prepareWorkspace();
    app = await _electron.launch({ executablePath: exe, args: [workspace.dir, ...dirs, '--disable-workspace-trust', '--skip-welcome', '--skip-release-notes', '--disable-telemetry', '--disable-updates', '--no-sandbox'] });
    const page = await app.firstWindow();
    await page.setViewportSize({ width: 1400, height: 900 });
    await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60_000 });
    driver = { page, workspace, screenshotDir: path.join(ROOT, 'test-results', 'electron-screenshots') };
  }, { timeout: 300_000 });

  after(async () => {
    await app?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    if (driver) fs.rmSync(driver.workspace.dir, { recursive: true, force: true });
  });

  for (const [i, step] of STEPS.entries()) {
    test(`${i + 1}. ${step.name}`, { timeout: step.timeoutMs }, async (t) => {
      if (failed) { t.skip('an earlier step failed'); return; }
      try { await step.run(driver, shared); } catch (e) { failed = true; throw e; }
    });
  }
});
