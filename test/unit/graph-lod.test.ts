// The graph view's level of detail (webview/graph/edge-lod.ts): the edges shown are a prefix of the edges sorted by
// importance, each drawn trace's segments for that prefix are a subarray of arrays built once, and hover targets
// stay off the nodes. Run on GPT-2-small's full edge layout (32,491 edges).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { seededRandom } from '../../core/analysis/sweep/stats';
import { allComponentNodes, allEdges } from '../../core/ids';
import { buildEdgeLod, countAtLeast, countBelow, edgeEnd, nearestEdge, shownEdges, traceSlice, widthBucket, WIDTH_BUCKETS, type LodEdge } from '../../webview/graph/edge-lod';

const L = 12;
const H = 12;

/** The view's node positions (webview/graph/main.ts position). */
function positions(): Map<string, [number, number]> {
  const pos = new Map<string, [number, number]>([['input', [(H - 1) / 2, 0]], ['logits', [(H - 1) / 2, 2 * L + 1]]]);
  for (const id of allComponentNodes({ layers: L, heads: H })) {
    const m = /^a(\d+)\.h(\d+)$/.exec(id);
    pos.set(id, m ? [Number(m[2]), 2 * Number(m[1]) + 1] : [(H - 1) / 2, 2 * Number(id.slice(1)) + 2]);
  }
  return pos;
}

function gpt2Edges(seed = 7): LodEdge[] {
  const r = seededRandom(seed);
  return allEdges({ layers: L, heads: H }).map((e) => {
    const score = (r() - 0.5) * Math.exp(-4 * r());
    return { source: e.source, target: e.target, score, size: Math.abs(score), kind: score >= 0 ? 'pos' : 'neg', describe: () => `${e.source}->${e.target}` };
  });
}

test('binary searches agree with a scan', () => {
  const r = seededRandom(1);
  for (let t = 0; t < 50; t++) {
    const desc = Float64Array.from({ length: Math.floor(r() * 40) }, () => Math.round(r() * 10) / 10).sort().reverse();
    const asc = Int32Array.from({ length: Math.floor(r() * 40) }, () => Math.floor(r() * 30)).sort();
    const cut = Math.round(r() * 11) / 10;
    const n = Math.floor(r() * 32);
    assert.equal(countAtLeast(desc, cut), desc.filter((v) => v >= cut).length);
    assert.equal(countBelow(asc, n), asc.filter((v) => v < n).length);
  }
});

test('GPT-2-small: 32,491 edges, sorted once; any prefix is drawn exactly by the traces\' subarrays', () => {
  const pos = positions();
  const all = gpt2Edges();
  assert.equal(all.length, 32491);
  const lod = buildEdgeLod(all, pos, ['pos', 'neg']);
  assert.equal(lod.edges.length, 32491, 'every edge has both ends on the plot');
  for (let i = 1; i < lod.size.length; i++) assert.ok(lod.size[i - 1]! >= lod.size[i]!, 'sorted by importance, descending');
  assert.equal(lod.traces.length, 2 * WIDTH_BUCKETS.length);
  assert.equal(lod.traces.reduce((n, t) => n + t.rank.length, 0), 32491, 'the traces partition the edges');
  for (const shown of [0, 1, 300, 1000, 32491]) {
    const seg = new Map<string, number>();
    let count = 0;
    for (const t of lod.traces) {
      const s = traceSlice(t, shown);
      count += s.count;
      assert.equal(s.x.length, 3 * s.count);
      for (let j = 0; j < s.count; j++) {
        assert.ok(Number.isNaN(s.x[3 * j + 2]!) && Number.isNaN(s.y[3 * j + 2]!), 'segments are NaN-separated');
        const k = `${s.x[3 * j]},${s.y[3 * j]},${s.x[3 * j + 1]},${s.y[3 * j + 1]},${t.kind}`;
        seg.set(k, (seg.get(k) ?? 0) + 1);
      }
    }
    assert.equal(count, shown);
    // The same segments as the `shown` strongest edges, each in the trace of its sign.
    for (const e of lod.edges.slice(0, shown)) {
      const a = edgeEnd(e.source, pos)!;
      const b = edgeEnd(e.target, pos)!;
      const k = `${a[0]},${a[1]},${b[0]},${b[1]},${e.kind}`;
      assert.ok(seg.get(k), `${e.source}->${e.target} drawn`);
      seg.set(k, seg.get(k)! - 1);
    }
  }
  // A threshold and a cap: the strongest edges at or above the cut, at most the cap.
  const cut = lod.size[499]!;
  assert.equal(shownEdges(lod, cut, Infinity), countAtLeast(lod.size, cut));
  assert.ok(shownEdges(lod, cut, Infinity) >= 500);
  assert.equal(shownEdges(lod, cut, 300), 300);
  assert.equal(shownEdges(lod, Infinity, 300), 0);
});

test('width buckets: the thinner of what |score| and rank earn', () => {
  assert.equal(widthBucket(0, 1), 0);
  assert.equal(widthBucket(0, 0.3), 1, 'the strongest edge of a weak graph is not the widest');
  assert.equal(widthBucket(50, 1), 1, 'rank 50 is not among the widest even at the top score');
  assert.equal(widthBucket(100000, 1), WIDTH_BUCKETS.length - 1);
  assert.equal(widthBucket(0, 0), WIDTH_BUCKETS.length - 1);
});

test('edge hover: the nearest drawn edge within 5 px, strongest first on ties; none beyond', () => {
  const pos = positions();
  const lod = buildEdgeLod(gpt2Edges(), pos, ['pos', 'neg']);
  // 1 data unit = 80 px across, 20 px up (y grows upwards: pixel 0 at the top of 26 rows).
  const xa = { offset: 60, from: -0.5, scale: 80 };
  const ya = { offset: 10 + 25.5 * 20, from: -0.5, scale: -20 };
  const px = (x: number) => xa.offset + (x - xa.from) * xa.scale;
  const py = (y: number) => ya.offset + (y - ya.from) * ya.scale;
  const shown = 300;
  for (const r of [0, 7, 150, 299]) {
    const [x0, y0, x1, y1] = lod.ends.subarray(4 * r, 4 * r + 4);
    // A third of the way along edge r, the nearest edge is r or one crossing there at the same distance (0).
    const qx = px(x0! + (x1! - x0!) / 3);
    const qy = py(y0! + (y1! - y0!) / 3);
    const got = nearestEdge(lod, shown, qx, qy, xa, ya);
    assert.ok(got >= 0 && got <= r, `edge ${r}: found ${got}`);
    if (got !== r) {
      // Another, stronger edge passes through the same pixel.
      const [a0, b0, a1, b1] = lod.ends.subarray(4 * got, 4 * got + 4);
      const cross = (px(a1!) - px(a0!)) * (qy - py(b0!)) - (py(b1!) - py(b0!)) * (qx - px(a0!));
      assert.ok(Math.abs(cross) / Math.hypot(px(a1!) - px(a0!), py(b1!) - py(b0!)) < 5);
    }
  }
  // Far outside the plot, and with nothing drawn: none.
  assert.equal(nearestEdge(lod, shown, -500, -500, xa, ya), -1);
  const [x0, y0, x1, y1] = lod.ends.subarray(0, 4);
  assert.equal(nearestEdge(lod, 0, px((x0! + x1!) / 2), py((y0! + y1!) / 2), xa, ya), -1);
});
