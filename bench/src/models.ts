// The benchmark models and how each side loads them.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../../core/engine/engine';
import type { Runtime } from '../../core/engine/runtime';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import type { OrtNodeOptions } from '../../core/nodejs/ort-node';
import { log, PYTHON, ROOT, timed, type TorchRef } from './harness';

export interface ModelSpec {
  key: string;
  label: string;
  file: string;
  /** Where the PyTorch reference takes the same weights from: the .onnx initializers or the saved state dict. */
  weights: 'onnx' | 'pt';
  /** Forward-pass batch shape (bench 1). */
  B: number;
  T: number;
}

export const DEMO_GPT2: ModelSpec = { key: 'induction-gpt2', label: 'demo induction-gpt2 (2L×4H, d 64)', file: path.join(ROOT, 'examples', 'induction-gpt2.onnx'), weights: 'onnx', B: 8, T: 64 };
export const DEMO_LLAMA: ModelSpec = { key: 'induction-llama', label: 'demo induction-llama (2L×4H, d 64)', file: path.join(ROOT, 'examples', 'induction-llama.onnx'), weights: 'onnx', B: 8, T: 64 };
export const GPT2_SMALL: ModelSpec = { key: 'gpt2-small', label: 'GPT-2-small shape (12L×12H, d 768, V 50257, random)', file: path.join(ROOT, 'bench', 'models', 'gpt2-small.onnx'), weights: 'pt', B: 8, T: 128 };

/** Whether bench/models/gpt2-small.{onnx,pt,json} exist (else writing them needs PyTorch). */
export function benchModelReady(): boolean {
  const base = GPT2_SMALL.file.replace(/\.onnx$/, '');
  return ['.onnx', '.pt', '.json'].every((e) => fs.existsSync(base + e));
}

/** Writes bench/models/gpt2-small.{onnx,pt,json} with scripts/make_bench_model.py unless they exist. */
export function ensureBenchModel(): void {
  if (benchModelReady()) return;
  log('bench/models/gpt2-small.* missing: running scripts/make_bench_model.py (about a minute)');
  const r = spawnSync(PYTHON, [path.join(ROOT, 'scripts', 'make_bench_model.py')], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('scripts/make_bench_model.py failed');
}

/** How the benchmarks make onnxruntime-node runtimes: as the CLI does (denormals flushed) unless told otherwise. */
export const nodeRuntimeOptions: OrtNodeOptions = { flushDenormals: true };

export async function loadCircuitLens(spec: ModelSpec, runtime: 'node' | 'wasm' | Runtime): Promise<{ engine: Engine; loadMs: number }> {
  const rt = typeof runtime === 'string' ? createRuntime(runtime, nodeRuntimeOptions) : runtime;
  const { ms, value } = await timed(() => loadEngine(spec.file, rt));
  log(`  loaded ${spec.key} on ${rt.backend} in ${(ms / 1e3).toFixed(1)} s`);
  return { engine: value, loadMs: ms };
}

export async function loadTorch(torch: TorchRef, spec: ModelSpec, threads: number): Promise<{ loadMs: number; threads: number; version: string }> {
  const r = await torch.call<{ ms: number; threads: number; torch: string }>({ cmd: 'load', key: spec.key, path: spec.file, weights: spec.weights, threads });
  log(`  loaded ${spec.key} in PyTorch in ${(r.ms / 1e3).toFixed(1)} s (${r.threads} threads)`);
  return { loadMs: r.ms, threads: r.threads, version: r.torch };
}
