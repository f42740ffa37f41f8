import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { ROOT } from '../helpers';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Debian's Chromium, headless, offline, with WebGPU on SwiftShader (correctness only, not speed). Used by the
 * browser tests and by the graph-view benchmark (bench/src/graph-page.ts), which adds its own `args`.
 */
export async function launchChromium(args: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader', '--use-webgpu-adapter=swiftshader', ...args],
  });
}

function contentType(p: string): string {
  return p.endsWith('.js') ? 'text/javascript' : p.endsWith('.wasm') ? 'application/wasm' : p.endsWith('.css') ? 'text/css'
    : p.endsWith('.json') ? 'application/json' : 'application/octet-stream';
}

/**
 * Serves files from a map of URL path → file on 127.0.0.1, and `pages` (URL path → text: HTML, or JSON at a path
 * ending in .json); returns the base URL. A file that is not there is a 404.
 */
export async function serveFiles(files: Record<string, string>, pages: Record<string, string> = {}): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const p = (req.url ?? '/').split('?')[0]!;
    if (pages[p] !== undefined) {
      res.writeHead(200, { 'content-type': p.endsWith('.json') ? 'application/json' : 'text/html' });
      res.end(pages[p]);
      return;
    }
    const f = files[p];
    if (!f || !fs.existsSync(f)) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': contentType(p) });
    fs.createReadStream(f).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}

/**
 * A page that starts the built compute worker (dist/webview/worker.js) as webview/common/compute-client.ts does,
 * from plain URLs and speaking protocol/compute.ts: `startWorker(prefer, model, tokenizer?)` loads the worker
 * script from a blob, the WASM binary, the model and the tokenizer (paths served beside it) and resolves the
 * answer to `compute/init`; `call(method, params)` sends a request and resolves its result (rejects its error).
 */
export const WORKER_PAGE = `<!doctype html><html><body><script>
window.startWorker = async (prefer, model, tokenizer) => {
  const [code, wasm, bytes, tok] = await Promise.all([
    fetch('/worker.js').then(r => r.text()), fetch('/ort.wasm').then(r => r.arrayBuffer()),
    fetch('/' + model).then(r => r.arrayBuffer()), tokenizer ? fetch('/' + tokenizer).then(r => r.text()) : undefined]);
  const w = new Worker(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })));
  const pending = new Map(); let next = 1;
  w.onmessage = (e) => {
    const m = e.data;
    const p = pending.get(m.id); pending.delete(m.id);
    if (p && m.t.endsWith('/response')) m.ok ? p.res(m.result) : p.rej(new Error(m.error));
  };
  w.onerror = (e) => { for (const p of pending.values()) p.rej(new Error(e.message || 'the compute worker failed')); pending.clear(); };
  window.call = (method, params, transfer = []) => new Promise((res, rej) => { const id = next++; pending.set(id, { res, rej }); w.postMessage({ t: method, id, params }, transfer); });
  return window.call('compute/init', { model: new Uint8Array(bytes), tokenizerJson: tok, wasmBinary: wasm, prefer, what: model }, [wasm]);
};
</script></body></html>`;

/** Serves WORKER_PAGE at `/` with the built worker and its WASM binary, and `files` (URL path → file) beside them. */
export function serveWorker(files: Record<string, string>): ReturnType<typeof serveFiles> {
  return serveFiles({
    '/worker.js': path.join(ROOT, 'dist', 'webview', 'worker.js'),
    '/ort.wasm': path.join(ROOT, 'dist', 'webview', 'ort-wasm-simd-threaded.jsep.wasm'),
    ...files,
  }, { '/': WORKER_PAGE });
}
