// bench/src/report.ts keepOtherSections: a partial bench run keeps the committed numbers of the sections it did not
// run (latest.json is git-ignored, so a fresh checkout's run knows only its own sections).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { keepOtherSections } from '../../bench/src/report';

test('a partial bench run keeps the other sections of the summary, in their places', () => {
  const existing = '# numbers\nold preamble\n\n## 1. Forward\nf1\n\n## 5. Graph\ng1\n\n## 8. Workers\nw-old\n\n## How to run\nh\n';
  const rendered = '# numbers\nnew preamble\n\n## 8. Workers\nw-new\n\n## How to run\nh\n';
  assert.equal(keepOtherSections(rendered, existing), '# numbers\nnew preamble\n\n## 1. Forward\nf1\n\n## 5. Graph\ng1\n\n## 8. Workers\nw-new\n\n## How to run\nh\n');
  assert.equal(keepOtherSections(rendered, undefined), rendered);
  // A section the new run has and the old file lacks stays where the run put it.
  assert.equal(keepOtherSections('# n\n\n## 2. Sweep\ns\n', '# n\n\n## 1. Forward\nf\n'), '# n\n\n## 1. Forward\nf\n## 2. Sweep\ns\n');
});
