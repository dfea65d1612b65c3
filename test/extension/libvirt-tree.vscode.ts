// libvirt connections in the Machines tree, against the real daemons (test/support/libvirt.ts): a connection's
// root and its domain beside the library's machines, the domain's snapshot tree from libvirt's parent links, Take
// Snapshot, power, Revert and Clone through the commands on its rows checked against libvirt's own view (virsh
// snapshot-current, domstate, dumpxml, qemu-img's backing chain), menus that offer only what the source can do, a
// libvirt domain as the dev machine, and slow or unreachable connections that never hold up the library's rows.
//
// Everything that runs a tool here is asynchronous: defining a domain takes minutes on a slow host (libvirt probes
// QEMU), and a synchronous spawn would block the whole extension host. One domain is defined, for all the tests.
import * as assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import { RENAME_REASON } from '../../src/engine/libvirt';
import { LINKED_FROM_INTERNAL } from '../../src/engine/libvirt/records';
import type { SourceCloneResult, SourceSnapshot } from '../../src/engine/sources';
import type { ShownError, TestHandle } from '../../src/extension/test-handle';
import type { LibvirtDomainNode, LibvirtNode, LibvirtSnapshotNode } from '../../src/extension/tree/libvirt-rows';
import { contextValue, type TreeNode } from '../../src/extension/tree/nodes';
import { defineCountingDomainAsync, removeTestDomainsAsync, requireLibvirt, runTool, shareWithQemu, startDaemons, SYSTEM_URI, testPrefix, virshAsync, virshOkAsync, type Daemons } from '../support/libvirt';
import { contextMenus, libvirtRows, offered } from './libvirt-support';
import { answering, extensionApi, machineWithSnapshots, until, useFreshLibrary } from './running-extension';

const UNREACHABLE = 'qemu+ssh://root@127.0.0.1:1/system';

