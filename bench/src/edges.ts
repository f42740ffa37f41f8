// Bench 3b: edge-level attribution (core/analysis/edge-context.ts) over the same prompts as the node-level gradient
// bench, relative to one forward pass of CircuitLens itself.
//   - EAP over every edge: edgeGradientScores, steps 1 (one forward + backward of the EAP graph per chunk of rows),
//     alternating with PyTorch's hook-based edge EAP (bench/torch_ref.py edge_eap: split q/k/v inputs, tensor
//     hooks contracting each destination's gradient with a buffer of upstream outputs) and its forward;
//   - exact edge patching: edgePatchingScores, one ablated run of every prompt per edge. On models with many
//     edges it is timed on a few edges and extrapolated to all of them (an estimate, labelled as such).
import { edgeGradientScores, edgePatchingScores } from '../../core/analysis/attribute/edges';
import { edgeRowsPerCall, evaluateEdgeSets, prepareEdges } from '../../core/analysis/edge-context';
import { formatEdgeId } from '../../core/ids';
import type { EdgeScore } from '../../core/analysis/attribute/nodes';
import { prepare } from '../../core/analysis/evaluate';
import { eapNodeScores } from '../../core/analysis/attribute/gradient';
import { alternate, log, round, timed, type Stats, type TorchRef } from './harness';
import { loadCircuitLens, loadTorch, type ModelSpec } from './models';
import { forTorch, inductionSuite } from './suite';

export interface EdgeBenchOptions {
  reps: number;
  prompts: number;
  promptTokens: number;
  /**
   * Exact patching: 'all' times edgePatchingScores over every edge; a number times that many single-edge sets
   * (plus nothing else) and extrapolates to all edges.
   */
  patching: 'all' | number;
  /** At most this many rows per engine call for edge EAP (maxRows; the engine's memory budget may give fewer). */
  eapRows: number;
  /** At most this many rows per engine call for exact patching (likewise). */
  patchRows: number;
  torchThreads: number;
}

export interface EdgeResult {
  model: string;
  label: string;
  prompts: number;
  promptTokens: number;
  edges: number;
  /** Upstream nodes (input, every head, every MLP). */
  upstreamNodes: number;
  /** Rows per engine call used: the options' caps, lowered by the engine's memory budget (edgeRowsPerCall). */
  eapRows: number;
  patchRows: number;
  /**
   * RSS of the whole process (MiB, sampled every 5 ms): just before and the peak during the first edge EAP call
   * and the first patching call (each on its own engine). "Before" includes what earlier benchmarks of the same
   * process left resident; peak − before is what the call added (its session build included).
   */
  rssMiB: { before: number; eapPeak: number; patchingBefore: number; patchingPeak: number };
  /** First edgeGradientScores call: builds the edge gradient session (autodiff + onnxruntime load), then runs. */
  firstEapCallMs: number;
  /** First patching call: builds the edge forward session, then runs. */
  firstPatchingCallMs: number;
  /** Edge EAP and a forward, alternating (first engine). */
  ms: Record<string, Stats>;
  /** Exact patching (`patching.name`) and a forward, alternating (second engine). */
  patchMs: Record<string, Stats>;
  /** Edge EAP time / forward time (median / median). */
  eapToForward: number;
  /** Exact patching over every edge: measured ('all') or per edge × edges (estimate). */
  patching: { name: string; edgesTimed: number; measured: boolean; msAllEdges: number; msPerEdge: number; toForward: number };
  /** Edge EAP scores: how many, how many not finite, the largest |score|. */
  eapScores: { count: number; nonFinite: number; maxAbs: number };
  /** PyTorch's edge EAP scores vs CircuitLens': max |Δ| over all edges. */
  torchAgreement: { maxAbsDiff: number };
  /** Edge EAP time / forward time, each side against its own forward (both unembedding the last position only). */
  ratioToForward: { circuitlens: number; pytorch: number };
  /**
   * Consistency: at zero ablation a node's EAP score is the sum of the EAP scores of its outgoing edges (the
   * node's output reaches the metric only through them): max |Σ edges − eapNodeScores| over heads and MLPs.
   */
  nodeSumCheck: { maxAbsDiff: number; maxAbsNodeScore: number };
  /** Exact vs EAP over all edges (when patching ran on every edge): Pearson correlation and max |Δ|. */
  eapVsExact?: { pearson: number; maxAbsDiff: number; maxAbsExact: number };
}

