// The Machines view's context menus as VS Code evaluates them for a row: the manifest's `view/item/context` entries
// whose `when` holds for the row's contextValue. Lets a command asked from the palette offer exactly the rows whose
// menus offer it, from the same clauses.
import * as vscode from 'vscode';

export interface MenuEntry {
  command: string;
  when?: string;
  group?: string;
}

/**
 * The commands a row's context menu offers (inline buttons left out). A `when` is a conjunction of
 * `view == vmsnap.machines`, `viewItem =~ /RE/` and `!(viewItem =~ /RE/)`; any other term is `unknown`'s answer
 * (false by default: a menu this cannot read offers nothing here).
 */
export function offeredCommands(menus: readonly MenuEntry[], viewItem: string, unknown: (term: string) => boolean = () => false): string[] {
  const holds = (term: string): boolean => {
    const t = term.trim();
    if (t === 'view == vmsnap.machines') return true;
    const m = /^(!\()?viewItem =~ \/(.*)\/\)?$/.exec(t);
    if (!m) return unknown(t);
    return new RegExp(m[2]!).test(viewItem) !== (m[1] !== undefined);
  };
  return [...new Set(menus.filter((i) => !(i.group ?? '').startsWith('inline') && (i.when ?? '').split('&&').every(holds)).map((i) => i.command))].sort();
}

/** This extension's row menus, from its manifest (the extension found by its folder). */
export function rowMenus(extensionUri: vscode.Uri): MenuEntry[] {
  const self = vscode.extensions.all.find((e) => e.extensionUri.toString() === extensionUri.toString());
  const manifest = self?.packageJSON as { contributes?: { menus?: Record<string, MenuEntry[]> } } | undefined;
  return manifest?.contributes?.menus?.['view/item/context'] ?? [];
}
