// Clones of libvirt domains from the Machines tree beyond the common case: over qemu+ssh (an sshd on a loopback port
// with a key made for the test, reaching the same libvirtd, as test/engine/libvirt/remote.test.ts does), where a
// snapshot's row offers only the clones the remote host can make and says why not the others; a full clone
// cancelled from its progress notification, after which libvirt and the disks' folder are as they were; and the
// command palette's pick, which lists domains under their connection only where their rows offer the command.
//
// Everything that runs a tool is asynchronous: a synchronous spawn would block the whole extension host.
import * as assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import { notInPool, REMOTE_FULL_FROM_SNAPSHOT } from '../../src/engine/libvirt';
import { LINKED_FROM_INTERNAL } from '../../src/engine/libvirt/records';
import type { ShownError, TestHandle } from '../../src/extension/test-handle';
import { contextValue } from '../../src/extension/tree/nodes';
import { requireOpenSsh, startSshd, type Sshd } from '../engine/ssh/openssh-fixtures';
import { defineCountingDomainAsync, removeTestDomainsAsync, requireLibvirt, runTool, shareWithQemu, slowToCopy, startDaemons, SYSTEM_URI, testPrefix, virshAsync, virshOkAsync, type Daemons } from '../support/libvirt';
import { contextMenus, libvirtRows, offered } from './libvirt-support';
import { answering, extensionApi, machineWithSnapshots, until, useFreshLibrary, type FreshLibrary } from './running-extension';

