// Bench 4: the machine's float32 matmul peak, measured (onnxruntime-node on a one-node MatMul model built
// here, and torch.matmul), against the FLOP/s a GPT-2-small forward achieves (FLOPs counted analytically).
import { seededRandom } from '../../core/analysis/sweep/stats';
import * as ort from 'onnxruntime-node';
import { DataType, encodeModel, int64Tensor, type OnnxModel } from '../../core/onnx/model';
import { alternate, log, round, type Stats, type TorchRef } from './harness';

/**
 * A model with one MatMul: A [M, K] (input) × W [K, N] (initializer, as a weight is), opset 17. Its output is
 * the product's first row (a Slice), so a run times the kernel, not the copy of [M, N] into JavaScript.
 */
export function matmulModel(M: number, K: number, N: number, seed = 1): Uint8Array {
  const r = seededRandom(seed);
  const w = new Float32Array(K * N);
  for (let i = 0; i < w.length; i++) w[i] = r() - 0.5;
  const vi = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
  const model: OnnxModel = {
    irVersion: 8, opsetImport: [{ domain: '', version: 17 }], producerName: 'circuitlens-bench', producerVersion: '1', metadataProps: [],
    graph: {
      name: 'matmul',
      node: [
        { opType: 'MatMul', input: ['A', 'W'], output: ['C'], name: 'matmul', domain: '', attribute: [] },
        { opType: 'Slice', input: ['C', 'zero', 'one', 'zero'], output: ['row0'], name: 'row0', domain: '', attribute: [] },
      ],
      initializer: [{ name: 'W', dims: [K, N], dataType: DataType.FLOAT, rawData: new Uint8Array(w.buffer) }, int64Tensor('zero', [0]), int64Tensor('one', [1])],
      input: [vi('A', [M, K])], output: [vi('row0', [1, N])], valueInfo: [],
    },
  };
  return encodeModel(model);
}

/** FLOPs of a GPT-2 forward (multiply-add = 2), all positions, causal mask not exploited (as the kernels run it). */
export function gpt2ForwardFlops(c: { layers: number; dModel: number; dMlp: number; vocab: number; heads: number; dHead: number }, B: number, T: number, unembedPositions = T): number {
  const N = B * T;
  const d = c.dModel;
  const hd = c.heads * c.dHead;
  const perLayer = 2 * N * d * 3 * hd // qkv
    + 2 * B * c.heads * T * T * c.dHead * 2 // scores and pattern·v
    + 2 * N * hd * d // output projection
    + 2 * N * d * c.dMlp * 2; // MLP in and out
  return c.layers * perLayer + 2 * B * unembedPositions * d * c.vocab;
}

export interface GemmResult { shape: [number, number, number]; gflop: number; ortMs: Stats; torchMs: Stats; ortGflops: number; torchGflops: number }

export async function gemmPeak(torch: TorchRef, shapes: [number, number, number][], reps: number, threads?: number): Promise<GemmResult[]> {
  const out: GemmResult[] = [];
  for (const [M, K, N] of shapes) {
    const opts: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
    if (threads) opts.intraOpNumThreads = threads;
    const session = await ort.InferenceSession.create(matmulModel(M, K, N), opts);
    const r = seededRandom(2);
    const a = new ort.Tensor('float32', Float32Array.from({ length: M * K }, () => r() - 0.5), [M, K]);
    const gflop = (2 * M * K * N) / 1e9;
    const res = await alternate([
      { name: 'ort', run: async () => { const t0 = performance.now(); await session.run({ A: a }); return performance.now() - t0; } },
      { name: 'torch', run: async () => (await torch.call<{ ms: number[] }>({ cmd: 'gemm', M, K, N, reps: 1 })).ms[0]! },
    ], reps, `gemm ${M}x${K}x${N}`);
    await session.release();
    out.push({
      shape: [M, K, N], gflop: round(gflop, 2), ortMs: res.ort!, torchMs: res.torch!,
      ortGflops: round(gflop / (res.ort!.median / 1e3), 1), torchGflops: round(gflop / (res.torch!.median / 1e3), 1),
    });
    log(`  gemm ${M}x${K}x${N}: onnxruntime ${out.at(-1)!.ortGflops} GFLOP/s, torch ${out.at(-1)!.torchGflops} GFLOP/s`);
  }
  return out;
}