export async function edgeBench(torch: TorchRef, spec: ModelSpec, opts: EdgeBenchOptions): Promise<EdgeResult> {
  log(`\n[edges] ${spec.label}: edge attribution over ${opts.prompts} prompts × ${opts.promptTokens} tokens`);
  const time = (f: () => Promise<unknown>) => async () => { const t0 = performance.now(); await f(); return performance.now() - t0; };
  // Two rounds of alternation, each on a freshly loaded engine released after it: the edge gradient session and
  // the edge forward session of GPT-2-small do not fit in this machine's memory together.

  // 1. Edge EAP against a forward (and the node-sum check).
  let engine = (await loadCircuitLens(spec, 'node')).engine;
  // The node-level gradient bench's prompts (seed 31).
  const prompts = inductionSuite(opts.prompts, opts.promptTokens, engine.info.vocab, 31);
  const ids = prompts.map((p) => p.ids);
  let ctx = await prepare(engine, prompts, 'zero', { maxRows: opts.eapRows });
  let ec = await prepareEdges(ctx);
  const E = ec.ids.length;
  const upstream = new Set(engine.edges.edges.map((e) => e.source)).size;
  log(`  ${E} edges from ${upstream} upstream nodes`);

  const rssBefore = rssMiB();
  const eapRss = sampleRss();
  const firstEap = await timed(() => edgeGradientScores(ec, 'logit_diff', 1));
  const eapPeak = eapRss.stop();
  const eap = firstEap.value;
  const nonFinite = eap.filter((s) => !Number.isFinite(s.score)).length;
  const maxAbs = Math.max(...eap.map((s) => Math.abs(s.score)));
  const eapRows = edgeRowsPerCall(ec, opts.promptTokens, 'eap');
  log(`  edge EAP first call (builds the edge gradient session) ${(firstEap.ms / 1e3).toFixed(1)} s, peak RSS ${eapPeak} MiB (${rssBefore} before; ${eapRows} rows per call); ${eap.length} scores, ${nonFinite} not finite, max |score| ${maxAbs.toExponential(2)}`);
  await loadTorch(torch, spec, opts.torchThreads);
  const torchEap = () => torch.call<{ ms: number; scores: number[] }>({ cmd: 'edge_eap', key: spec.key, prompts: forTorch(prompts) });
  const ref = await torchEap();
  const torchAgreement = { maxAbsDiff: Math.max(...eap.map((s, i) => Math.abs(s.score - (ref.scores[i] ?? NaN)))) };
  log(`  PyTorch edge EAP first call ${(ref.ms / 1e3).toFixed(1)} s; max |Δ score| vs CircuitLens ${torchAgreement.maxAbsDiff.toExponential(2)}`);
  const eapEngine = engine;
  await engine.run({ ids, lastOnly: true }); // warm-up forward
  const ms = await alternate([
    { name: 'circuitlens edge eap', run: time(() => edgeGradientScores(ec, 'logit_diff', 1)) },
    { name: 'circuitlens forward', run: time(() => eapEngine.run({ ids, lastOnly: true })) },
    { name: 'pytorch edge eap', run: async () => (await torchEap()).ms },
    // Last-position unembedding on both sides, as in their EAP runs (CircuitLens' lastOnly, PyTorch's edge_eap).
    { name: 'pytorch forward', run: async () => (await torch.call<{ ms: number }>({ cmd: 'forward', key: spec.key, ids, mode: 'last' })).ms },
  ], opts.reps, `edges ${spec.key} (eap)`, { warmup: false });
  await torch.call({ cmd: 'unload', key: spec.key });
  const eapToForward = round(ms['circuitlens edge eap']!.median / ms['circuitlens forward']!.median, 3);
  const ratioToForward = { circuitlens: eapToForward, pytorch: round(ms['pytorch edge eap']!.median / ms['pytorch forward']!.median, 3) };
  log(`  edge EAP / forward: CircuitLens ${eapToForward}×, PyTorch ${ratioToForward.pytorch}× (of medians)`);

  // Σ of a node's outgoing edge scores = its node EAP score (zero ablation).
  const nodes = await eapNodeScores(ctx, 'logit_diff');
  const sums = new Map<string, number>();
  for (const s of eap) sums.set(s.source, (sums.get(s.source) ?? 0) + s.score);
  const nodeSumCheck = {
    maxAbsDiff: Math.max(...nodes.map((n) => Math.abs((sums.get(n.id) ?? NaN) - n.score))),
    maxAbsNodeScore: Math.max(...nodes.map((n) => Math.abs(n.score))),
  };
  log(`  Σ outgoing edge EAP vs node EAP: max |Δ| ${nodeSumCheck.maxAbsDiff.toExponential(2)} (max |node score| ${nodeSumCheck.maxAbsNodeScore.toFixed(3)})`);
  await engine.release();

  // 2. Exact patching against a forward: every edge, or a few single-edge sets spread over the layout (every
  // edge costs the same ablated run of every prompt: edge runs do not skip layers).
  engine = (await loadCircuitLens(spec, 'node')).engine;
  ctx = await prepare(engine, prompts, 'zero', { maxRows: opts.patchRows });
  ec = await prepareEdges(ctx);
  const all = opts.patching === 'all' || opts.patching >= E;
  const subset = all ? [] : Array.from({ length: opts.patching as number }, (_, i) => Math.floor(((i + 0.5) * E) / (opts.patching as number)));
  const subsetSets = subset.map((e) => { const w = new Float32Array(E); w[e] = 1; return w; });
  const runPatching = async (): Promise<EdgeScore[] | undefined> => (all ? (await edgePatchingScores(ec, 'logit_diff')).edges : (await evaluateEdgeSets(ec, subsetSets), undefined));
  const rssBeforePatching = rssMiB();
  const patchRss = sampleRss();
  const firstPatch = await timed(runPatching);
  const patchingPeak = patchRss.stop();
  const patchRows = edgeRowsPerCall(ec, opts.promptTokens, 'forward');
  log(`  patching first call (${all ? `all ${E} edges` : `${subset.length} of ${E} edges`}) ${(firstPatch.ms / 1e3).toFixed(1)} s, peak RSS ${patchingPeak} MiB (${rssBeforePatching} before; ${patchRows} rows per call)`);
  let eapVsExact: EdgeResult['eapVsExact'];
  if (firstPatch.value) {
    const exact = firstPatch.value;
    const byId = new Map(eap.map((s) => [formatEdgeId(s), s.score]));
    const xs = exact.map((s) => s.score);
    const ys = exact.map((s) => byId.get(formatEdgeId(s))!);
    eapVsExact = { pearson: pearson(xs, ys), maxAbsDiff: Math.max(...xs.map((x, i) => Math.abs(x - ys[i]!))), maxAbsExact: Math.max(...xs.map(Math.abs)) };
    log(`  exact patching vs EAP over ${E} edges: Pearson ${eapVsExact.pearson.toFixed(3)}, max |Δ| ${eapVsExact.maxAbsDiff.toExponential(2)} (max |exact| ${eapVsExact.maxAbsExact.toFixed(3)})`);
  }
  const patchName = all ? 'circuitlens edge patching (all edges)' : `circuitlens edge patching (${subset.length} edges)`;
  const patchEngine = engine;
  await engine.run({ ids, lastOnly: true }); // warm-up forward
  const patchMs = await alternate([
    { name: patchName, run: time(runPatching) },
    { name: 'circuitlens forward', run: time(() => patchEngine.run({ ids, lastOnly: true })) },
  ], opts.reps, `edges ${spec.key} (patching)`, { warmup: false });
  await engine.release();
  const fwd = patchMs['circuitlens forward']!.median;
  const timedEdges = all ? E : subset.length;
  // Patching over all edges = the clean set + one set per edge; from a subset: per edge × (E + 1).
  const msPerEdge = patchMs[patchName]!.median / (all ? E + 1 : timedEdges);
  const msAllEdges = all ? patchMs[patchName]!.median : msPerEdge * (E + 1);
  const patching = { name: patchName, edgesTimed: timedEdges, measured: all, msAllEdges: round(msAllEdges, 1), msPerEdge: round(msPerEdge, 3), toForward: round(msAllEdges / fwd, 1) };
  log(`  exact patching over all ${E} edges ${all ? '' : '(estimate) '}${(msAllEdges / 1e3).toFixed(1)} s = ${patching.toForward}× a forward`);
  return {
    model: spec.key, label: spec.label, prompts: prompts.length, promptTokens: opts.promptTokens, edges: E, upstreamNodes: upstream, eapRows, patchRows,
    rssMiB: { before: rssBefore, eapPeak, patchingBefore: rssBeforePatching, patchingPeak },
    firstEapCallMs: round(firstEap.ms, 1), firstPatchingCallMs: round(firstPatch.ms, 1), ms, patchMs, eapToForward, patching,
    eapScores: { count: eap.length, nonFinite, maxAbs }, nodeSumCheck, eapVsExact, torchAgreement, ratioToForward,
  };
}

const rssMiB = () => Math.round(process.memoryUsage.rss() / 2 ** 20);

/** Samples the process RSS every 5 ms until stop() (which returns the peak in MiB). */
function sampleRss(): { stop(): number } {
  let peak = rssMiB();
  const timer = setInterval(() => { peak = Math.max(peak, rssMiB()); }, 5);
  return { stop: () => { clearInterval(timer); return Math.max(peak, rssMiB()); } };
}

function pearson(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) { const dx = xs[i]! - mx; const dy = ys[i]! - my; sxy += dx * dy; sxx += dx * dx; syy += dy * dy; }
  return sxy / Math.sqrt(sxx * syy);
}
