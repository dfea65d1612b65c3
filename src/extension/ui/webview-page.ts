// The set-up every vmsnap webview page shares: what it may load, a fresh nonce, escaping, and the page around a body.
import * as vscode from 'vscode';
import { randomUUID } from 'node:crypto';

/** Scripts on, and only the extension's own stylesheets and scripts can be loaded. */
export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewPanelOptions & vscode.WebviewOptions {
  return {
    enableScripts: true,
    localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'media'), vscode.Uri.joinPath(extensionUri, 'dist', 'webview')],
  };
}

export function nonce(): string {
  return randomUUID().replace(/-/g, '');
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * A whole page: media/<css>.css and dist/webview/<js>.js, under a policy that allows nothing else (and data: images:
 * thumbnails, noVNC's cursors and JPEG rectangles). `title` is text; `body` is HTML.
 */
export function webviewPage(webview: vscode.Webview, extensionUri: vscode.Uri, page: { css: string; js: string; title: string; body: string }): string {
  const n = nonce();
  const css = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', `${page.css}.css`));
  const js = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview', `${page.js}.js`));
  const csp = [`default-src 'none'`, `img-src ${webview.cspSource} data:`, `style-src ${webview.cspSource}`, `font-src ${webview.cspSource}`, `script-src 'nonce-${n}'`].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${css.toString()}">
<title>${escapeHtml(page.title)}</title>
</head>
<body>
${page.body}
<script nonce="${n}" src="${js.toString()}"></script>
</body>
</html>`;
}
