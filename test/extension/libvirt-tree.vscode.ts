// libvirt connections in the Machines tree, against the real daemons (test/support/libvirt.ts): a connection's
// root and its domain beside the library's machines, Take Snapshot and Revert through the commands on its rows
// checked against libvirt's own view (virsh snapshot-current), menus that offer only what the source can do, and
// an unreachable connection as one error row while the library's machines still show.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import { RENAME_REASON } from '../../src/engine/libvirt';
import type { ShownError, TestHandle } from '../../src/extension/test-handle';
import type { LibvirtDomainNode, LibvirtNode, LibvirtSnapshotNode } from '../../src/extension/tree/libvirt-rows';
import { contextValue, type TreeNode } from '../../src/extension/tree/nodes';
import { defineCountingDomain, removeTestDomains, requireLibvirt, shareWithQemu, startDaemons, SYSTEM_URI, testPrefix, virshOk, type Daemons } from '../support/libvirt';
import { answering, EXTENSION_ID, extensionApi, machineWithSnapshots, until, useFreshLibrary } from './running-extension';

interface MenuItem {
  command: string;
  when?: string;
  group?: string;
}

/** The commands a row's context menu offers: `when` clauses as conjunctions of viewItem regexes. */
function offered(menus: MenuItem[], viewItem: string): string[] {
  const holds = (term: string): boolean => {
    const t = term.trim();
    if (t === 'view == vmsnap.machines') return true;
    const m = /^(!\()?viewItem =~ \/(.*)\/\)?$/.exec(t);
    if (!m) throw new Error(`cannot evaluate "${t}"`);
    return new RegExp(m[2]!).test(viewItem) !== (m[1] !== undefined);
  };
  return [...new Set(menus.filter((i) => !(i.group ?? '').startsWith('inline') && (i.when ?? '').split('&&').every(holds)).map((i) => i.command))].sort();
}

const UNREACHABLE = 'qemu+ssh://root@127.0.0.1:1/system';

