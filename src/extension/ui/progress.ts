// Long engine operations under a VS Code notification with progress and Cancel.
import * as vscode from 'vscode';
import type { OperationOptions } from '../../engine/qcow2/disk';

/**
 * Runs a long engine operation under a notification with a percentage and a working Cancel: the token aborts the
 * engine's AbortSignal, and the engine stops cleanly (the destination removed or the source as it was).
 */
export function withProgress<T>(title: string, run: (options: Required<OperationOptions>) => Promise<T>): Promise<T> {
  return Promise.resolve(
    vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, async (progress, token) => {
      const abort = new AbortController();
      const cancelled = token.onCancellationRequested(() => abort.abort());
      let reported = 0;
      try {
        return await run({
          signal: abort.signal,
          onProgress: (done, total) => {
            if (total <= 0) return;
            const percent = Math.min(100, Math.floor((done / total) * 100));
            if (percent > reported) {
              progress.report({ increment: percent - reported, message: `${percent}%` });
              reported = percent;
            }
          },
        });
      } finally {
        cancelled.dispose();
      }
    }),
  );
}
