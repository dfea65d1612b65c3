// Getting into a machine over SSH: Connect with Remote-SSH (a new window in the guest), Open SSH Terminal (the
// system ssh in a terminal), Show Serial Log. Both ways in start the machine when it is off and wait for its SSH
// server first.
import * as vscode from 'vscode';
import { join } from 'node:path';
import { isMachineError, type MachineDetails, type MachineStatus } from '../../engine/machine';
import { sshArgs, sshHostName, type SshTarget } from '../../engine/ssh';
import { remoteHomePath, remoteSshAuthority, REMOTE_SSH_SCHEME } from '../ssh/remote-authority';
import { REMOTE_SSH_EXTENSIONS, REMOTE_SSH_NAME, type RemoteSshHolder } from '../ssh/remote-ssh';
import { REMOTE_SSH_CONFIG, sshResolves, userSshConfig, writeLibrarySshConfig, writeRemoteSshConfig } from '../ssh/ssh-config-file';
import type { CommandContext, Target } from './context';

/** How long a first boot with cloud-init may take before the wait gives up (the CLI's default too). */
const DEFAULT_WAIT_SECONDS = 300;

export interface SshCommandArgs {
  /** How long to wait for the guest's SSH server, in seconds (default 300). */
  waitSeconds?: number;
  /** false: do not wait for the SSH server (the caller knows it answers; a terminal's ssh says why it cannot). */
  wait?: boolean;
}

/** A machine ready for SSH: running, its server answering, and where ssh reaches it. */
interface Reachable {
  machine: MachineDetails;
  status: MachineStatus;
  target: SshTarget;
}

/**
 * Connect with Remote-SSH: a new window on the guest user's home folder, when Remote-SSH (or a compatible
 * extension) is installed; otherwise the offer of an SSH terminal, naming the extension that would open a window.
 * Returns the URI of the window opened (or the terminal's name), undefined when cancelled.
 */
export async function connectRemoteSsh(ctx: CommandContext, remote: RemoteSshHolder, target: Target, args: SshCommandArgs = {}): Promise<string | undefined> {
  const chosenMachine = await ctx.machine(target, vscode.l10n.t('Which machine to connect to?'));
  if (!chosenMachine) return undefined;
  if (remote.current.installed() === undefined) {
    // Asked before waiting: whoever would rather install the extension need not wait for the guest first.
    const terminal = vscode.l10n.t('Open SSH Terminal');
    const install = vscode.l10n.t('Install {0}', REMOTE_SSH_NAME);
    const chosen = await ctx.ask.confirm(
      vscode.l10n.t('Opening a window in “{0}” needs the “{1}” extension', chosenMachine.name, REMOTE_SSH_NAME),
      vscode.l10n.t('“{0}” ({1}) is not installed. Open a terminal with ssh into “{2}” instead, or install it and connect again.', REMOTE_SSH_NAME, REMOTE_SSH_EXTENSIONS[0], chosenMachine.name),
      [terminal, install],
    );
    if (chosen === terminal) return openSshTerminal(ctx, chosenMachine.id, args);
    if (chosen === install) await vscode.commands.executeCommand('workbench.extensions.search', `@id:${REMOTE_SSH_EXTENSIONS[0]}`);
    return undefined;
  }
  const reachable = await reachableMachine(ctx, chosenMachine.id, '', args);
  if (!reachable) return undefined;
  const { machine, target: ssh } = reachable;
  const lib = await ctx.library();
  await writeLibrarySshConfig(lib);
  const alias = sshHostName(machine.name);
  await refuseSharedAlias(ctx, machine, alias);
  // Remote-SSH runs the system ssh with the config file it is set to (else ~/.ssh/config): that must reach our alias.
  const configured = remote.current.configFile();
  const ours = join(lib.dir, REMOTE_SSH_CONFIG);
  if (configured !== ours && !(await sshResolves(configured, alias, ssh.port))) {
    const letIt = vscode.l10n.t('Let Remote-SSH Read It');
    const terminal = vscode.l10n.t('Open SSH Terminal Instead');
    const theirs = configured ?? userSshConfig();
    const chosen = await ctx.ask.confirm(
      vscode.l10n.t('Let Remote-SSH find “{0}”?', alias),
      vscode.l10n.t(
        'Remote-SSH reads {0}, which does not know the host {1}. vmsnap keeps its machines in {2}; it can set remote.SSH.configFile to {3}, which reads those and then {0}, so your own hosts stay as they are. (Or add “Include {2}” at the top of {0} yourself.)',
        theirs,
        alias,
        join(lib.dir, 'ssh_config'),
        ours,
      ),
      [letIt, terminal],
    );
    if (chosen === terminal) return openTerminal(machine, ssh).name;
    if (chosen !== letIt) return undefined;
    await writeRemoteSshConfig(lib.dir, theirs);
    await remote.current.setConfigFile(ours);
  }
  await remote.current.rememberLinux(alias);
  const uri = vscode.Uri.from({ scheme: REMOTE_SSH_SCHEME, authority: remoteSshAuthority(machine.name), path: remoteHomePath(ssh.user) });
  await remote.current.openWindow(uri);
  return uri.toString();
}

