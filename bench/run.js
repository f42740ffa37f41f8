// `npm run bench` entry point (after `node esbuild.js` has built dist/, which the graph-view benchmark serves).
// Bundles the benchmark sources (bench/src/*.ts, importing core/ directly) into bench/.build/ and runs them.
// Arguments are passed through: `npm run bench -- --only forward,peak --reps 3`. See bench/README.md.
const esbuild = require('esbuild');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const here = __dirname;
const out = path.join(here, '.build');

esbuild.buildSync({
  entryPoints: { main: path.join(here, 'src', 'main.ts'), 'memory-child': path.join(here, 'src', 'memory-child.ts') },
  outdir: out, bundle: true, platform: 'node', format: 'cjs', target: 'node20', sourcemap: true, logLevel: 'warning', packages: 'external',
});

const r = spawnSync(process.execPath, ['--enable-source-maps', path.join(out, 'main.js'), ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
