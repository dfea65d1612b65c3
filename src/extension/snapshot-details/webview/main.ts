// The snapshot details page's script, running inside the webview (browser, no Node, no vscode module). Bundled on
// its own into dist/webview/snapshot-details.js: a button press becomes a message to the panel, which runs it.
import type { FromDetailsWebview } from '../protocol';

declare function acquireVsCodeApi(): { postMessage(message: FromDetailsWebview): void };

const vscode = acquireVsCodeApi();
for (const b of document.querySelectorAll<HTMLButtonElement>('button[data-action]')) {
  const action = b.dataset['action'];
  if (action === 'revert' || action === 'clone' || action === 'delete') b.addEventListener('click', () => vscode.postMessage({ type: 'action', action }));
}
