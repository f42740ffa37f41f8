// README-numbers.md's section for bench 8 (bench/src/distributed.ts).
import type { DistributedResult, GptProjection } from './distributed';

const s1 = (ms: number) => `${(ms / 1e3).toFixed(1)} s`;
const row = (cells: (string | number)[]) => `| ${cells.join(' | ')} |`;

export function distributedSummary(d: DistributedResult, when: string): string[] {
  const out: string[] = ['## 8. Several workers (attribute --broker)', when, ''];
  out.push(`\`attribute --method patching --broker\` on a redis-server of the bench's own, with N \`circuitlens worker --threads 1\` processes started fresh for each run (their model load and preparation included), against the local run with one onnxruntime thread (the CLI's code path in its own process). Model: ${d.model.file} (${d.model.layers} layers × ${d.model.heads} heads, d ${d.model.dModel}, random weights; ${d.model.edges} edges). Edge patching: ${d.edge.suite}, ${d.edge.prompts} prompts, ${d.edge.rows.toLocaleString('en-US')} rows; head sweep (node patching): ${d.node.suite}, ${d.node.prompts} prompts, ${d.node.rows.toLocaleString('en-US')} rows. This machine has ${d.cores} cores: ${d.cores} workers use all of them (the coordinator mostly waits), more oversubscribe them. Wall: spawn to exit of the coordinator; attribution: from the coordinator's first \"on workers\" line (locally: the attribute call) to the end. Sweep: \`sweep examples/induction-sweep.suite.yaml --model\` the same model \`--resamples 0 --json\` (1,152 prompts; the prompts: from the first \"on workers\" line, locally runSweep), with and without a mean-ablated head. Every distributed result equals the local --json output byte for byte: **${d.allEqual ? 'yes' : 'NO'}**.`, '');
  out.push(row(['analysis', 'workers', 'wall (median)', 'runs', 'attribution', 'wall speed-up vs 1 worker', 'vs local', 'attribution speed-up vs 1 worker', 'parallel efficiency', 'chunks', 'load (1 min) at start']));
  out.push(row(['---', '---', '---', '---', '---', '---', '---', '---', '---', '---', '---']));
  for (const s of d.summary) {
    const mine = d.runs.filter((r) => r.analysis === s.analysis && r.workers === s.workers);
    out.push(row([s.analysis, s.workers ? s.workers : 'local, 1 thread', s1(s.wallMs.median), s.wallMs.n, s1(s.attributionMs.median), s.workers ? `${s.speedupVs1}×` : '—', `${s.speedupVsLocal}×`,
      s.workers ? `${s.attributionSpeedupVs1}×` : '—', s.efficiency ?? '—', mine[0]?.chunks ?? '—', mine.map((r) => r.loadavg[0]).join(', ')]));
  }
  const o = d.overhead;
  out.push('', `Overhead per chunk (the demo induction-gpt2's edge patching, ${o.calls} engine calls, one worker): ${o.calls} one-call chunks took ${s1(o.manyChunksMs.median)} against ${s1(o.oneChunkMs.median)} as one chunk (medians of ${o.manyChunksMs.n}), **${o.perChunkMs} ms per chunk**; a worker's one-call chunk took ${o.workerPerChunkMs} ms (its log) against ${o.localPerCallMs} ms per call in the local run; the worker waited ${o.gapMedianMs} ms (median) between finishing a chunk and starting the next.`, '');
  const g = d.gpt2Small;
  if (g && 'skipped' in g) out.push(`GPT-2-small projection skipped: ${g.skipped}.`, '');
  else if (g) out.push(...projection(g));
  return out;
}

function projection(g: GptProjection): string[] {
  const out = ['### Projection: GPT-2-small, full exact edge patching with N workers (an estimate)', ''];
  out.push(`One edge set (${g.prompts} prompts × ${g.promptTokens} tokens, one edge ablated; timed on 2 edges): ${Object.entries(g.msPerSet).map(([k, v]) => `${s1(v.median)} at ${k}`).join(', ')}. ${g.sets.toLocaleString('en-US')} sets (${g.edges.toLocaleString('en-US')} edges + the clean set), ${g.rowsPerCall} rows per engine call, ${g.chunks.toLocaleString('en-US')} chunks. One machine as bench 3b estimates it (2 threads on 2 cores): ${g.oneMachineHours} h.`, '');
  out.push(row(['workers', 'projected', 'ideal (compute / N)']), row(['---', '---', '---']));
  for (const p of g.projection) out.push(row([p.workers, `${p.hours} h`, `${p.idealHours} h`]));
  out.push('', `Projected = coordinator setup (${s1(g.coordinatorSetupMs)}) + sets × one-thread set time / (N × ${g.efficiency}; 1 for one worker) + ⌈chunks / N⌉ × (max(0, ${g.overheadPerChunkMs}) + ${g.latencyPerChunkMs} ms) + one chunk's compute (the tail). Assumptions:`, '');
  for (const a of g.assumptions) out.push(`- ${a}`);
  out.push('');
  return out;
}
