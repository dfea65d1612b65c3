import * as vscode from 'vscode';
import { isMachineError, type MachineError } from '../../engine/machine';
import { isImageError } from '../../engine/qcow2/errors';
import { isSourceError } from '../../engine/sources';

/** An action offered next to an error message ("Show Clones"). */
export interface ErrorAction {
  title: string;
  run(): unknown;
}

/** The one sentence a user reads: engine errors carry it (worded here where the engine leaves the way out open). */
export function errorMessage(e: unknown): string {
  if (isMachineError(e)) return machineErrorMessage(e);
  if (isImageError(e)) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** A cancelled operation: the engine guarantees nothing was left behind, so there is nothing to report. */
export function isCancellation(e: unknown): boolean {
  return ((isMachineError(e) || isImageError(e) || isSourceError(e)) && e.code === 'ABORTED') || (e instanceof Error && e.name === 'AbortError');
}

export async function showError(e: unknown, actions: ErrorAction[] = []): Promise<void> {
  if (isCancellation(e)) {
    void vscode.window.showInformationMessage(vscode.l10n.t('Cancelled: nothing was changed.'));
    return;
  }
  const chosen = await vscode.window.showErrorMessage(errorMessage(e), ...actions.map((a) => a.title));
  await actions.find((a) => a.title === chosen)?.run();
}

/** A machine error in the extension's words: the way out is a view or a choice, never a CLI command or flag. */
function machineErrorMessage(e: MachineError): string {
  const d = e.detail;
  if (d === null) return e.message;
  switch (d.kind) {
    case 'machine-not-found':
      return vscode.l10n.t('There is no machine “{0}” in the library: it may have been deleted; the Machines view shows those there are.', d.ref);
    case 'snapshot-not-found':
      return vscode.l10n.t('Machine “{0}” has no snapshot “{1}”: it may have been deleted; the Machines view shows its snapshots.', d.machineName, d.ref);
    case 'revert-discards-current':
      return vscode.l10n.t('Reverting throws away the current state: choose to discard it, or to save it as a snapshot first.');
    case 'libvirt-domain-exported':
      return vscode.l10n.t('Machine “{0}” is exported to libvirt as domain “{1}” on {2}: Delete Machine asks whether to delete that domain too or to leave it (it would point at missing files).', d.machineName, d.domain, d.connection);
    case 'libvirt-domain-running':
      return vscode.l10n.t('Machine “{0}” is exported to libvirt as domain “{1}” on {2}, which is running: shut it off first (Power Off on its row, or virt-manager), then delete again.', d.machineName, d.domain, d.connection);
    case 'libvirt-unreachable':
      return vscode.l10n.t('Cannot check whether machine “{0}” is still exported to libvirt as domain “{1}” on {2}: {3}. Try again when that connection answers, or delete the machine and leave the domain.', d.machineName, d.domain, d.connection, d.reason);
  }
}
