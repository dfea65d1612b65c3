// Words for a machine's state, shared by the tree, the quick picks and the status bar.
import * as vscode from 'vscode';
import type { PowerState } from '../engine/machine';

export function powerLabel(power: PowerState): string {
  return power === 'running' ? vscode.l10n.t('running') : power === 'paused' ? vscode.l10n.t('paused') : vscode.l10n.t('off');
}
