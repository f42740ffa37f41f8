// Child process of atomic-write.test.ts: rewrites a file atomically, forever, with increasing versions.
import { writeFileAtomic } from '../../core/nodejs/workspace';

const [target, start] = process.argv.slice(2);
(async () => {
  for (let v = Number(start) + 1; ; v++) {
    await writeFileAtomic(target!, JSON.stringify({ schemaVersion: 1, name: `v${v}`, nodes: [], notes: 'x'.repeat(4_000_000 + v) }));
  }
})();
