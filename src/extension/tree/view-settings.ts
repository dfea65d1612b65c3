// The Machines view's title toggles: settings (so menus can match config.vmsnap.<key>), for every window.
import * as vscode from 'vscode';

const DEFAULTS = { showAutomaticCheckpoints: true, 'tree.compactChains': false } as const;

export type TreeSetting = keyof typeof DEFAULTS;

export function treeSetting(key: TreeSetting): boolean {
  return vscode.workspace.getConfiguration('vmsnap').get<boolean>(key, DEFAULTS[key]);
}

/** Returns `on`, so the command's result says it did something (the tree follows the setting). */
export async function setTreeSetting(key: TreeSetting, on: boolean): Promise<boolean> {
  await vscode.workspace.getConfiguration('vmsnap').update(key, on, vscode.ConfigurationTarget.Global);
  return on;
}