describe('libvirt connections in the Machines tree', function () {
  this.timeout(300_000);
  let api: TestHandle;
  let daemons: Daemons | undefined;
  let library: Awaited<ReturnType<typeof useFreshLibrary>> | undefined;
  let scratch = '';
  let domainName = '';
  const prefix = testPrefix();
  const config = () => vscode.workspace.getConfiguration('vmsnap');
  const setConnections = (uris: string[]) => config().update('libvirt.connections', uris, vscode.ConfigurationTarget.Global);

  before(async function () {
    // Starting the daemons and defining one domain: minutes on a slow host while libvirt probes QEMU.
    this.timeout(600_000);
    requireLibvirt(this);
    daemons = await startDaemons();
    scratch = mkdtempSync(join(tmpdir(), 'vmsnap-libvirt-tree-'));
    shareWithQemu(scratch);
    domainName = `${prefix}dom`;
    await defineCountingDomainAsync(SYSTEM_URI, scratch, domainName);
    api = await extensionApi();
    library = await useFreshLibrary(api);
    await machineWithSnapshots(library.lib, 'library-vm');
  });

  after(async function () {
    this.timeout(300_000);
    await setConnections([]);
    await config().update('devMachine', undefined, vscode.ConfigurationTarget.Global);
    await config().update('devMachineConnection', undefined, vscode.ConfigurationTarget.Global);
    if (domainName !== '') await removeTestDomainsAsync(SYSTEM_URI, prefix);
    await daemons?.stop();
    await library?.dispose();
    if (scratch !== '') rmSync(scratch, { recursive: true, force: true });
  });

  const roots = (): Promise<TreeNode[]> => api.tree.getChildren() as Promise<TreeNode[]>;
  const rows = () => libvirtRows(api);
  const libvirtRoot = (uri: string): Promise<LibvirtNode | undefined> => rows().root(uri);
  const domainRow = (name = domainName): Promise<LibvirtDomainNode | undefined> => rows().domain(SYSTEM_URI, name);
  const snapshotRow = (name: string): Promise<LibvirtSnapshotNode | undefined> => rows().snapshot(SYSTEM_URI, domainName, name);
  const snapshotRowOf = (ofDomain: string, name: string): Promise<LibvirtSnapshotNode | undefined> => rows().snapshot(SYSTEM_URI, ofDomain, name);
  const childNames = (row: LibvirtSnapshotNode): string[] => row.children.flatMap((c) => (c.row === 'snapshot' ? [c.snapshot.name] : c.row === 'current' ? ['(you are here)'] : [])).sort();
  // Read through a function: an assignment in the test would make TypeScript narrow the field for good.
  const lastError = (): ShownError | undefined => api.lastError;
  const currentSnapshot = async (): Promise<string> => (await virshOkAsync(SYSTEM_URI, 'snapshot-current', '--domain', domainName, '--name')).trim();
  const domstate = async (): Promise<string> => (await virshOkAsync(SYSTEM_URI, 'domstate', domainName)).trim();
  const runToolOk = async (file: string, args: string[]): Promise<string> => {
    const r = await runTool(file, args, 60_000);
    if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const tooltipText = (row: TreeNode): string => {
    const t = api.tree.getTreeItem(row).tooltip;
    return typeof t === 'string' ? t : (t?.value ?? '');
  };

  it('shows the connection and its domain after the library; Take Snapshot and Revert on its rows change libvirt’s own view', async () => {
    // The setting empty (its default): no libvirt row, and nothing of libvirt is read.
    assert.deepEqual(config().get('libvirt.connections'), []);
    assert.equal((await roots()).filter((n) => n.kind === 'libvirt').length, 0);
    await setConnections([SYSTEM_URI]);
    // The library's row comes from its own (asynchronous) refresh after the switch to a fresh library.
    const libraryShown = async (): Promise<boolean> => (await roots()).some((n) => n.kind === 'machine' && n.machine.name === 'library-vm');
    await until(async () => (await domainRow()) !== undefined && (await libraryShown()), 'the library’s machine, the libvirt root and its domain', 60_000);
    const all = await roots();
    const libraryRow = all.findIndex((n) => n.kind === 'machine' && n.machine.name === 'library-vm');
    const root = all.findIndex((n) => n.id === `libvirt/${SYSTEM_URI}`);
    assert.ok(libraryRow >= 0 && root > libraryRow, `the libvirt root comes after the library’s machines: ${all.map((n) => n.id).join(', ')}`);
    assert.equal(api.tree.getTreeItem(all[root]!).label, `libvirt — ${SYSTEM_URI}`);
    const domain = (await domainRow())!;
    assert.match(contextValue(domain), /^libvirtDomain:off:(.*:)?memorySnapshots:/);

    const menus = contextMenus();
    assert.deepEqual(offered(menus, contextValue(domain)), ['vmsnap.cloneMachine', 'vmsnap.setDevMachine', 'vmsnap.startMachine', 'vmsnap.takeSnapshot']);

    await vscode.commands.executeCommand('vmsnap.takeSnapshot', domain, { name: 'first', description: 'taken from the tree' });
    await vscode.commands.executeCommand('vmsnap.takeSnapshot', await domainRow(), { name: 'second' });
    assert.equal(await currentSnapshot(), 'second');
    await until(async () => (await snapshotRow('second'))?.isCurrentParent === true, 'the tree to show “second” as the current snapshot', 30_000);

    // The tree follows libvirt's parent links; the row shows when it was taken, the hover its description.
    const first = (await snapshotRow('first'))!;
    assert.deepEqual(childNames(first), ['second']);
    assert.match(String(api.tree.getTreeItem(first).description), /just now|min ago/);
    assert.match(tooltipText(first), /taken from the tree/);
    assert.match(tooltipText(first), /Taken: \d{4}-\d\d-\d\d \d\d:\d\d/);
    assert.match(tooltipText(first), /Disks only/);
    // An internal snapshot: a full clone from it, no linked one (a linked clone needs a frozen file).
    assert.equal(contextValue(first), 'libvirtSnapshot:off:revert:delete:children:deleteChildren:describe:fullClone:');
    // Rename is not offered (libvirt names snapshots for good), and refused with the reason when asked for anyway.
    assert.deepEqual(offered(menus, contextValue(first)), ['vmsnap.cloneSnapshot', 'vmsnap.deleteSnapshot', 'vmsnap.deleteSnapshotWithChildren', 'vmsnap.editSnapshotDescription', 'vmsnap.revert']);
    api.lastError = undefined;
    assert.equal(await vscode.commands.executeCommand('vmsnap.renameSnapshot', first, { name: 'renamed' }), undefined);
    const refused = lastError();
    assert.equal(refused?.message, RENAME_REASON);
    assert.equal(refused?.code, 'UNSUPPORTED');

    // The revert asks as ours does when the current state would be lost: the safe choice first.
    const { asked } = await answering(api, ['Revert'], () => vscode.commands.executeCommand('vmsnap.revert', first));
    assert.match(asked[0] ?? '', /\{Snapshot Current State, Then Revert \| Revert\}$/);
    assert.equal(await currentSnapshot(), 'first');
    await until(async () => (await snapshotRow('first'))?.isCurrentParent === true, 'the tree to show “first” as the current snapshot', 30_000);
    const here = ((await api.tree.getChildren(await snapshotRow('first'))) as TreeNode[]).map((n) => n.id);
    assert.ok(here.includes(`libvirt/${SYSTEM_URI}/${domain.view.machine.uuid}/current`), '“You are here” under “first”');
  });

  it('starts the domain from its row, snapshots its running state, and reverts into and out of it', async () => {
    await vscode.commands.executeCommand('vmsnap.startMachine', await domainRow());
    assert.equal(await domstate(), 'running');
    await until(async () => (await domainRow())?.view.machine.powerState === 'running', 'the domain row to show it running', 30_000);
    const running = (await domainRow())!;
    assert.match(contextValue(running), /^libvirtDomain:running:/);
    assert.ok(offered(contextMenus(), contextValue(running)).includes('vmsnap.stopMachine'), 'Stop offered on a running domain');

    await vscode.commands.executeCommand('vmsnap.takeSnapshot', running, { name: 'live' });
    assert.equal(await currentSnapshot(), 'live');
    await until(async () => (await snapshotRow('live'))?.isCurrentParent === true, 'the tree to show “live”', 30_000);
    const live = (await snapshotRow('live'))!;
    assert.equal(live.snapshot.hasMemory, true, 'libvirt saved the memory with it');
    assert.match(contextValue(live), /:memory:/);
    assert.match(String(api.tree.getTreeItem(live).description), /running state/);
    // A new branch: “live” hangs under “first” beside “second”, as libvirt's parent links say.
    assert.deepEqual(childNames((await snapshotRow('first'))!), ['live', 'second']);

    // Back to a disks-only snapshot: the domain ends; into the running one: it runs again.
    await vscode.commands.executeCommand('vmsnap.revert', await snapshotRow('second'), { mode: 'discard' });
    assert.equal(await currentSnapshot(), 'second');
    assert.equal(await domstate(), 'shut off');
    await vscode.commands.executeCommand('vmsnap.revert', await snapshotRow('live'), { mode: 'discard' });
    assert.equal(await currentSnapshot(), 'live');
    assert.equal(await domstate(), 'running');
    await until(async () => (await domainRow())?.view.machine.powerState === 'running', 'the domain row to show it running again', 30_000);
  });

  it('checkpoints a libvirt domain as the dev machine, and its Revert goes back to the checkpoint', async () => {
    await config().update('devMachineConnection', SYSTEM_URI, vscode.ConfigurationTarget.Global);
    await config().update('devMachine', domainName, vscode.ConfigurationTarget.Global);
    await until(() => api.statusShown && api.statusText.includes(domainName), 'the status bar to show the libvirt dev machine', 30_000);
    await until(async () => (await domainRow())?.isDevMachine === true, 'the domain row to say it is the dev machine', 30_000);
    assert.match(contextValue((await domainRow())!), /:dev:/);
    assert.ok(!offered(contextMenus(), contextValue((await domainRow())!)).includes('vmsnap.setDevMachine'), 'Set as Dev Machine not offered again');

    const { result: checkpoint } = await answering(api, [], () => vscode.commands.executeCommand<SourceSnapshot>('vmsnap.checkpoint'));
    assert.ok(checkpoint, `the checkpoint was taken (${lastError()?.message ?? ''})`);
    assert.match(checkpoint.name, /^Checkpoint /);
    assert.equal(checkpoint.hasMemory, true, 'the running domain’s memory is kept');
    assert.equal(await currentSnapshot(), checkpoint.name);
    await until(() => api.statusText.includes(checkpoint.name), 'the status bar to show the checkpoint', 30_000);

    // Somewhere else, then back: the target the checkpoint's Revert button passes.
    await vscode.commands.executeCommand('vmsnap.revert', await snapshotRow('second'), { mode: 'discard' });
    assert.equal(await domstate(), 'shut off');
    const domain = (await domainRow())!;
    await vscode.commands.executeCommand('vmsnap.revert', { libvirt: SYSTEM_URI, machine: domain.view.machine.uuid, snapshot: checkpoint.name }, { mode: 'discard' });
    assert.equal(await currentSnapshot(), checkpoint.name);
    assert.equal(await domstate(), 'running');

    // The library's machines are not the dev machine meanwhile.
    const libraryVm = (await roots()).find((n) => n.kind === 'machine' && n.machine.name === 'library-vm');
    assert.ok(libraryVm && libraryVm.kind === 'machine' && !libraryVm.isDevMachine);
    await vscode.commands.executeCommand('vmsnap.forceStopMachine', await domainRow());
    assert.equal(await domstate(), 'shut off');
  });

  it('clones a powered-off domain from its row, full and linked, as libvirt sees them; refuses a linked clone of a running one with the reason', async function () {
    // A domain of its own, without internal snapshots (a linked clone of the current state needs none).
    this.timeout(600_000);
    const source = `${prefix}src`;
    const { disk } = await defineCountingDomainAsync(SYSTEM_URI, scratch, source);
    const linkedName = `${prefix}linked`;
    const made: string[] = [];
    // The view in sight, so that the new domain's row can be selected (once more after a redraw, as elsewhere).
    await Promise.resolve(vscode.commands.executeCommand('workbench.view.extension.vmsnap')).catch(async () => {
      await new Promise((r) => setTimeout(r, 500));
      await vscode.commands.executeCommand('workbench.view.extension.vmsnap');
    });
    await vscode.commands.executeCommand('vmsnap.refresh', await libvirtRoot(SYSTEM_URI));
    await until(async () => (await domainRow(source)) !== undefined, 'the new domain’s row', 60_000);
    const row = (await domainRow(source))!;
    assert.match(contextValue(row), /^libvirtDomain:off:.*:linkedClone:fullClone:/);
    assert.ok(offered(contextMenus(), contextValue(row)).includes('vmsnap.cloneMachine'), 'Clone offered on a powered-off domain');
    const xmlOf = (name: string): Promise<string> => virshOkAsync(SYSTEM_URI, 'dumpxml', name);
    const uuidOf = (xml: string): string => /<uuid>([^<]+)<\/uuid>/.exec(xml)?.[1] ?? '';
    const macsOf = (xml: string): string[] => [...xml.matchAll(/<mac address='([^']+)'/g)].map((m) => m[1]!);
    const disksOf = (xml: string): string[] => [...xml.matchAll(/<disk type='file' device='disk'>[\s\S]*?<source file='([^']+)'/g)].map((m) => m[1]!);
    const sourceXml = await xmlOf(source);
    try {
      // Full, through the questions: full first (a linked clone leaves a snapshot on the source), the name prefilled.
      const { result: full, asked } = await answering(api, ['Full clone', '='], () => vscode.commands.executeCommand<SourceCloneResult>('vmsnap.cloneMachine', row));
      assert.ok(full, `the full clone was made (${lastError()?.message ?? ''})`);
      assert.match(asked[0] ?? '', /^pick: Clone the current state of “.*src” \{\$\(files\) Full clone \| \$\(link\) Linked clone\}/);
      assert.match(asked[1] ?? '', /^input: .* \/ Name of the new domain \[.*src-clone\]$/);
      assert.equal(full.machine.name, `${source}-clone`);
      made.push(full.machine.name);
      const fullXml = await xmlOf(full.machine.name);
      assert.notEqual(uuidOf(fullXml), uuidOf(sourceXml), 'a new UUID');
      assert.equal(macsOf(fullXml).length, macsOf(sourceXml).length);
      assert.ok(macsOf(fullXml).every((m) => !macsOf(sourceXml).includes(m)), 'new MAC addresses');
      assert.deepEqual(disksOf(fullXml), [join(scratch, `${source}-clone.qcow2`)]);
      const fullChain = JSON.parse(await runToolOk('qemu-img', ['info', '--backing-chain', '-U', '--output=json', disksOf(fullXml)[0]!])) as { filename: string }[];
      assert.equal(fullChain.length, 1, 'a full clone’s disk depends on nothing');
      await until(() => api.view.selection[0]?.id === `libvirt/${SYSTEM_URI}/${full.machine.uuid}`, 'the full clone’s row to be selected', 30_000);

      // Linked, by the arguments: an external snapshot of the source freezes its disk; the clone's disk is an overlay on it.
      const linked = await vscode.commands.executeCommand<SourceCloneResult>('vmsnap.cloneMachine', await domainRow(source), { kind: 'linked', name: linkedName });
      assert.ok(linked, `the linked clone was made (${lastError()?.message ?? ''})`);
      made.push(linkedName);
      assert.equal(linked.takenSnapshot?.name, `base-of-${linkedName}`);
      const linkedXml = await xmlOf(linkedName);
      assert.notEqual(uuidOf(linkedXml), uuidOf(sourceXml));
      assert.ok(macsOf(linkedXml).every((m) => !macsOf(sourceXml).includes(m)), 'new MAC addresses');
      assert.deepEqual(disksOf(linkedXml), [join(scratch, `${linkedName}.qcow2`)]);
      const chain = JSON.parse(await runToolOk('qemu-img', ['info', '--backing-chain', '-U', '--output=json', disksOf(linkedXml)[0]!])) as { filename: string }[];
      assert.deepEqual(
        chain.map((c) => c.filename),
        [join(scratch, `${linkedName}.qcow2`), disk],
        'the clone’s disk is an overlay on the source’s frozen layer',
      );
      assert.notEqual(disksOf(await xmlOf(source))[0], disk, 'the source writes to a new overlay now');
      await until(() => api.view.selection[0]?.id === `libvirt/${SYSTEM_URI}/${linked.machine.uuid}`, 'the linked clone’s row to be selected', 30_000);

      // The rows: both clones under the connection; the source's frozen snapshot offers a linked clone, not a full one.
      assert.ok((await domainRow(full.machine.name)) !== undefined && (await domainRow(linkedName)) !== undefined, 'the clones’ rows');
      await until(async () => (await snapshotRowOf(source, `base-of-${linkedName}`)) !== undefined, 'the frozen snapshot’s row', 30_000);
      const frozen = (await snapshotRowOf(source, `base-of-${linkedName}`))!;
      assert.match(contextValue(frozen), /:linkedClone:$/);
      assert.ok(offered(contextMenus(), contextValue(frozen)).includes('vmsnap.cloneSnapshot'));

      // A running domain: not offered, and refused with the reason when asked for anyway.
      await vscode.commands.executeCommand('vmsnap.startMachine', await domainRow(source));
      await until(async () => (await domainRow(source))?.view.machine.powerState === 'running', 'the source’s row to show it running', 30_000);
      const running = (await domainRow(source))!;
      assert.ok(!offered(contextMenus(), contextValue(running)).includes('vmsnap.cloneMachine'), 'Clone not offered on a running domain');
      api.lastError = undefined;
      assert.equal(await vscode.commands.executeCommand('vmsnap.cloneMachine', running, { kind: 'linked', name: `${prefix}nope` }), undefined);
      assert.equal(lastError()?.code, 'POWERED_ON');
      assert.match(lastError()?.message ?? '', /is running: a clone is made of a powered-off domain .* so stop it first\./);
      assert.notEqual((await virshAsync(SYSTEM_URI, 'domuuid', `${prefix}nope`)).status, 0, 'no domain was made');
      assert.ok(!existsSync(join(scratch, `${prefix}nope.qcow2`)), 'no disk was made');
      await vscode.commands.executeCommand('vmsnap.forceStopMachine', await domainRow(source));

      // The first domain has internal snapshots: a full clone from one of them, and no linked clone (refused with why).
      const main = (await domainRow())!;
      assert.doesNotMatch(contextValue(main), /:linkedClone:/);
      api.lastError = undefined;
      assert.equal(await vscode.commands.executeCommand('vmsnap.cloneMachine', main, { kind: 'linked', name: `${prefix}nope` }), undefined);
      assert.equal(lastError()?.code, 'UNSUPPORTED');
      assert.match(lastError()?.message ?? '', /has internal snapshots.*make a full clone\./);
      api.lastError = undefined;
      assert.equal(await vscode.commands.executeCommand('vmsnap.cloneSnapshot', await snapshotRow('first'), { kind: 'linked', name: `${prefix}nope` }), undefined);
      assert.equal(lastError()?.message, LINKED_FROM_INTERNAL);
      const fromFirst = await vscode.commands.executeCommand<SourceCloneResult>('vmsnap.cloneSnapshot', await snapshotRow('first'), { kind: 'full', name: `${prefix}from-first` });
      assert.ok(fromFirst, `the full clone from “first” was made (${lastError()?.message ?? ''})`);
      made.push(fromFirst.machine.name);
      const fromFirstXml = await xmlOf(fromFirst.machine.name);
      assert.deepEqual(disksOf(fromFirstXml), [join(scratch, `${prefix}from-first.qcow2`)]);
      const copied = JSON.parse(await runToolOk('qemu-img', ['info', '--backing-chain', '-U', '--output=json', disksOf(fromFirstXml)[0]!])) as { filename: string; snapshots?: unknown[] }[];
      assert.equal(copied.length, 1, 'a copy that depends on nothing');
      assert.equal((copied[0]!.snapshots ?? []).length, 0, 'the state of “first”, without the source’s snapshots');
      assert.notEqual((await virshAsync(SYSTEM_URI, 'domuuid', `${prefix}nope`)).status, 0, 'no domain was made');
      await until(async () => (await domainRow(fromFirst.machine.name)) !== undefined, 'the clone’s row', 30_000);
    } finally {
      // The clones and their disks go (the source and its files go with the other test domains).
      for (const name of made) {
        const files = disksOf(await xmlOf(name).catch(() => ''));
        await virshAsync(SYSTEM_URI, 'destroy', name);
        await virshAsync(SYSTEM_URI, 'undefine', name, '--snapshots-metadata');
        for (const f of files) rmSync(f, { force: true });
        assert.ok(files.every((f) => !existsSync(f)), `the disks of ${name} are removed`);
      }
    }
  });

  it('shows a slow connection as reading without holding up the library, and an unreachable one as one row with the reason and Retry', async () => {
    // A host that accepts the SSH connection and never answers: its read waits, the rest of the tree does not.
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => void sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    const slow = `qemu+ssh://root@127.0.0.1:${port}/system`;
    try {
      await setConnections([slow, UNREACHABLE]);
      await until(async () => (await libvirtRoot(UNREACHABLE)) !== undefined && contextValue((await libvirtRoot(UNREACHABLE))!) === 'libvirtConnection:error:', 'the unreachable connection’s error row', 60_000);
      const started = Date.now();
      const all = await roots();
      assert.ok(Date.now() - started < 2000, `the roots came in ${Date.now() - started} ms while a connection hangs`);
      assert.ok(all.some((n) => n.kind === 'machine' && n.machine.name === 'library-vm'), 'the library’s machine still shows');
      assert.equal(all.filter((n) => n.kind === 'libvirt').length, 2, 'one row per connection');
      const waiting = (await libvirtRoot(slow))!;
      assert.equal(contextValue(waiting), 'libvirtConnection:loading:');
      assert.equal(api.tree.getTreeItem(waiting).description, 'reading…');

      const row = (await libvirtRoot(UNREACHABLE))!;
      assert.deepEqual(await api.tree.getChildren(row), []);
      const item = api.tree.getTreeItem(row);
      assert.equal(item.label, 'libvirt — 127.0.0.1');
      assert.equal(item.collapsibleState, vscode.TreeItemCollapsibleState.None);
      assert.match(String(item.description), /\S.*[.:]/, 'the error’s sentence');
      assert.deepEqual(offered(contextMenus(), contextValue(row)), ['vmsnap.retryConnection']);
      const retried = (await vscode.commands.executeCommand('vmsnap.retryConnection', row)) as { ok: boolean };
      assert.equal(retried.ok, false);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
    // The silent host hung up: its row turns into an error row too.
    await until(async () => contextValue((await libvirtRoot(slow))!) === 'libvirtConnection:error:', 'the hung-up connection’s error row', 60_000);
  });
});
