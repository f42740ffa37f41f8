import * as crypto from 'node:crypto';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { tokenizerPathFor } from '../../core/nodejs/load';
import type { BackendPreference, ComputeSetup } from '../../protocol/compute';

/**
 * The HTML shell of every CircuitLens webview: strict CSP with a nonce, local resources only,
 * 'wasm-unsafe-eval' (onnxruntime-web compiles WASM) and blob: workers (the compute worker).
 */
/** The webview bundles esbuild.js builds (dist/webview/<name>.js). */
export type ViewBundle = 'graph' | 'attention' | 'lens' | 'sweep' | 'redundancy' | 'prune' | 'sensitivity';

export function webviewHtml(webview: vscode.Webview, extensionUri: vscode.Uri, view: ViewBundle, title: string): string {
  const nonce = crypto.randomBytes(16).toString('base64');
  const res = (...p: string[]) => webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, ...p)).toString();
  const csp = [
    "default-src 'none'",
    `img-src ${webview.cspSource} data: blob:`,
    // plotly.js sets inline styles on the elements it draws.
    `style-src ${webview.cspSource} 'unsafe-inline'`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}' 'wasm-unsafe-eval'`,
    'worker-src blob:',
    `connect-src ${webview.cspSource}`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link href="${res('media', 'webview.css')}" rel="stylesheet">
<link href="${res('dist', 'webview', 'codicon.css')}" rel="stylesheet" id="vscode-codicon-stylesheet">
<title>${title}</title>
</head>
<body data-view="${view}">
<div id="app" role="main"><p class="muted">Loading…</p></div>
<script nonce="${nonce}" src="${res('dist', 'webview', 'plotly.min.js')}"></script>
<script nonce="${nonce}" src="${res('dist', 'webview', `${view}.js`)}"></script>
</body>
</html>`;
}

/** Webview URIs of the compute worker's files, the model and its tokenizer. */
export function computeSetup(webview: vscode.Webview, extensionUri: vscode.Uri, modelPath: string): ComputeSetup {
  const res = (...p: string[]) => webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, ...p)).toString();
  const tok = tokenizerPathFor(modelPath);
  const prefer = vscode.workspace.getConfiguration('circuitlens').get<BackendPreference>('webviewBackend', 'auto');
  return {
    workerUri: res('dist', 'webview', 'worker.js'), wasmUri: res('dist', 'webview', 'ort-wasm-simd-threaded.jsep.wasm'),
    modelUri: webview.asWebviewUri(vscode.Uri.file(modelPath)).toString(), tokenizerUri: tok ? webview.asWebviewUri(vscode.Uri.file(tok)).toString() : undefined,
    prefer, what: path.basename(modelPath),
  };
}
