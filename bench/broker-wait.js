// `node bench/broker-wait.js [100,1000,4000] [--json]`: the coordinator's cost of waiting for chunk results
// (bench/src/broker-wait.ts). Bundles it into bench/.build/ (as bench/run.js does) and runs it; needs redis-server.
const esbuild = require('esbuild');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const out = path.join(__dirname, '.build', 'broker-wait.js');
esbuild.buildSync({
  entryPoints: [path.join(__dirname, 'src', 'broker-wait.ts')], outfile: out,
  bundle: true, platform: 'node', format: 'cjs', target: 'node20', sourcemap: true, logLevel: 'warning', packages: 'external',
});
const r = spawnSync(process.execPath, ['--enable-source-maps', out, ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
