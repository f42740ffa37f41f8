// One build for every target: the CLI and the extension host (Node, CommonJS), the webview (browser),
// and the tests (each *.test.ts bundled to out/, run by `node --test`).
const esbuild = require('esbuild');
const fs = require('node:fs');
const path = require('node:path');

const args = new Set(process.argv.slice(2));
const watch = args.has('--watch');

function testEntries(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...testEntries(p));
    else if (e.name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const pkg = require('./package.json');
const node = { bundle: true, platform: 'node', format: 'cjs', target: 'node20', sourcemap: true, logLevel: 'warning', define: { CIRCUITLENS_VERSION: JSON.stringify(pkg.version) } };

/**
 * The extension host runs onnxruntime-node (native): stage its JS and this platform's binaries under
 * dist/node_modules so the .vsix carries them (vsce packs with --no-dependencies).
 */
function stageNativeRuntime() {
  const copy = (from, to) => fs.cpSync(from, to, { recursive: true });
  const dest = 'dist/node_modules';
  fs.rmSync(dest, { recursive: true, force: true });
  for (const pkgName of ['onnxruntime-node', 'onnxruntime-common']) {
    const src = path.join(__dirname, 'node_modules', pkgName);
    copy(path.join(src, 'package.json'), path.join(dest, pkgName, 'package.json'));
    copy(path.join(src, 'dist'), path.join(dest, pkgName, 'dist'));
  }
  const bin = path.join(__dirname, 'node_modules', 'onnxruntime-node', 'bin');
  for (const napi of fs.readdirSync(bin)) {
    const plat = path.join(bin, napi, process.platform, process.arch);
    if (fs.existsSync(plat)) copy(plat, path.join(dest, 'onnxruntime-node', 'bin', napi, process.platform, process.arch));
  }
}

/**
 * ONNX protobuf codec as static code generated from core/onnx/schema.ts: no `new Function`, so it also runs
 * under the webviews' CSP (protobufjs' reflection codegen needs 'unsafe-eval').
 */
async function generateOnnxCodec() {
  const out = 'core/onnx/generated/onnx-static.js';
  const schemaTs = 'core/onnx/schema.ts';
  if (fs.existsSync(out) && fs.statSync(out).mtimeMs > fs.statSync(schemaTs).mtimeMs && fs.statSync(out).mtimeMs > fs.statSync(__filename).mtimeMs) return;
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'cl-schema-'));
  await esbuild.build({ entryPoints: [schemaTs], bundle: true, platform: 'node', format: 'cjs', outfile: path.join(tmp, 'schema.js'), logLevel: 'error' });
  fs.writeFileSync(path.join(tmp, 'onnx.json'), JSON.stringify(require(path.join(tmp, 'schema.js')).ONNX_SCHEMA));
  const pbjs = require('protobufjs-cli/pbjs');
  await new Promise((resolve, reject) => pbjs.main(['-t', 'static-module', '-w', 'commonjs', '--no-create', '--no-verify', '--no-convert', '--no-delimited', '--no-typeurl', '--no-comments', '-o', out, path.join(tmp, 'onnx.json')], (err) => (err ? reject(err) : resolve())));
  fs.rmSync(tmp, { recursive: true, force: true });
}

async function main() {
  await generateOnnxCodec();
  const builds = [];
  if (!args.has('--tests-only')) {
    builds.push(esbuild.build({ ...node, entryPoints: ['cli/main.ts'], outfile: 'dist/cli.js', packages: 'external' }));
    if (fs.existsSync('extension/main.ts')) {
      // onnxruntime-node stays external (native binary, shipped in the .vsix); everything else is bundled.
      // Bundled ESM dependencies (onnxruntime-web's node build) read import.meta.url: give them this file's URL.
      builds.push(esbuild.build({ ...node, entryPoints: ['extension/main.ts'], outfile: 'dist/extension.js', external: ['vscode', 'onnxruntime-node'],
        banner: { js: 'const __import_meta_url = require("url").pathToFileURL(__filename).href;' }, define: { ...node.define, 'import.meta.url': '__import_meta_url' } }));
    }
  }
  if (!args.has('--tests-only')) {
    // Webview: UI bundles and the compute worker (onnxruntime-web), plus the WASM binary the worker is handed.
    const web = { bundle: true, platform: 'browser', format: 'iife', target: 'es2022', sourcemap: true, logLevel: 'error', minify: !args.has('--dev'),
      define: { 'import.meta.url': '""', CIRCUITLENS_VERSION: JSON.stringify(pkg.version) } };
    builds.push(esbuild.build({ ...web, entryPoints: ['webview/compute/worker.ts'], outfile: 'dist/webview/worker.js' }));
    for (const view of ['graph', 'attention', 'lens', 'sweep', 'redundancy', 'prune', 'sensitivity']) {
      if (fs.existsSync(`webview/${view}/main.ts`)) builds.push(esbuild.build({ ...web, entryPoints: [`webview/${view}/main.ts`], outfile: `dist/webview/${view}.js` }));
    }
    fs.mkdirSync('dist/webview', { recursive: true });
    fs.copyFileSync(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm'), 'dist/webview/ort-wasm-simd-threaded.jsep.wasm');
    fs.copyFileSync(require.resolve('plotly.js-dist-min'), 'dist/webview/plotly.min.js');
    for (const f of ['codicon.css', 'codicon.ttf']) fs.copyFileSync(require.resolve(`@vscode/codicons/dist/${f}`), `dist/webview/${f}`);
  }
  if (args.has('--vsix-stage')) stageNativeRuntime();
  if (args.has('--tests') || args.has('--tests-only')) {
    fs.rmSync('out', { recursive: true, force: true });
    builds.push(esbuild.build({ ...node, entryPoints: testEntries('test'), outdir: 'out/test', outbase: 'test', packages: 'external' }));
    // Child processes of tests live outside out/test, where node --test would take every .js for a test file.
    builds.push(esbuild.build({ ...node, entryPoints: ['test/unit/atomic-writer.ts'], outfile: 'out/helpers/atomic-writer.js', packages: 'external' }));
    builds.push(esbuild.build({ ...node, entryPoints: ['test/engine/denormals-child.ts'], outfile: 'out/helpers/denormals-child.js', packages: 'external' }));
  }
  await Promise.all(builds);
}

main().catch((e) => { console.error(e.message ?? e); process.exit(1); });