describe('libvirt clones from the Machines tree and the palette: over SSH, cancelled, picked', function () {
  this.timeout(300_000);
  let api: TestHandle;
  let daemons: Daemons | undefined;
  let sshd: Sshd | undefined;
  let scratch = '';
  let library: FreshLibrary | undefined;
  let remoteUri = '';
  const prefix = testPrefix();
  const domainName = `${prefix}dom`;
  const config = () => vscode.workspace.getConfiguration('vmsnap');
  const setConnections = (uris: string[]) => config().update('libvirt.connections', uris, vscode.ConfigurationTarget.Global);
  // Read through a function: an assignment in the test would make TypeScript narrow the field for good.
  const lastError = (): ShownError | undefined => api.lastError;
  const runToolOk = async (file: string, args: string[]): Promise<string> => {
    const r = await runTool(file, args, 60_000);
    if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const domainNames = async (): Promise<string[]> => (await virshOkAsync(SYSTEM_URI, 'list', '--all', '--name')).split('\n').map((l) => l.trim()).filter((l) => l !== '').sort();

  before(async function () {
    this.timeout(600_000);
    requireLibvirt(this);
    requireOpenSsh(this, ['ssh', 'sshd']);
    daemons = await startDaemons();
    scratch = mkdtempSync(join(tmpdir(), 'vmsnap-libvirt-clone-'));
    shareWithQemu(scratch);
    await defineCountingDomainAsync(SYSTEM_URI, scratch, domainName);
    // An internal snapshot of the powered-off domain (libvirt's default for a qcow2 disk).
    await virshOkAsync(SYSTEM_URI, 'snapshot-create-as', '--domain', domainName, '--name', 'first');

    // The "remote" host is this one over SSH: a key and a known_hosts made for the test, never the user's ~/.ssh.
    const sshDir = join(scratch, 'ssh');
    mkdirSync(sshDir);
    sshd = await startSshd(sshDir);
    const knownHosts = join(sshDir, 'known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${sshd.port} ${sshd.hostKey.publicKey}\n`);
    const wrapper = join(sshDir, 'ssh');
    writeFileSync(wrapper, `#!/bin/sh\nexec ssh -F none -o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 "$@"\n`, { mode: 0o755 });
    remoteUri = `qemu+ssh://root@127.0.0.1:${sshd.port}/system?keyfile=${sshd.identityFile}&command=${wrapper}`;
    api = await extensionApi();
    // One machine in the library, which the palette's pick lists before the connections.
    library = await useFreshLibrary(api);
    await machineWithSnapshots(library.lib, 'library-vm');
    await setConnections([SYSTEM_URI, remoteUri]);
  });

  after(async function () {
    this.timeout(300_000);
    await setConnections([]);
    await removeTestDomainsAsync(SYSTEM_URI, prefix);
    await sshd?.stop();
    await daemons?.stop();
    await library?.dispose();
    if (scratch !== '') rmSync(scratch, { recursive: true, force: true });
  });

  it('a remote snapshot offers no full clone (the host cannot read its disk), says why, and refuses one asked for anyway', async () => {
    const rows = libvirtRows(api);
    await until(async () => (await rows.snapshot(remoteUri, domainName, 'first')) !== undefined && (await rows.snapshot(SYSTEM_URI, domainName, 'first')) !== undefined, 'the snapshot’s row under both connections', 60_000);
    assert.equal(api.tree.getTreeItem((await rows.root(remoteUri))!).label, 'libvirt — 127.0.0.1');

    // On this computer: a full clone from the internal snapshot is offered (a linked one is not: no frozen file).
    const local = (await rows.snapshot(SYSTEM_URI, domainName, 'first'))!;
    assert.match(contextValue(local), /:fullClone:$/);
    assert.ok(offered(contextMenus(), contextValue(local)).includes('vmsnap.cloneSnapshot'));

    // Over SSH: neither kind, so no Clone from Snapshot in the menu; the hover says why.
    const remote = (await rows.snapshot(remoteUri, domainName, 'first'))!;
    assert.equal(remote.snapshot.refusals.fullClone, REMOTE_FULL_FROM_SNAPSHOT, 'the source says it, not the extension');
    assert.doesNotMatch(contextValue(remote), /Clone:/);
    assert.ok(!offered(contextMenus(), contextValue(remote)).includes('vmsnap.cloneSnapshot'), 'Clone from Snapshot not offered');
    const hover = api.tree.getTreeItem(remote).tooltip;
    assert.ok((typeof hover === 'string' ? hover : (hover?.value ?? '')).replace(/\\/g, '').includes(REMOTE_FULL_FROM_SNAPSHOT), 'the hover gives the reason');
    // The current state: a remote full clone copies through libvirt's storage, which this disk is in no pool of, so
    // no Clone there either and the hover says why; once its folder is a pool (and the rows read again), Full is offered.
    const remoteDomain = (await rows.domain(remoteUri, domainName))!;
    const reason = notInPool(remoteDomain.view.domain.disks[0]?.path ?? '', remoteUri);
    assert.deepEqual(remoteDomain.view.cloneRefusals, { linked: reason, full: reason }, 'the source says it');
    assert.doesNotMatch(contextValue(remoteDomain), /Clone:/);
    const domainHover = api.tree.getTreeItem(remoteDomain).tooltip;
    assert.ok((typeof domainHover === 'string' ? domainHover : (domainHover?.value ?? '')).replace(/\\/g, '').includes(reason), 'the domain’s hover gives the reason');
    const pool = `${prefix}pool`;
    await virshOkAsync(SYSTEM_URI, 'pool-create-as', pool, 'dir', '--target', scratch);
    try {
      await vscode.commands.executeCommand('vmsnap.refresh', await rows.root(remoteUri));
      await until(async () => /:fullClone:/.test(contextValue((await rows.domain(remoteUri, domainName))!)), 'Full clone offered once the disk is in a pool', 60_000);
    } finally {
      await virshAsync(SYSTEM_URI, 'pool-destroy', pool);
    }

    // Asked for anyway: refused before any question with both reasons, and a full one with the remote reason.
    const before = await domainNames();
    api.lastError = undefined;
    const { result } = await answering(api, [], () => vscode.commands.executeCommand('vmsnap.cloneSnapshot', remote));
    assert.equal(result, undefined);
    assert.equal(lastError()?.code, 'UNSUPPORTED');
    assert.equal(lastError()?.message, `${LINKED_FROM_INTERNAL} ${REMOTE_FULL_FROM_SNAPSHOT}`);
    api.lastError = undefined;
    assert.equal(await vscode.commands.executeCommand('vmsnap.cloneSnapshot', remote, { kind: 'full', name: `${prefix}nope` }), undefined);
    assert.equal(lastError()?.code, 'UNSUPPORTED');
    assert.equal(lastError()?.message, REMOTE_FULL_FROM_SNAPSHOT);
    assert.deepEqual(await domainNames(), before, 'no domain was made');
    assert.notEqual((await virshAsync(SYSTEM_URI, 'domuuid', `${prefix}nope`)).status, 0);
  });

  it('Cancel on a full clone’s progress notification stops the copy: no new domain, no disk left beside the source’s, the source as it was', async function () {
    this.timeout(300_000);
    const name = `${prefix}big`;
    const cloneName = `${prefix}big-clone`;
    const cloneDisk = join(scratch, `${cloneName}.qcow2`);
    const { disk } = await defineCountingDomainAsync(SYSTEM_URI, scratch, name);
    // A copy of about 8 s (qemu-img's own rate limit), so that Cancel comes mid-copy; the tool outside the disks' folder.
    const elsewhere = mkdtempSync(join(tmpdir(), 'vmsnap-throttled-'));
    const throttled = await slowToCopy(disk, elsewhere);
    const previousQemuImg = process.env['VMSNAP_QEMU_IMG'];
    try {
      const original = join(elsewhere, 'original.qcow2');
      await runToolOk('cp', ['--sparse=always', disk, original]);
      const rows = libvirtRows(api);
      await vscode.commands.executeCommand('vmsnap.refresh', await rows.root(SYSTEM_URI));
      await until(async () => (await rows.domain(SYSTEM_URI, name)) !== undefined, 'the new domain’s row', 60_000);
      const namesBefore = await domainNames();
      const filesBefore = readdirSync(scratch).sort();
      const xmlBefore = await virshOkAsync(SYSTEM_URI, 'dumpxml', name);

      process.env['VMSNAP_QEMU_IMG'] = throttled;
      // Only the clone's notification is shown, so that the primary action run below is its Cancel.
      await vscode.commands.executeCommand('notifications.clearAll');
      api.lastError = undefined;
      let settled = false;
      const cloning = Promise.resolve(vscode.commands.executeCommand('vmsnap.cloneMachine', await rows.domain(SYSTEM_URI, name), { kind: 'full', name: cloneName })).finally(() => (settled = true));
      await until(() => existsSync(cloneDisk), 'qemu-img to start writing the clone’s disk', 30_000);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(settled, false, 'the copy still runs when Cancel is pressed');
      // The notification's Cancel button, as a click runs it: its primary action.
      const cancelledAt = Date.now();
      await vscode.commands.executeCommand('notification.acceptPrimaryAction');
      assert.equal(await cloning, undefined, 'the command ends without a clone');
      assert.ok(Date.now() - cancelledAt < 4000, `the clone ended ${Date.now() - cancelledAt} ms after Cancel, not when the copy would have`);
      assert.equal(lastError()?.code, 'ABORTED', `a cancellation, not a failure (${lastError()?.message ?? 'nothing shown'})`);

      // No qemu-img left writing, no domain, no file beside the source's; the source's definition and disk unchanged.
      const writers = async (): Promise<number> => {
        let n = 0;
        for (const pid of (await readdir('/proc')).filter((d) => /^\d+$/.test(d))) {
          const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
          if (cmdline.includes(cloneDisk)) n++;
        }
        return n;
      };
      await until(async () => (await writers()) === 0, 'the copying qemu-img to end', 10_000);
      assert.deepEqual(await domainNames(), namesBefore, 'no new domain');
      assert.deepEqual(readdirSync(scratch).sort(), filesBefore, 'no new file next to the source’s disk');
      assert.equal(await virshOkAsync(SYSTEM_URI, 'dumpxml', name), xmlBefore, 'the source’s definition is unchanged');
      assert.match(await runToolOk('qemu-img', ['compare', '-U', original, disk]), /Images are identical/, 'the source’s disk reads the same');
    } finally {
      if (previousQemuImg === undefined) delete process.env['VMSNAP_QEMU_IMG'];
      else process.env['VMSNAP_QEMU_IMG'] = previousQemuImg;
      rmSync(elsewhere, { recursive: true, force: true });
      rmSync(cloneDisk, { force: true });
    }
  });

  it('the palette’s pick lists libvirt domains under their connection, only where their rows offer the command', async () => {
    const dom = `$(server) ${domainName}`;
    const local = `libvirt — ${SYSTEM_URI}`;
    const remote = 'libvirt — 127.0.0.1';
    /** The connections under whose separator the pick lists the domain, in the pick's order. */
    const listedUnder = (question: string): string[] => {
      const under: string[] = [];
      let connection = '';
      for (const l of (/\{(.*)\}/.exec(question)?.[1] ?? '').split(' | ')) {
        if (l.startsWith('libvirt — ')) connection = l;
        else if (l === dom) under.push(connection);
      }
      return under;
    };

    // Clone from Snapshot: on this computer from the internal snapshot (full only, and the pick says why); over SSH
    // neither kind, so the remote connection lists nothing. Cancelled at the kind: nothing is made.
    const names = await domainNames();
    const clone = await answering(api, [dom, 'first', undefined], () => vscode.commands.executeCommand('vmsnap.cloneSnapshot'));
    assert.equal(clone.result, undefined);
    assert.match(clone.asked[0] ?? '', /^pick: Choose a machine \{Library \| \$\(vm\) library-vm \| libvirt — /, 'the library’s machines first');
    assert.deepEqual(listedUnder(clone.asked[0] ?? ''), [local], clone.asked[0]);
    assert.match(clone.asked[1] ?? '', new RegExp(`^pick: ${domainName}: Choose a snapshot \\{\\$\\(device-camera\\) first\\}`));
    assert.match(clone.asked[2] ?? '', /^pick: Clone snapshot “first” .*\{\$\(files\) Full clone\}/);
    assert.ok((clone.asked[2] ?? '').includes(LINKED_FROM_INTERNAL), 'the kind left out, with the reason');
    assert.deepEqual(await domainNames(), names);
    // A library machine picked: the library's own next question (which of its snapshots).
    const fromLibrary = await answering(api, ['library-vm', undefined], () => vscode.commands.executeCommand('vmsnap.cloneSnapshot'));
    assert.match(fromLibrary.asked[1] ?? '', /^pick: library-vm: .*\{\$\(device-camera\) /);

    // Revert: offered on both connections; Stop: on neither (the domain is off), the library’s machine only; Start: on both.
    const revert = await answering(api, [undefined], () => vscode.commands.executeCommand('vmsnap.revert'));
    assert.equal(revert.result, undefined);
    assert.deepEqual(listedUnder(revert.asked[0] ?? ''), [local, remote], revert.asked[0]);
    const stop = await answering(api, [undefined], () => vscode.commands.executeCommand('vmsnap.stopMachine'));
    assert.deepEqual(listedUnder(stop.asked[0] ?? ''), [], stop.asked[0]);
    assert.match(stop.asked[0] ?? '', /\{\$\(vm\) library-vm( \||\})/);
    const start = await answering(api, [undefined], () => vscode.commands.executeCommand('vmsnap.startMachine'));
    assert.deepEqual(listedUnder(start.asked[0] ?? ''), [local, remote], start.asked[0]);
  });
});
