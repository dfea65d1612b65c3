// Dev machines from VS Code: New Machine from Image (a file, a URL served here), Connect with Remote-SSH and Open
// SSH Terminal (the settings checked with the real ssh), the SSH time-out, the tree's SSH port, and the dev
// machine of a Remote-SSH window. The guest is the counting boot sector as a raw "cloud image" (it has an MBR): it
// boots on TCG but never answers SSH. Remote-SSH cannot be installed offline: a stand-in that says it is installed
// records the window it would open. A real remote window cannot be opened here: its authority is fed in.
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { CreateFromImageResult, MachineDetails, MachineStatus, SnapshotInfo } from '../../src/engine/machine';
import { machineStatus as runtimeStatus, stopMachine as runtimeStop } from '../../src/engine/runtime';
import { hexAuthority } from '../../src/extension/ssh/remote-authority';
import type { RemoteSsh } from '../../src/extension/ssh/remote-ssh';
import type { ShownError, TestHandle } from '../../src/extension/test-handle';
import { contextValue } from '../../src/extension/tree/nodes';
import { writeCountingGuest } from '../support/counting-guest';
import { ACCEL, requireQemu } from '../support/guest-machines';
import { answering, extensionApi, type FreshLibrary, until, useFreshLibrary } from './running-extension';

/** What `ssh -G` would use (lowercase option names, first value). */
function sshG(args: string[]): Promise<Map<string, string>> {
  return new Promise((resolve, reject) =>
    execFile('ssh', ['-G', ...args], (error, stdout, stderr) => {
      if (error) return reject(new Error(`ssh -G ${args.join(' ')}: ${stderr}`));
      const options = new Map<string, string>();
      for (const line of stdout.split('\n')) {
        const i = line.indexOf(' ');
        if (i > 0 && !options.has(line.slice(0, i))) options.set(line.slice(0, i), line.slice(i + 1));
      }
      resolve(options);
    }),
  );
}

/** Remote-SSH as if installed: records what it is told and the window it would open. */
class RecordingRemoteSsh implements RemoteSsh {
  configured: string | undefined;
  readonly linux: string[] = [];
  readonly opened: vscode.Uri[] = [];
  installed = (): string => 'ms-vscode-remote.remote-ssh';
  configFile = (): string | undefined => this.configured;
  setConfigFile = (path: string): Promise<void> => {
    this.configured = path;
    return Promise.resolve();
  };
  rememberLinux = (alias: string): Promise<void> => {
    this.linux.push(alias);
    return Promise.resolve();
  };
  openWindow = (uri: vscode.Uri): Promise<void> => {
    this.opened.push(uri);
    return Promise.resolve();
  };
}