/** Open SSH Terminal: the system ssh, logged in as the guest user with the machine's key and known_hosts. */
export async function openSshTerminal(ctx: CommandContext, target: Target, args: SshCommandArgs = {}): Promise<string | undefined> {
  const reachable = await reachableMachine(ctx, target, vscode.l10n.t('Which machine to open an SSH terminal in?'), args);
  if (!reachable) return undefined;
  return openTerminal(reachable.machine, reachable.target).name;
}

/** Show Serial Log: what the guest printed on its serial port (boot, cloud-init), in an editor. */
export async function showSerialLog(ctx: CommandContext, target: Target): Promise<string | undefined> {
  const machine = await ctx.machine(target, vscode.l10n.t('Whose serial log?'));
  if (!machine) return undefined;
  const status = await (await ctx.library()).machineStatus(machine.id);
  await openSerialLog(machine, status.serialLog);
  return status.serialLog;
}

async function openSerialLog(machine: MachineDetails, path: string): Promise<void> {
  try {
    await vscode.window.showTextDocument(vscode.Uri.file(path), { preview: true });
  } catch {
    throw new Error(vscode.l10n.t('“{0}” has no serial log yet ({1}): it is written while the machine runs.', machine.name, path));
  }
}

/**
 * The machine, powered on (or resumed) when needed, once its SSH server answers. A time-out is shown here with
 * "Show Serial Log" (the guest's boot messages say how far it got); a cancelled wait leaves the machine running.
 */
async function reachableMachine(ctx: CommandContext, target: Target, placeHolder: string, args: SshCommandArgs): Promise<Reachable | undefined> {
  const machine = await ctx.machine(target, placeHolder);
  if (!machine) return undefined;
  if (machine.guest === null) {
    throw new Error(
      vscode.l10n.t('“{0}” was not launched from a cloud image, so vmsnap knows no user and key to log in with: create a machine with “New Machine from Image…”, or use its console.', machine.name),
    );
  }
  const lib = await ctx.library();
  let status = await lib.machineStatus(machine.id);
  if (status.powerState !== 'running') {
    const start = status.powerState === 'off';
    status = await notify(start ? vscode.l10n.t('Powering on “{0}”…', machine.name) : vscode.l10n.t('Resuming “{0}”…', machine.name), () =>
      start ? lib.startMachine(machine.id) : lib.resumeMachine(machine.id),
    );
    ctx.service.notifyChanged();
  }
  if (status.failure !== null) throw new Error(status.failure);
  if (args.wait === false) return { machine, status, target: await lib.sshTarget(machine.id) };
  const timeoutMs = (args.waitSeconds ?? DEFAULT_WAIT_SECONDS) * 1000;
  try {
    const ssh = await Promise.resolve(
      vscode.window.withProgress(
        { location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('Waiting for {0} to accept SSH…', machine.name), cancellable: true },
        async (progress, token) => {
          const abort = new AbortController();
          const cancelled = token.onCancellationRequested(() => abort.abort());
          try {
            return await lib.sshTarget(machine.id, {
              wait: { timeoutMs, signal: abort.signal, onWaiting: () => progress.report({ message: vscode.l10n.t('(serial log: {0})', status.serialLog) }) },
            });
          } finally {
            cancelled.dispose();
          }
        },
      ),
    );
    return { machine, status, target: ssh };
  } catch (e) {
    if (isMachineError(e) && e.code === 'SSH_TIMEOUT') {
      return ctx.fail(e, [
        { title: vscode.l10n.t('Show Serial Log'), run: () => openSerialLog(machine, status.serialLog) },
        { title: vscode.l10n.t('Open Console'), run: () => vscode.commands.executeCommand('vmsnap.openConsole', machine.id) },
      ]);
    }
    if (isMachineError(e) && e.code === 'ABORTED') {
      vscode.window.setStatusBarMessage(vscode.l10n.t('Stopped waiting for SSH; “{0}” keeps running.', machine.name), 6000);
      return undefined;
    }
    throw e;
  }
}

/** Two running machines whose names reduce to one alias (`dev vm`, `dev-vm`): ssh would reach the first. */
async function refuseSharedAlias(ctx: CommandContext, machine: MachineDetails, alias: string): Promise<void> {
  const others = (await (await ctx.library()).list()).filter((m) => m.id !== machine.id && m.powerState !== 'off' && sameAlias(m.name, alias));
  if (others.length > 0) {
    throw new Error(vscode.l10n.t('“{0}” and “{1}” both reach SSH as {2}: rename one of them, then connect.', machine.name, others[0]!.name, alias));
  }
}

function sameAlias(name: string, alias: string): boolean {
  try {
    return sshHostName(name) === alias;
  } catch {
    return false;
  }
}

function openTerminal(machine: MachineDetails, target: SshTarget): vscode.Terminal {
  const terminal = vscode.window.createTerminal({
    name: vscode.l10n.t('SSH: {0}', machine.name),
    shellPath: process.env['VMSNAP_SSH'] ?? 'ssh',
    shellArgs: sshArgs(target, { connectTimeoutSeconds: 10 }),
    iconPath: new vscode.ThemeIcon('remote'),
  });
  terminal.show();
  return terminal;
}

function notify<T>(title: string, run: () => Promise<T>): Promise<T> {
  return Promise.resolve(vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: false }, run));
}
