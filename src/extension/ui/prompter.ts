// The questions commands ask (input boxes, quick picks, modal dialogs), behind one interface tests can answer.
import * as vscode from 'vscode';

export interface PickItem<T> extends vscode.QuickPickItem {
  value: T;
}

/**
 * Every question a command asks goes through here, so integration tests can answer them (see the extension's
 * test handle) while users get VS Code's own input boxes, quick picks and modal dialogs.
 */
export interface Prompter {
  input(options: vscode.InputBoxOptions): Promise<string | undefined>;
  pick<T>(items: PickItem<T>[], options: vscode.QuickPickOptions): Promise<PickItem<T> | undefined>;
  /** A modal warning; resolves to the chosen button's title, undefined for Cancel. */
  confirm(message: string, detail: string, buttons: string[]): Promise<string | undefined>;
  folder(title: string, defaultUri?: vscode.Uri): Promise<vscode.Uri | undefined>;
  file(title: string, filters: Record<string, string[]>): Promise<vscode.Uri | undefined>;
}

export const vscodePrompter: Prompter = {
  input: (options) => Promise.resolve(vscode.window.showInputBox({ ignoreFocusOut: true, ...options })),
  pick: <T>(items: PickItem<T>[], options: vscode.QuickPickOptions) =>
    Promise.resolve(vscode.window.showQuickPick(items, { ignoreFocusOut: true, matchOnDescription: true, matchOnDetail: true, ...options })),
  confirm: (message, detail, buttons) => Promise.resolve(vscode.window.showWarningMessage(message, { modal: true, detail }, ...buttons)),
  folder: async (title, defaultUri) =>
    (await vscode.window.showOpenDialog({ title, canSelectFolders: true, canSelectFiles: false, canSelectMany: false, ...(defaultUri ? { defaultUri } : {}) }))?.[0],
  file: async (title, filters) => (await vscode.window.showOpenDialog({ title, canSelectFiles: true, canSelectMany: false, filters }))?.[0],
};

/** The prompter in use: tests swap in scripted answers. */
export class Prompts {
  current: Prompter = vscodePrompter;
}