describe('Dev machines: from a cloud image, over SSH, from a remote window (QEMU on TCG)', function () {
  this.timeout(180_000);
  let api: TestHandle;
  let library: FreshLibrary;
  let scratch: string;
  let home: string;
  let image: string;
  let server: Server;
  let baseUrl: string;
  let machine: MachineDetails;
  const savedHome = process.env['HOME'];
  const lastError = (): ShownError | undefined => api.lastError;

  before(async () => {
    requireQemu();
    process.env['VMSNAP_QEMU_ACCEL'] = ACCEL;
    api = await extensionApi();
    await vscode.commands.executeCommand('workbench.view.extension.vmsnap');
    library = await useFreshLibrary(api);
    scratch = mkdtempSync(join(tmpdir(), 'vmsnap-dev-'));
    // A home without SSH keys: the library makes its own key pair. Its ~/.ssh/config has one host of the user's.
    home = join(scratch, 'home');
    mkdirSync(join(home, '.ssh'), { recursive: true });
    writeFileSync(join(home, '.ssh', 'config'), 'Host mine\n  HostName 10.9.8.7\n');
    process.env['HOME'] = home;
    image = join(scratch, 'guest.raw');
    writeCountingGuest(image);
    server = createServer((req, res) => {
      if (req.url === '/guest.raw') {
        const body = readFileSync(image);
        res.writeHead(200, { 'content-length': body.length });
        res.end(body);
      } else {
        res.writeHead(404);
        res.end('not here');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await vscode.workspace.getConfiguration('vmsnap').update('devMachine', undefined, vscode.ConfigurationTarget.Global);
    await vscode.workspace.getConfiguration('vmsnap').update('devMachine', undefined, vscode.ConfigurationTarget.Workspace);
  });

  beforeEach(() => {
    api.lastError = undefined;
    api.lastInfo = undefined;
  });

  after(async () => {
    await api.simulateRemoteAuthority(undefined);
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
    for (const t of vscode.window.terminals) if (t.name.startsWith('SSH: ')) t.dispose();
    await new Promise<void>((r) => server.close(() => r()));
    process.env['HOME'] = savedHome;
    await library.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  it('New Machine from Image from a file: asks source, name, size and key; the image is the base layer; the key made for the library is named', async () => {
    const { result, asked } = await answering(api, ['Image File', image, 'dev-vm', '1', 'A new key pair'], () =>
      vscode.commands.executeCommand<CreateFromImageResult | undefined>('vmsnap.newMachineFromImage'),
    );
    assert.ok(result, `New Machine from Image failed: ${lastError()?.message}`);
    assert.match(asked[0]!, /Image File.*Download from a URL/);
    assert.match(asked[4]!, /A new key pair for this library/, 'no key in ~/.ssh: the library makes one');
    machine = result.machine;
    assert.equal(machine.name, 'dev-vm');
    assert.ok(machine.guest, 'the machine has a guest user');
    assert.equal(machine.baseImage?.source, image);
    assert.equal(machine.disks[0]!.virtualSize, 1024 ** 3);
    assert.equal(result.key.generated, true);
    assert.equal(result.key.path, join(library.dir, '.ssh', 'id_ed25519.pub'));
    assert.match(api.lastInfo ?? '', new RegExp(`user “${machine.guest.user}” logs in over SSH with a key pair made just now for this library \\(${result.key.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`));
    await until(async () => (await api.tree.machineNode(machine.id)) !== undefined, 'the new machine\'s row');
    // The base image is in the row's tooltip once hovered.
    const row = (await api.tree.machineNode(machine.id))!;
    const item = await api.tree.resolveTreeItem(api.tree.getTreeItem(row), row);
    const tooltip = item?.tooltip instanceof vscode.MarkdownString ? item.tooltip.value : String(item?.tooltip);
    assert.match(tooltip, /Base image/);
    assert.match(tooltip, /guest\\\.raw/);
  });

  it('from a URL served here: the download comes into the cache; a 404 is one sentence and leaves no machine', async () => {
    const url = `${baseUrl}/guest.raw`;
    const made = await vscode.commands.executeCommand<CreateFromImageResult | undefined>('vmsnap.newMachineFromImage', { source: url, name: 'from-url', diskSize: 64 * 1024 ** 2, cpus: 1, memoryMiB: 64 });
    assert.ok(made, `from a URL: ${lastError()?.message}`);
    assert.equal(made.machine.baseImage?.source, url);
    assert.equal(made.key.generated, false, 'the library\'s key exists now');
    assert.match(api.lastInfo ?? '', /logs in over SSH with the key/);
    const before = (await library.lib.list()).length;
    const missing = await vscode.commands.executeCommand('vmsnap.newMachineFromImage', { source: `${baseUrl}/nothing.qcow2`, name: 'not-there' });
    assert.equal(missing, undefined);
    assert.equal(lastError()?.code, 'FETCH_FAILED');
    assert.match(lastError()!.message, /404/);
    assert.equal((await library.lib.list()).length, before, 'no machine was left behind');
    await library.lib.deleteMachine(made.machine.id);
  });

  it('Connect with Remote-SSH on a guest that never answers SSH: powers it on, waits, times out naming the serial log, offers Show Serial Log', async () => {
    const remote = new RecordingRemoteSsh();
    const using = api.useRemoteSsh(remote);
    try {
      const started = Date.now();
      const r = await vscode.commands.executeCommand('vmsnap.connectRemoteSsh', machine.id, { waitSeconds: 4 });
      assert.equal(r, undefined);
      assert.equal(lastError()?.code, 'SSH_TIMEOUT', lastError()?.message);
      const status = await library.lib.machineStatus(machine.id);
      assert.equal(status.powerState, 'running', 'Connect powered the machine on');
      assert.ok(lastError()!.message.includes(status.serialLog), lastError()!.message);
      assert.deepEqual(lastError()!.actions, ['Show Serial Log', 'Open Console']);
      assert.ok(Date.now() - started < 60_000);
      assert.equal(remote.opened.length, 0, 'no window was opened');
    } finally {
      using.dispose();
    }
    const log = await vscode.commands.executeCommand<string>('vmsnap.showSerialLog', machine.id);
    assert.equal(vscode.window.activeTextEditor?.document.uri.fsPath, log);
  });

  it('a running machine\'s row shows its SSH port, and offers Connect with Remote-SSH inline', async () => {
    const status: MachineStatus = await library.lib.machineStatus(machine.id);
    assert.ok(status.ssh, 'every running machine has an SSH forward');
    api.tree.refresh();
    await until(async () => contextValue((await api.tree.machineNode(machine.id))!).includes(':ssh:'), 'the row to know SSH');
    const row = (await api.tree.machineNode(machine.id))!;
    const item = api.tree.getTreeItem(row);
    assert.match(String(item.description), new RegExp(`^running · ssh :${status.ssh.port} · `));
    const resolved = await api.tree.resolveTreeItem(item, row);
    const tooltip = (resolved?.tooltip as vscode.MarkdownString).value;
    assert.ok(tooltip.includes(`127.0.0.1:${status.ssh.port}`), tooltip);
    // The inline button's `when` matches this row (and not a running machine without a guest user).
    const menus = (vscode.extensions.getExtension('vmsnap.vmsnap')!.packageJSON as { contributes: { menus: Record<string, { command: string; when?: string; group?: string }[]> } })
      .contributes.menus['view/item/context']!;
    const inline = menus.find((i) => i.command === 'vmsnap.connectRemoteSsh' && (i.group ?? '').startsWith('inline'));
    const holds = (viewItem: string): boolean => [...(inline?.when ?? '').matchAll(/viewItem =~ \/(.*?)\/(?= |$)/g)].every((m) => new RegExp(m[1]!).test(viewItem));
    assert.ok(holds(contextValue(row)), `${inline?.when} holds for ${contextValue(row)}`);
    assert.ok(!holds('machine:running:plain:'), 'no inline Connect on a running machine that has no guest user');
  });

  it('Connect with Remote-SSH: the library\'s ssh_config gets the block, Remote-SSH is pointed at it with consent, and the window opens on ssh-remote+vmsnap-dev-vm/home/USER', async () => {
    const remote = new RecordingRemoteSsh();
    const using = api.useRemoteSsh(remote);
    try {
      const { result, asked } = await answering(api, ['Let Remote-SSH Read It'], () => vscode.commands.executeCommand<string>('vmsnap.connectRemoteSsh', machine.id, { wait: false }));
      assert.ok(result, lastError()?.message);
      assert.match(asked[0]!, /Let Remote-SSH find “vmsnap-dev-vm”\?/);
      const user = machine.guest!.user;
      assert.equal(remote.opened.length, 1);
      const uri = remote.opened[0]!;
      assert.equal(uri.scheme, 'vscode-remote');
      assert.equal(uri.authority, 'ssh-remote+vmsnap-dev-vm');
      assert.equal(uri.path, `/home/${user}`);
      assert.equal(remote.configured, join(library.dir, 'remote-ssh_config'));
      assert.deepEqual(remote.linux, ['vmsnap-dev-vm']);

      // What ssh (and so Remote-SSH) reads: our block through the config Remote-SSH now reads, and the user's hosts.
      const status = await library.lib.machineStatus(machine.id);
      const known = join(machine.folder, 'known_hosts');
      for (const file of [join(library.dir, 'ssh_config'), remote.configured!]) {
        const o = await sshG(['-F', file, 'vmsnap-dev-vm']);
        assert.equal(o.get('hostname'), '127.0.0.1', file);
        assert.equal(o.get('port'), String(status.ssh!.port));
        assert.equal(o.get('user'), user);
        assert.equal(o.get('identityfile'), join(library.dir, '.ssh', 'id_ed25519'));
        assert.equal(o.get('stricthostkeychecking'), 'true');
        assert.equal(o.get('userknownhostsfile'), known);
        assert.equal(o.get('hostkeyalias'), `vmsnap-${machine.id}`);
      }
      assert.equal((await sshG(['-F', remote.configured!, 'mine'])).get('hostname'), '10.9.8.7', 'the user\'s own hosts still resolve');

      // Once Remote-SSH reads our hosts, nothing is asked again.
      const again = await answering(api, [], () => vscode.commands.executeCommand<string>('vmsnap.connectRemoteSsh', machine.id, { wait: false }));
      assert.equal(again.result, result);
      assert.equal(remote.opened.length, 2);
    } finally {
      using.dispose();
    }
  });

  it('without Remote-SSH: names the extension and opens an SSH terminal running the system ssh with the machine\'s settings', async () => {
    const { result, asked } = await answering(api, ['Open SSH Terminal'], () => vscode.commands.executeCommand<string>('vmsnap.connectRemoteSsh', machine.id, { wait: false }));
    assert.equal(result, 'SSH: dev-vm', lastError()?.message);
    assert.match(asked[0]!, /needs the “Remote - SSH” extension.*ms-vscode-remote\.remote-ssh/);
    const terminal = vscode.window.terminals.find((t) => t.name === 'SSH: dev-vm');
    assert.ok(terminal, 'the terminal is open');
    const options = terminal.creationOptions as vscode.TerminalOptions;
    assert.equal(options.shellPath, 'ssh');
    const args = [...(options.shellArgs as string[])];
    const status = await library.lib.machineStatus(machine.id);
    const o = await sshG(args);
    assert.equal(o.get('hostname'), '127.0.0.1');
    assert.equal(o.get('port'), String(status.ssh!.port));
    assert.equal(o.get('user'), machine.guest!.user);
    assert.equal(o.get('stricthostkeychecking'), 'true');
    terminal.dispose();
    // Open SSH Terminal on its own: the same terminal.
    const own = await vscode.commands.executeCommand<string>('vmsnap.openSshTerminal', machine.id, { wait: false });
    assert.equal(own, 'SSH: dev-vm');
    vscode.window.terminals.find((t) => t.name === 'SSH: dev-vm')?.dispose();
  });

  it('a machine not launched from a cloud image: Connect says why it cannot log in', async () => {
    const plain = await library.lib.createMachine('plain', { diskSize: 1024 ** 2 });
    const r = await vscode.commands.executeCommand('vmsnap.openSshTerminal', plain.id);
    assert.equal(r, undefined);
    assert.match(lastError()?.message ?? '', /“plain” was not launched from a cloud image/);
    await library.lib.deleteMachine(plain.id);
  });

  it('in a Remote-SSH window connected into the machine (authority fed in), it is the dev machine: status bar, tree, Checkpoint without a question', async () => {
    assert.equal(api.remoteWindowMachine, undefined, 'the test window is no Remote-SSH window');
    await api.simulateRemoteAuthority('ssh-remote+vmsnap-dev-vm');
    assert.equal(api.remoteWindowMachine, machine.id);
    await until(() => api.statusText.includes('dev-vm'), 'the status bar to show the remote window\'s machine');
    await until(async () => contextValue((await api.tree.machineNode(machine.id))!).includes(':dev:'), 'the row to mark the dev machine');
    const { result: snapshot } = await answering(api, [], () => vscode.commands.executeCommand<SnapshotInfo>('vmsnap.checkpoint'));
    assert.ok(snapshot, lastError()?.message);
    assert.equal(snapshot.hasMemory, true, 'a checkpoint of the running machine keeps its memory');
    assert.ok((await library.lib.show(machine.id)).snapshots.some((s) => s.id === snapshot.id));

    // Remote-SSH's hex JSON form names it by the port of its SSH forward.
    await api.simulateRemoteAuthority(undefined);
    assert.equal(api.remoteWindowMachine, undefined);
    const port = (await library.lib.machineStatus(machine.id)).ssh!.port;
    await api.simulateRemoteAuthority(hexAuthority({ hostName: '127.0.0.1', port, user: machine.guest!.user }));
    assert.equal(api.remoteWindowMachine, machine.id);
    await api.simulateRemoteAuthority('ssh-remote+some-server');
    assert.equal(api.remoteWindowMachine, undefined);
    await api.simulateRemoteAuthority(undefined);
    assert.ok(existsSync(join(library.dir, 'ssh_config')));
  });
});
