// Running machines from VS Code: the power commands, the rows' state, the serial console in a terminal, and a
// snapshot of a running machine reverted into its running state. The guest is the counting boot sector
// (test/support/counting-guest.ts), imported as a raw bootable disk, on TCG. Every QEMU is ended in after().
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { DeleteSnapshotResult, MachineDetails, MachineStatus, RevertResult, SnapshotInfo, StopMachineResult } from '../../src/engine/machine';
import { machineStatus as runtimeStatus, stopMachine as runtimeStop } from '../../src/engine/runtime';
import { formatBytes } from '../../src/extension/format';
import type { ShownError, TestHandle } from '../../src/extension/test-handle';
import { contextValue, type TreeNode } from '../../src/extension/tree/nodes';
import { POWER_POLL_MS } from '../../src/extension/tree/power-watch';
import { countsInLog, writeCountingGuest } from '../support/counting-guest';

/** The line a console writes between the replayed serial log and the live output. */
const LIVE = '── Live ──';
/** A console's live output, line ends as in a file. */
const live = (transcript: string): string => {
  const text = transcript.replace(/\r\n/g, '\n');
  return text.includes(LIVE) ? text.slice(text.indexOf(LIVE) + LIVE.length) : text;
};
import { ACCEL, countsAfterRestart, countsSince, last, logSize, requireQemu, waitForCounts } from '../support/guest-machines';
import { answering, extensionApi, type FreshLibrary, until, useFreshLibrary } from './running-extension';

const POWER_COMMANDS = ['startMachine', 'resumeMachine', 'pauseMachine', 'stopMachine', 'forceStopMachine', 'openConsole'].map((c) => `vmsnap.${c}`);

interface MenuItem {
  command: string;
  when?: string;
  group?: string;
}

/** The commands a row's menus offer, by evaluating the `when` clauses (conjunctions of viewItem regexes). */
function offered(menus: MenuItem[], viewItem: string, inline: boolean): string[] {
  const holds = (term: string): boolean => {
    const t = term.trim();
    if (t === 'view == vmsnap.machines') return true;
    const m = /^(!\()?viewItem =~ \/(.*)\/\)?$/.exec(t);
    if (!m) throw new Error(`cannot evaluate "${t}"`);
    const match = new RegExp(m[2]!).test(viewItem);
    return m[1] ? !match : match;
  };
  return [
    ...new Set(
      menus
        .filter((i) => (i.group ?? '').startsWith('inline') === inline)
        .filter((i) => (i.when ?? '').split('&&').every(holds))
        .map((i) => i.command),
    ),
  ].sort();
}

function iconId(api: TestHandle, node: TreeNode): string {
  const icon = api.tree.getTreeItem(node).iconPath;
  return icon instanceof vscode.ThemeIcon ? icon.id : '';
}

