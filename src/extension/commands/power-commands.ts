// Power commands: power on and off, pause, resume, and the serial console of a running machine.
import * as vscode from 'vscode';
import type { MachineDetails, MachineStatus, PowerState } from '../../engine/machine';
import type { ConsoleTerminals } from '../console/console-terminal';
import type { CommandContext, Target } from './context';

export interface StopArgs {
  /** Quit QEMU at once instead of pressing the ACPI power button. */
  force?: boolean;
  /** How long the guest gets to shut down after the power button (the engine's default: 60 s). */
  powerdownTimeoutMs?: number;
}

/**
 * The machine a power command acts on, with its real power state: the tree may be older than QEMU (the guest shut
 * itself down, another window or the CLI acted), so every command asks QEMU again and refuses what does not apply.
 */
async function poweredTarget(
  ctx: CommandContext,
  target: Target,
  placeHolder: string,
  allowed: PowerState[],
  refusal: (m: MachineDetails, state: PowerState) => string,
): Promise<{ machine: MachineDetails; status: MachineStatus } | undefined> {
  const machine = await ctx.machine(target, placeHolder);
  if (!machine) return undefined;
  const lib = await ctx.library();
  const status = await lib.machineStatus(machine.id);
  if (!allowed.includes(status.powerState)) {
    ctx.service.notifyChanged(); // the row showed a stale state: show the real one
    throw new Error(refusal(machine, status.powerState));
  }
  return { machine, status };
}

/** A notification while QEMU starts or stops (seconds at most, or the shutdown time-out): nothing to cancel. */
function notify<T>(title: string, run: () => Promise<T>): Promise<T> {
  return Promise.resolve(vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: false }, run));
}

/** Power On: QEMU starts detached (it outlives this window); the notification offers the console. */
export async function startMachine(ctx: CommandContext, target: Target) {
  const t = await poweredTarget(ctx, target, vscode.l10n.t('Which machine to power on?'), ['off'], (m, state) =>
    state === 'paused' ? vscode.l10n.t('“{0}” is paused: resume it instead.', m.name) : vscode.l10n.t('“{0}” is already running.', m.name),
  );
  if (!t) return undefined;
  const { machine } = t;
  const lib = await ctx.library();
  // Read before QEMU holds the disks: a blank disk and no CD would only show a blank console.
  const bootProblem = await lib.bootProblem(machine.id).catch(() => null);
  const status = await notify(vscode.l10n.t('Powering on “{0}”…', machine.name), () => lib.startMachine(machine.id));
  await ctx.revealMachine(machine.id);
  if (bootProblem !== null) {
    ctx.log.warn(`startMachine “${machine.name}”: ${bootProblem}`);
    const importImage = { title: vscode.l10n.t('Import Disk Image…'), run: () => vscode.commands.executeCommand('vmsnap.importImage') };
    const stop = { title: vscode.l10n.t('Power Off'), run: () => vscode.commands.executeCommand('vmsnap.forceStopMachine', machine.id) };
    ctx.warn(vscode.l10n.t('“{0}” is running, but has nothing to boot. No bootable disk: import an image or attach an ISO.', machine.name), [importImage, stop]);
    return status;
  }
  const openIt = vscode.l10n.t('Open Console');
  void vscode.window.showInformationMessage(vscode.l10n.t('“{0}” is running (QEMU process {1}).', machine.name, status.pid ?? '?'), openIt).then((chosen) => {
    if (chosen === openIt) return vscode.commands.executeCommand('vmsnap.openConsole', machine.id);
    return undefined;
  });
  return status;
}

/** How long Power Off waits for the guest after the power button before it offers Force Off. */
const SHUTDOWN_WAIT_MS = 30_000;

/**
 * Power Off: the ACPI power button, with a notification that counts the seconds and can stop waiting; a guest that
 * has not shut down by the time-out is left running and the message offers Force Off. Force Power Off quits at once.
 */
