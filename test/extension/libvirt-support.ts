// What the libvirt extension-host tests share: the context menu a row's contextValue gets (from package.json's
// `when` clauses, evaluated as the palette's pick does) and the rows of a connection, found as the view reads them.
import * as vscode from 'vscode';
import { offeredCommands, type MenuEntry } from '../../src/extension/commands/menu-when';
import type { TestHandle } from '../../src/extension/test-handle';
import type { LibvirtDomainNode, LibvirtNode, LibvirtSnapshotNode } from '../../src/extension/tree/libvirt-rows';
import type { TreeNode } from '../../src/extension/tree/nodes';
import { EXTENSION_ID } from './running-extension';

/** The commands a row's context menu offers, as the palette's pick evaluates them; a term it cannot read fails the test. */
export function offered(menus: MenuEntry[], viewItem: string): string[] {
  return offeredCommands(menus, viewItem, (term) => {
    throw new Error(`cannot evaluate "${term}"`);
  });
}

export const contextMenus = (): MenuEntry[] => (vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON as { contributes: { menus: Record<string, MenuEntry[]> } }).contributes.menus['view/item/context']!;

/** A connection's root row, its domain rows and their snapshot rows, as the Machines view reads them. */
export function libvirtRows(api: TestHandle) {
  const root = async (uri: string): Promise<LibvirtNode | undefined> =>
    ((await api.tree.getChildren()) as TreeNode[]).find((n): n is LibvirtNode => n.kind === 'libvirt' && n.row === 'connection' && n.uri === uri);
  const domain = async (uri: string, name: string): Promise<LibvirtDomainNode | undefined> => {
    const r = await root(uri);
    if (r === undefined) return undefined;
    return ((await api.tree.getChildren(r)) as TreeNode[]).find((n): n is LibvirtDomainNode => n.kind === 'libvirt' && n.row === 'domain' && n.view.machine.name === name);
  };
  const snapshot = async (uri: string, ofDomain: string, name: string): Promise<LibvirtSnapshotNode | undefined> => {
    const d = await domain(uri, ofDomain);
    if (d === undefined) return undefined;
    const walk = (nodes: readonly TreeNode[]): LibvirtSnapshotNode | undefined => {
      for (const n of nodes) {
        if (n.kind !== 'libvirt' || n.row !== 'snapshot') continue;
        if (n.snapshot.name === name) return n;
        const below = walk(n.children);
        if (below) return below;
      }
      return undefined;
    };
    return walk((await api.tree.getChildren(d)) as TreeNode[]);
  };
  return { root, domain, snapshot };
}