describe('libvirt connections in the Machines tree', function () {
  this.timeout(180_000);
  let api: TestHandle;
  let daemons: Daemons | undefined;
  let library: Awaited<ReturnType<typeof useFreshLibrary>> | undefined;
  let scratch = '';
  let domainName = '';
  const prefix = testPrefix();
  const setConnections = (uris: string[]) => vscode.workspace.getConfiguration('vmsnap').update('libvirt.connections', uris, vscode.ConfigurationTarget.Global);

  before(async function () {
    requireLibvirt(this);
    daemons = await startDaemons();
    scratch = mkdtempSync(join(tmpdir(), 'vmsnap-libvirt-tree-'));
    shareWithQemu(scratch);
    domainName = `${prefix}dom`;
    defineCountingDomain(SYSTEM_URI, scratch, domainName);
    api = await extensionApi();
    library = await useFreshLibrary(api);
    await machineWithSnapshots(library.lib, 'library-vm');
  });

  after(async () => {
    await setConnections([]);
    removeTestDomains(SYSTEM_URI, prefix);
    await daemons?.stop();
    await library?.dispose();
    if (scratch !== '') rmSync(scratch, { recursive: true, force: true });
  });

  const roots = (): Promise<TreeNode[]> => api.tree.getChildren() as Promise<TreeNode[]>;
  const libvirtRoot = async (uri: string): Promise<LibvirtNode | undefined> => (await roots()).find((n): n is LibvirtNode => n.kind === 'libvirt' && n.row === 'connection' && n.uri === uri);
  const domainRow = async (): Promise<LibvirtDomainNode | undefined> => {
    const root = await libvirtRoot(SYSTEM_URI);
    if (root === undefined) return undefined;
    return ((await api.tree.getChildren(root)) as TreeNode[]).find((n): n is LibvirtDomainNode => n.kind === 'libvirt' && n.row === 'domain' && n.view.machine.name === domainName);
  };
  const snapshotRow = async (name: string): Promise<LibvirtSnapshotNode | undefined> => {
    const domain = await domainRow();
    if (domain === undefined) return undefined;
    const walk = async (nodes: TreeNode[]): Promise<LibvirtSnapshotNode | undefined> => {
      for (const n of nodes) {
        if (n.kind !== 'libvirt' || n.row !== 'snapshot') continue;
        if (n.snapshot.name === name) return n;
        const below = await walk(n.children);
        if (below) return below;
      }
      return undefined;
    };
    return walk((await api.tree.getChildren(domain)) as TreeNode[]);
  };
  // Read through a function: an assignment in the test would make TypeScript narrow the field for good.
  const lastError = (): ShownError | undefined => api.lastError;
  const currentSnapshot = (): string => virshOk(SYSTEM_URI, 'snapshot-current', '--domain', domainName, '--name').trim();

  it('shows the connection and its domain after the library; Take Snapshot and Revert on its rows change libvirt’s own view', async () => {
    await setConnections([SYSTEM_URI]);
    await until(async () => (await domainRow()) !== undefined, 'the libvirt root and its domain', 30_000);
    const all = await roots();
    const libraryRow = all.findIndex((n) => n.kind === 'machine' && n.machine.name === 'library-vm');
    const root = all.findIndex((n) => n.id === `libvirt/${SYSTEM_URI}`);
    assert.ok(libraryRow >= 0 && root > libraryRow, 'the libvirt root comes after the library’s machines');
    assert.equal(api.tree.getTreeItem(all[root]!).label, `libvirt — ${SYSTEM_URI}`);
    const domain = (await domainRow())!;
    assert.match(contextValue(domain), /^libvirtDomain:off:(.*:)?memorySnapshots:/);

    const menus = (vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON as { contributes: { menus: Record<string, MenuItem[]> } }).contributes.menus['view/item/context']!;
    assert.deepEqual(offered(menus, contextValue(domain)), ['vmsnap.startMachine', 'vmsnap.takeSnapshot']);

    await vscode.commands.executeCommand('vmsnap.takeSnapshot', domain, { name: 'first', description: 'taken from the tree' });
    await vscode.commands.executeCommand('vmsnap.takeSnapshot', await domainRow(), { name: 'second' });
    assert.equal(currentSnapshot(), 'second');
    await until(async () => (await snapshotRow('second'))?.isCurrentParent === true, 'the tree to show “second” as the current snapshot', 20_000);

    const first = (await snapshotRow('first'))!;
    assert.equal(contextValue(first), 'libvirtSnapshot:off:revert:delete:children:deleteChildren:describe:');
    // Rename is not offered (libvirt names snapshots for good), and refused with the reason when asked for anyway.
    assert.deepEqual(offered(menus, contextValue(first)), ['vmsnap.deleteSnapshot', 'vmsnap.deleteSnapshotWithChildren', 'vmsnap.editSnapshotDescription', 'vmsnap.revert']);
    api.lastError = undefined;
    assert.equal(await vscode.commands.executeCommand('vmsnap.renameSnapshot', first, { name: 'renamed' }), undefined);
    const refused = lastError();
    assert.equal(refused?.message, RENAME_REASON);
    assert.equal(refused?.code, 'UNSUPPORTED');

    // The revert asks as ours does when the current state would be lost: the safe choice first.
    const { asked } = await answering(api, ['Revert'], () => vscode.commands.executeCommand('vmsnap.revert', first));
    assert.match(asked[0] ?? '', /\{Snapshot Current State, Then Revert \| Revert\}$/);
    assert.equal(currentSnapshot(), 'first');
    await until(async () => (await snapshotRow('first'))?.isCurrentParent === true, 'the tree to show “first” as the current snapshot', 20_000);
    const here = ((await api.tree.getChildren(await snapshotRow('first'))) as TreeNode[]).map((n) => n.id);
    assert.ok(here.includes(`libvirt/${SYSTEM_URI}/${domain.view.machine.uuid}/current`), '“You are here” under “first”');
  });

  it('shows an unreachable connection as one row with the reason and Retry; the library’s machines still show', async () => {
    await setConnections([UNREACHABLE]);
    await until(async () => {
      const r = await libvirtRoot(UNREACHABLE);
      return r !== undefined && contextValue(r) === 'libvirtConnection:error:';
    }, 'the unreachable connection’s error row', 30_000);
    const all = await roots();
    assert.ok(all.some((n) => n.kind === 'machine' && n.machine.name === 'library-vm'), 'the library’s machine still shows');
    assert.equal(all.filter((n) => n.kind === 'libvirt').length, 1, 'one row for the connection');
    const row = (await libvirtRoot(UNREACHABLE))!;
    assert.deepEqual(await api.tree.getChildren(row), []);
    const item = api.tree.getTreeItem(row);
    assert.equal(item.collapsibleState, vscode.TreeItemCollapsibleState.None);
    assert.match(String(item.description), /\S.*[.:]/, 'the error’s sentence');
    const menus = (vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON as { contributes: { menus: Record<string, MenuItem[]> } }).contributes.menus['view/item/context']!;
    assert.deepEqual(offered(menus, contextValue(row)), ['vmsnap.retryConnection']);
    const retried = (await vscode.commands.executeCommand('vmsnap.retryConnection', row)) as { ok: boolean };
    assert.equal(retried.ok, false);
  });
});