export async function stopMachine(ctx: CommandContext, target: Target, args: StopArgs = {}) {
  const t = await poweredTarget(ctx, target, vscode.l10n.t('Which machine to power off?'), ['running', 'paused'], (m) =>
    vscode.l10n.t('“{0}” is already off.', m.name),
  );
  if (!t) return undefined;
  const { machine } = t;
  const lib = await ctx.library();
  const force = args.force === true;
  const waitMs = args.powerdownTimeoutMs ?? SHUTDOWN_WAIT_MS;
  const result = force
    ? await notify(vscode.l10n.t('Powering off “{0}” (forced)…', machine.name), () => lib.stopMachine(machine.id, { force }))
    : await Promise.resolve(
        vscode.window.withProgress(
          { location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('Shutting down “{0}”', machine.name), cancellable: true },
          async (progress, token) => {
            const abort = new AbortController();
            const cancelled = token.onCancellationRequested(() => abort.abort());
            const started = Date.now();
            const report = (): void =>
              progress.report({
                message: vscode.l10n.t('the guest got the power button; waiting for it to shut down ({0} of {1} s)', Math.round((Date.now() - started) / 1000), Math.round(waitMs / 1000)),
              });
            report();
            const ticking = setInterval(report, 1000);
            try {
              return await lib.stopMachine(machine.id, { powerdownTimeoutMs: waitMs, quitAfterTimeout: false, signal: abort.signal });
            } finally {
              clearInterval(ticking);
              cancelled.dispose();
            }
          },
        ),
      );
  if (result.method === 'still-running') {
    ctx.service.notifyChanged();
    const forceOff = { title: vscode.l10n.t('Force Off'), run: () => vscode.commands.executeCommand('vmsnap.forceStopMachine', machine.id) };
    const seconds = Math.round(result.ms / 1000);
    if (result.ms < waitMs) {
      ctx.inform(vscode.l10n.t('Stopped waiting: “{0}” got the power button and may still shut down; it is running.', machine.name), [forceOff]);
    } else {
      ctx.log.warn(`stopMachine “${machine.name}”: the guest ignored the power button for ${seconds} s`);
      ctx.fail(
        new Error(vscode.l10n.t('“{0}” did not shut down within {1} s of the power button: its guest may ignore ACPI, or be busy. It is still running.', machine.name, seconds)),
        [forceOff],
      );
    }
    return result;
  }
  const how =
    result.method === 'acpi'
      ? vscode.l10n.t('the guest shut down')
      : result.method === 'agent'
        ? vscode.l10n.t('the guest ignored the power button; its guest agent shut it down')
      : result.method === 'quit'
        ? vscode.l10n.t('QEMU quit')
        : result.method === 'kill'
          ? vscode.l10n.t('QEMU was killed')
          : vscode.l10n.t('it was already off');
  vscode.window.setStatusBarMessage(vscode.l10n.t('“{0}” is off ({1}, {2} ms)', machine.name, how, Math.round(result.ms)), 6000);
  await ctx.revealMachine(machine.id);
  return result;
}

export async function pauseMachine(ctx: CommandContext, target: Target) {
  const t = await poweredTarget(ctx, target, vscode.l10n.t('Which machine to pause?'), ['running'], (m, state) =>
    state === 'paused' ? vscode.l10n.t('“{0}” is already paused.', m.name) : vscode.l10n.t('“{0}” is off: power it on first.', m.name),
  );
  if (!t) return undefined;
  const status = await (await ctx.library()).pauseMachine(t.machine.id);
  vscode.window.setStatusBarMessage(vscode.l10n.t('“{0}” is paused', t.machine.name), 4000);
  await ctx.revealMachine(t.machine.id);
  return status;
}

export async function resumeMachine(ctx: CommandContext, target: Target) {
  const t = await poweredTarget(ctx, target, vscode.l10n.t('Which machine to resume?'), ['paused'], (m, state) =>
    state === 'running' ? vscode.l10n.t('“{0}” is running, not paused.', m.name) : vscode.l10n.t('“{0}” is off: power it on instead.', m.name),
  );
  if (!t) return undefined;
  const status = await (await ctx.library()).resumeMachine(t.machine.id);
  vscode.window.setStatusBarMessage(vscode.l10n.t('“{0}” is running again', t.machine.name), 4000);
  await ctx.revealMachine(t.machine.id);
  return status;
}

/** Open Console: a terminal on the machine's serial port (a second Open Console shows the same terminal). */
export async function openConsole(ctx: CommandContext, consoles: ConsoleTerminals, target: Target) {
  const t = await poweredTarget(ctx, target, vscode.l10n.t('Which machine’s console?'), ['running', 'paused'], (m) =>
    vscode.l10n.t('“{0}” is off: power it on, then open its console.', m.name),
  );
  if (!t) return undefined;
  const lib = await ctx.library();
  const { terminal } = await consoles.show(t.machine.id, t.machine.name, () => lib.openConsole(t.machine.id), t.status.serialLog);
  return terminal.name;
}
