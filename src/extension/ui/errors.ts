import * as vscode from 'vscode';
import { isMachineError } from '../../engine/machine';
import { isImageError } from '../../engine/qcow2/errors';

/** An action offered next to an error message ("Show Clones"). */
export interface ErrorAction {
  title: string;
  run(): unknown;
}

/** The one sentence a user reads: engine errors carry it already; anything else gets its message. */
export function errorMessage(e: unknown): string {
  if (isMachineError(e) || isImageError(e)) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** A cancelled operation: the engine guarantees nothing was left behind, so there is nothing to report. */
export function isCancellation(e: unknown): boolean {
  return (isMachineError(e) && e.code === 'ABORTED') || (isImageError(e) && e.code === 'ABORTED') || (e instanceof Error && e.name === 'AbortError');
}

export async function showError(e: unknown, actions: ErrorAction[] = []): Promise<void> {
  if (isCancellation(e)) {
    void vscode.window.showInformationMessage(vscode.l10n.t('Cancelled: nothing was changed.'));
    return;
  }
  const chosen = await vscode.window.showErrorMessage(errorMessage(e), ...actions.map((a) => a.title));
  await actions.find((a) => a.title === chosen)?.run();
}
