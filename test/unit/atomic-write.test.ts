// writeFileAtomic: a writer killed at any moment leaves the old file or the new one, never a broken one.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '../../core/nodejs/workspace';

test('killing the writer mid-way leaves the old or the new file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-atomic-'));
  const target = path.join(dir, 'big.circuit.json');
  const version = (v: number) => JSON.stringify({ schemaVersion: 1, name: `v${v}`, nodes: [], notes: 'x'.repeat(4_000_000 + v) });
  await writeFileAtomic(target, version(0));
  // A child that rewrites the file in a loop with ever newer versions, killed at random moments.
  const bundle = path.join(__dirname, '..', '..', 'helpers', 'atomic-writer.js');
  let lastSeen = 0;
  for (let round = 0; round < 12; round++) {
    const child = spawn(process.execPath, [bundle, target, String(round * 1000)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((r) => setTimeout(r, 150 + ((round * 53) % 270)));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const text = fs.readFileSync(target, 'utf8');
    const parsed = JSON.parse(text) as { name: string; notes: string };
    const v = Number(parsed.name.slice(1));
    assert.equal(text, version(v), `round ${round}: the file is a complete version`);
    assert.ok(v >= lastSeen);
    lastSeen = v;
  }
  assert.ok(lastSeen > 0, 'the writer got through at least one write');
  const leftovers = fs.readdirSync(dir).filter((f) => f !== 'big.circuit.json');
  // Temporary files of killed writers may remain (named .big.circuit.json.*.tmp), never the target half-written.
  for (const f of leftovers) assert.match(f, /^\.big\.circuit\.json\.\d+\.[0-9a-f]+\.tmp$/);
});