describe('Power and console (QEMU on TCG)', function () {
  this.timeout(120_000);
  let api: TestHandle;
  let library: FreshLibrary;
  let machine: MachineDetails;
  let scratch: string;
  let menus: MenuItem[];

  // Read through a function: an assignment in the test would make TypeScript narrow the field for good.
  const lastError = (): ShownError | undefined => api.lastError;
  const machineRow = async (): Promise<TreeNode> => {
    const n = await api.tree.machineNode(machine.id);
    assert.ok(n, 'the machine has a row');
    return n;
  };
  /** Waits until the machine's row shows `state` (the tree follows the library's file events). */
  const rowShows = async (state: string): Promise<TreeNode> => {
    await until(async () => contextValue(await machineRow()).startsWith(`machine:${state}:`), `the row to show ${state}`);
    return machineRow();
  };

  before(async () => {
    requireQemu();
    // The extension host is this process: the runtime reads the accelerator when it starts QEMU.
    process.env['VMSNAP_QEMU_ACCEL'] = ACCEL;
    api = await extensionApi();
    await vscode.commands.executeCommand('workbench.view.extension.vmsnap');
    library = await useFreshLibrary(api);
    scratch = mkdtempSync(join(tmpdir(), 'vmsnap-power-'));
    const raw = join(scratch, 'guest.raw');
    writeCountingGuest(raw);
    machine = (await library.lib.importMachine('guest', raw, { cpus: 1, memoryMiB: 64 })).machine;
    const ext = vscode.extensions.getExtension('vmsnap.vmsnap')!;
    menus = (ext.packageJSON as { contributes: { menus: Record<string, MenuItem[]> } }).contributes.menus['view/item/context']!;
  });

  beforeEach(() => {
    api.lastError = undefined;
  });

  after(async () => {
    // Whatever happened, no QEMU outlives the suite.
    for (const m of await library.lib.list().catch(() => [])) {
      const pid = (await runtimeStatus(m.folder).catch(() => null))?.pid;
      await runtimeStop(m.folder, { force: true }).catch(() => {});
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone, as it should be
        }
      }
    }
    api.console(machine.id)?.terminal.dispose();
    await library.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('a blank machine (empty disk, no CD) powers on and says it has nothing to boot; a bootable one does not', async () => {
    const blank = await library.lib.createMachine('blank', { diskSize: 16 * 1024 * 1024 });
    api.lastInfo = undefined;
    const status = await vscode.commands.executeCommand<MachineStatus>('vmsnap.startMachine', blank.id);
    try {
      assert.equal(lastError(), undefined, lastError()?.message);
      assert.equal(status.powerState, 'running');
      assert.match(api.lastInfo ?? '', /“blank” is running, but has nothing to boot\. No bootable disk: import an image or attach an ISO\./);
    } finally {
      await vscode.commands.executeCommand('vmsnap.forceStopMachine', blank.id);
      await library.lib.deleteMachine(blank.id);
    }
    assert.equal(await library.lib.bootProblem(machine.id), null, 'the counting guest’s boot sector is bootable');
  });

  it('Power On, Pause, Resume, Power Off: each command checks the real state, the row and its menus follow', async () => {
    api.tree.refresh();
    let row = await rowShows('off');
    assert.equal(iconId(api, row), 'vm');
    assert.deepEqual(offered(menus, contextValue(row), true).filter((c) => POWER_COMMANDS.includes(c)), ['vmsnap.startMachine']);

    // Refusals re-check QEMU, whatever the row showed.
    assert.equal(await vscode.commands.executeCommand('vmsnap.pauseMachine', machine.id), undefined);
    assert.match(lastError()?.message ?? '', /“guest” is off: power it on first/);
    assert.equal(await vscode.commands.executeCommand('vmsnap.openConsole', machine.id), undefined);
    assert.match(lastError()?.message ?? '', /is off: power it on, then open its console/);
    api.lastError = undefined;

    const started = await vscode.commands.executeCommand<MachineStatus>('vmsnap.startMachine', machine.id);
    assert.equal(lastError(), undefined, lastError()?.message);
    assert.equal(started.powerState, 'running');
    assert.ok(started.pid !== null && started.pid > 0);
    assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'running');
    row = await rowShows('running');
    assert.equal(iconId(api, row), 'vm-running');
    assert.match(String(api.tree.getTreeItem(row).description), /running/);
    assert.deepEqual(offered(menus, contextValue(row), true).filter((c) => POWER_COMMANDS.includes(c)), ['vmsnap.openConsole', 'vmsnap.pauseMachine', 'vmsnap.stopMachine']);
    assert.deepEqual(offered(menus, contextValue(row), false).filter((c) => POWER_COMMANDS.includes(c)), [
      'vmsnap.forceStopMachine',
      'vmsnap.openConsole',
      'vmsnap.pauseMachine',
      'vmsnap.stopMachine',
    ]);
    // Cloning and deleting stay off-only.
    assert.ok(!offered(menus, contextValue(row), false).includes('vmsnap.cloneMachine'));
    assert.ok(!offered(menus, contextValue(row), false).includes('vmsnap.deleteMachine'));

    assert.equal(await vscode.commands.executeCommand('vmsnap.startMachine', machine.id), undefined);
    assert.match(lastError()?.message ?? '', /already running/);
    api.lastError = undefined;
    const log = started.serialLog;
    await waitForCounts(log, 3);

    const paused = await vscode.commands.executeCommand<MachineStatus>('vmsnap.pauseMachine', machine.id);
    assert.equal(paused.powerState, 'paused');
    assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'paused');
    row = await rowShows('paused');
    assert.equal(iconId(api, row), 'debug-pause');
    assert.deepEqual(offered(menus, contextValue(row), true).filter((c) => POWER_COMMANDS.includes(c)), ['vmsnap.openConsole', 'vmsnap.resumeMachine', 'vmsnap.stopMachine']);
    const frozenAt = logSize(log);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(logSize(log), frozenAt, 'a paused guest prints nothing');

    const resumed = await vscode.commands.executeCommand<MachineStatus>('vmsnap.resumeMachine', machine.id);
    assert.equal(resumed.powerState, 'running');
    await waitForCounts(log, 3, frozenAt);
    await rowShows('running');

    // Power Off without force: the boot sector ignores the ACPI button. After the time-out the machine is still on,
    // and the message says so and offers Force Off (it never stays "running" without a word, nor is it pulled).
    const waited = await vscode.commands.executeCommand<StopMachineResult>('vmsnap.stopMachine', machine.id, { powerdownTimeoutMs: 1000 });
    assert.equal(waited.method, 'still-running');
    assert.ok(waited.ms >= 900, `waited for the guest first (${waited.ms} ms)`);
    assert.match(lastError()?.message ?? '', /did not shut down within 1 s/);
    assert.deepEqual(lastError()?.actions, ['Force Off']);
    assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'running');
    api.lastError = undefined;
    const stopped = await vscode.commands.executeCommand<StopMachineResult>('vmsnap.forceStopMachine', machine.id);
    assert.equal(lastError(), undefined, lastError()?.message);
    assert.ok(stopped.method === 'quit' || stopped.method === 'kill', `stopped by ${stopped.method}`);
    assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'off');
    row = await rowShows('off');
    assert.equal(iconId(api, row), 'vm');
    assert.equal(await vscode.commands.executeCommand('vmsnap.stopMachine', machine.id), undefined);
    assert.match(lastError()?.message ?? '', /already off/);
  });

  it('Open Console: a terminal shows the guest’s serial output with CR LF line ends; stopping the machine closes it', async () => {
    const started = await vscode.commands.executeCommand<MachineStatus>('vmsnap.startMachine', machine.id);
    assert.equal(started.powerState, 'running');
    const name = await vscode.commands.executeCommand<string>('vmsnap.openConsole', machine.id);
    assert.equal(lastError(), undefined, lastError()?.message);
    assert.equal(name, 'Console: guest');
    const c = api.console(machine.id);
    assert.ok(c, 'the console is registered');
    let written = '';
    const sub = c.pty.onDidWrite((s) => (written += s));
    try {
      const counts = (): number[] => countsInLog(live(c.pty.transcript));
      await until(() => counts().length >= 5, 'the guest’s counts in the terminal', 20_000);
      const seen = counts();
      for (let i = 1; i < seen.length; i++) assert.equal(seen[i], seen[i - 1]! + 1, `consecutive counts: ${seen.join(',')}`);
      assert.ok(!/[^\r]\n/.test(c.pty.transcript), 'every line feed comes after a carriage return');
      await until(() => countsInLog(written.replace(/\r\n/g, '\n')).length >= 2, 'onDidWrite to carry the output');
      assert.ok(vscode.window.terminals.includes(c.terminal));

      // A second Open Console shows the same terminal (QEMU serves one console client at a time).
      await vscode.commands.executeCommand('vmsnap.openConsole', machine.id);
      assert.equal(api.console(machine.id)?.terminal, c.terminal);
      assert.equal(vscode.window.terminals.filter((t) => t.name === 'Console: guest').length, 1);
      c.pty.handleInput('\r'); // typed keys go to the serial port (the boot sector ignores them)

      const ended = new Promise<string>((r) => c.pty.onDidEnd(r));
      const stop = await vscode.commands.executeCommand<StopMachineResult>('vmsnap.forceStopMachine', machine.id);
      assert.notEqual(stop.method, 'already-off');
      assert.equal(await ended, 'machine');
      assert.match(c.pty.transcript, /The machine stopped: the console is closed/);
      await until(() => !vscode.window.terminals.includes(c.terminal), 'the console terminal to close');
      assert.equal(api.console(machine.id), undefined);
      await rowShows('off');
    } finally {
      sub.dispose();
    }
  });

  it('closing the console terminal disconnects and leaves the machine running', async () => {
    await vscode.commands.executeCommand('vmsnap.startMachine', machine.id);
    await vscode.commands.executeCommand('vmsnap.openConsole', machine.id);
    const c = api.console(machine.id)!;
    await until(() => countsInLog(c.pty.transcript.replace(/\r\n/g, '\n')).length >= 2, 'output in the terminal');
    const ended = new Promise<string>((r) => c.pty.onDidEnd(r));
    c.terminal.dispose();
    assert.equal(await ended, 'user');
    assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'running');
    // The console can be opened again: the first connection is gone.
    await vscode.commands.executeCommand('vmsnap.openConsole', machine.id);
    const again = api.console(machine.id)!;
    assert.notEqual(again.terminal, c.terminal);
    await until(() => countsInLog(live(again.pty.transcript)).length >= 2, 'output in the new terminal');
    // It starts with what the guest printed while nobody was connected (the end of serial.log), then goes on live.
    const [before = '', after] = again.pty.transcript.replace(/\r\n/g, '\n').split(LIVE);
    assert.ok(before.includes('Earlier output (serial.log)') && after !== undefined, again.pty.transcript.slice(0, 400));
    const earlier = countsInLog(before);
    const later = countsInLog(after);
    assert.ok(earlier.length > 0, 'the replayed log holds counts');
    // The socket is connected before the log is read: a line may show twice (18 a second), but none is missing.
    const [last, next] = [earlier.at(-1)!, later[0]!];
    assert.ok(next <= last + 1 && next >= last - 18, `live output goes on from the log: ${last} then ${next}`);
    again.terminal.dispose();
    await vscode.commands.executeCommand('vmsnap.forceStopMachine', machine.id);
    assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'off');
  });

  it('a QEMU killed behind the extension’s back shows as off within seconds', async () => {
    const started = await vscode.commands.executeCommand<MachineStatus>('vmsnap.startMachine', machine.id);
    await rowShows('running');
    // Let the start's file events settle, so what follows is the power poll's doing.
    await new Promise((r) => setTimeout(r, 1500));
    // SIGKILL: QEMU cannot remove its files, so no file event tells the tree; the power poll does.
    const shownAt = Date.now();
    process.kill(started.pid!, 'SIGKILL');
    await until(async () => contextValue(await machineRow()).startsWith('machine:off:'), 'the row to show off', 15_000);
    console.log(`      the row showed off ${Date.now() - shownAt} ms after QEMU was killed`);
    assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'off');
  });

  it('a hidden Machines view polls nothing; shown again, it shows a QEMU killed meanwhile as off at once', async () => {
    const started = await vscode.commands.executeCommand<MachineStatus>('vmsnap.startMachine', machine.id);
    assert.equal(lastError(), undefined, lastError()?.message);
    await rowShows('running');
    // Let the start's file events settle: from here on, only a power poll could redraw the tree.
    await new Promise((r) => setTimeout(r, 1500));
    await vscode.commands.executeCommand('workbench.action.closeSidebar');
    try {
      await until(() => !api.view.visible, 'the sidebar to close');
      const redrawn: (TreeNode | undefined)[] = [];
      const subscription = api.tree.onDidChangeTreeData((n) => redrawn.push(n));
      try {
        process.kill(started.pid!, 'SIGKILL');
        // Two poll periods and more: a poll would see the power state move and redraw the tree.
        await new Promise((r) => setTimeout(r, 2 * POWER_POLL_MS + 1000));
        assert.equal(redrawn.length, 0, 'the hidden tree was redrawn: something polled QEMU while the view was hidden');
      } finally {
        subscription.dispose();
      }
    } finally {
      await vscode.commands.executeCommand('workbench.view.extension.vmsnap');
    }
    await until(() => api.view.visible, 'the Machines view to open');
    const shownAt = Date.now();
    await until(async () => contextValue(await machineRow()).startsWith('machine:off:'), 'the row to show off', POWER_POLL_MS);
    console.log(`      the row showed off ${Date.now() - shownAt} ms after the view was shown again`);
    assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'off');
  });

  it('a snapshot taken while running is marked; reverting to it brings the machine back running, where it was', async () => {
    // Where Set as Dev Machine writes it (a workspace value would hide a global one).
    const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
    await vscode.workspace.getConfiguration('vmsnap').update('devMachine', 'guest', target);
    try {
      const started = await vscode.commands.executeCommand<MachineStatus>('vmsnap.startMachine', machine.id);
      const log = started.serialLog;
      await waitForCounts(log, 3, logSize(log));
      await until(() => api.statusText.startsWith('$(vm-running) guest · running · '), `the status bar to show the running state (${api.statusText})`);

      const before = last(countsSince(log));
      const snap = await vscode.commands.executeCommand<SnapshotInfo>('vmsnap.takeSnapshot', machine.id, { name: 'live' });
      assert.equal(lastError(), undefined, lastError()?.message);
      const after = last(countsSince(log));
      assert.equal(snap.takenWhileRunning, true);
      assert.equal(snap.hasMemory, true);
      await until(async () => (await api.tree.snapshotNode(machine.id, snap.id)) !== undefined, 'the snapshot row');
      const row = (await api.tree.snapshotNode(machine.id, snap.id))!;
      assert.match(contextValue(row), /^snapshot:running:.*:memory:$/);
      assert.equal(iconId(api, row), 'play-circle');
      assert.match(String(api.tree.getTreeItem(row).description), /running state/);
      // Its size counts the saved memory, shown apart in the tooltip.
      assert.ok(row.snapshot.memoryBytes > 0 && row.snapshot.sizeBytes > row.snapshot.memoryBytes, `sizes ${row.snapshot.sizeBytes} / ${row.snapshot.memoryBytes}`);
      assert.ok(String(api.tree.getTreeItem(row).description).includes(formatBytes(row.snapshot.sizeBytes)));
      // The tooltip is made on hover (it reads the snapshot's thumbnail then).
      const hovered = await api.tree.resolveTreeItem(api.tree.getTreeItem(row), row);
      assert.match((hovered.tooltip as vscode.MarkdownString).value, /Size on disk: [\d.]+ \w+ \(disk [\d.]+ \w+ \+ memory [\d.]+ \w+\)/);
      assert.ok(offered(menus, contextValue(row), true).includes('vmsnap.revert'), 'revert is offered on a running machine');

      // The dialog says what happens: the running state ends, and the snapshot comes back running.
      const { result: cancelled, asked } = await answering(api, [undefined], () => vscode.commands.executeCommand('vmsnap.revert', { machine: machine.id, snapshot: snap.id }));
      assert.equal(cancelled, undefined);
      assert.match(asked[0]!, /is running: reverting ends it/);
      assert.match(asked[0]!, /comes back running where it was/);

      const later = last(await waitForCounts(log, countsSince(log).length + 20));
      const from = logSize(log);
      const r = await vscode.commands.executeCommand<RevertResult>('vmsnap.revert', { machine: machine.id, snapshot: snap.id }, { mode: 'discard' });
      assert.equal(lastError(), undefined, lastError()?.message);
      assert.equal(r.poweredOn, true, String(r.stateLoadError));
      assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'running');
      const counts = await countsAfterRestart(log, from, later, 3);
      assert.ok(counts[0]! >= before + 1 && counts[0]! <= after + 2, `the count goes on from the snapshot (${before}..${after}), got ${counts[0]}`);
      assert.ok(counts[0]! < later - 10, `not from the later value ${later}`);
      await rowShows('running');

      await vscode.commands.executeCommand('vmsnap.pauseMachine', machine.id);
      await until(() => api.statusText.startsWith('$(debug-pause) guest · paused · live · '), `the status bar to show paused (${api.statusText})`);
      await vscode.commands.executeCommand('vmsnap.forceStopMachine', machine.id);
      await until(() => api.statusText.startsWith('$(vm) guest · live · '), `the status bar to show off (${api.statusText})`);
      assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'off');

      // Delete works while the machine runs: QEMU merges the snapshot's layer and the guest counts on.
      const again = await vscode.commands.executeCommand<MachineStatus>('vmsnap.startMachine', machine.id);
      await waitForCounts(again.serialLog, 3, logSize(again.serialLog));
      await rowShows('running');
      const runningRow = (await api.tree.snapshotNode(machine.id, snap.id))!;
      assert.ok(offered(menus, contextValue(runningRow), false).includes('vmsnap.deleteSnapshot'), 'Delete is offered on a running machine');
      const fromDelete = logSize(log);
      const beforeDelete = last(countsSince(log));
      const deleted = await vscode.commands.executeCommand<DeleteSnapshotResult>('vmsnap.deleteSnapshot', { machine: machine.id, snapshot: snap.id }, { confirmed: true });
      assert.equal(lastError(), undefined, lastError()?.message);
      assert.deepEqual(deleted.deleted.map((d) => d.name), ['live']);
      const goingOn = await waitForCounts(log, 5, fromDelete);
      assert.ok(goingOn[0]! >= beforeDelete && goingOn[0]! <= beforeDelete + 40, `the count goes on from ${beforeDelete}: ${goingOn.join(' ')}`);
      assert.equal((await library.lib.machineStatus(machine.id)).powerState, 'running');
      await vscode.commands.executeCommand('vmsnap.forceStopMachine', machine.id);
    } finally {
      await vscode.workspace.getConfiguration('vmsnap').update('devMachine', undefined, target);
    }
  });
});
