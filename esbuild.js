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

async function main() {
  const builds = [];
  if (!args.has('--tests-only')) {
    builds.push(esbuild.build({ ...node, entryPoints: ['cli/main.ts'], outfile: 'dist/cli.js', packages: 'external' }));
    if (fs.existsSync('extension/main.ts')) {
      builds.push(esbuild.build({ ...node, entryPoints: ['extension/main.ts'], outfile: 'dist/extension.js', external: ['vscode', 'onnxruntime-node', 'onnxruntime-web'] }));
    }
  }
  if (!args.has('--tests-only')) {
    // Webview: UI bundles and the compute worker (onnxruntime-web), plus the WASM binary the worker is handed.
    const web = { bundle: true, platform: 'browser', format: 'iife', target: 'es2022', sourcemap: true, logLevel: 'error', minify: !args.has('--dev'),
      define: { 'import.meta.url': '""', CIRCUITLENS_VERSION: JSON.stringify(pkg.version) } };
    builds.push(esbuild.build({ ...web, entryPoints: ['webview/compute/worker.ts'], outfile: 'dist/webview/worker.js' }));
    for (const view of ['graph', 'attention', 'lens']) {
      if (fs.existsSync(`webview/${view}/main.ts`)) builds.push(esbuild.build({ ...web, entryPoints: [`webview/${view}/main.ts`], outfile: `dist/webview/${view}.js` }));
    }
    fs.mkdirSync('dist/webview', { recursive: true });
    fs.copyFileSync(require.resolve('onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm'), 'dist/webview/ort-wasm-simd-threaded.jsep.wasm');
    fs.copyFileSync(require.resolve('plotly.js-dist-min'), 'dist/webview/plotly.min.js');
  }
  if (args.has('--tests') || args.has('--tests-only')) {
    fs.rmSync('out', { recursive: true, force: true });
    builds.push(esbuild.build({ ...node, entryPoints: testEntries('test'), outdir: 'out/test', outbase: 'test', packages: 'external' }));
  }
  await Promise.all(builds);
}

main().catch((e) => { console.error(e.message ?? e); process.exit(1); });
