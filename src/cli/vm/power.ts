// `vmsnap vm start|stop|pause|resume|status|console`: running machines with QEMU.
import { attachConsole, serialLogTail } from '../../engine/runtime';
import type { GuestInfo, MachineStatus } from '../../engine/machine';
import type { Command, Invocation } from '../args';
import { emit, type CliContext } from '../output';
import { intOption, openLibrary, VM_ARG } from './shared';

const STOP_WORDS: Record<string, string> = {
  acpi: 'ACPI shutdown',
  agent: 'the guest ignored the ACPI power button; its guest agent shut it down',
  quit: 'QEMU quit',
  kill: 'QEMU killed',
};

export const vmStartCommand: Command<CliContext> = {
  name: 'start',
  summary: 'power a machine on with QEMU (it keeps running after vmsnap exits)',
  args: [VM_ARG],
  flags: [],
  examples: ['vmsnap vm start dev'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const s = await lib.startMachine(vm);
    const moved = s.forwards.filter((f) => f.wanted !== undefined).map((f) => ` Port ${f.wanted} was taken: guest port ${f.guestPort} is on ${f.hostPort} instead.`).join('');
    const ssh = s.ssh === null ? '' : ` SSH on 127.0.0.1 port ${s.ssh.port}.`;
    emit(ctx, s, () => [`Started "${vm}" (QEMU pid ${s.pid ?? '-'}); serial output goes to ${s.serialLog}.${ssh}${moved}`, ...remarks(s)].join('\n'));
    return s.failure === null ? 0 : 1;
  },
};

/** What a start or resume must tell besides "started": how it runs, or why the guest stopped. */
function remarks(s: MachineStatus): string[] {
  return [...(s.notice === null ? [] : [`Notice: ${s.notice}`]), ...(s.failure === null ? [] : [`Problem: ${s.failure}`])];
}

export const vmStopCommand: Command<CliContext> = {
  name: 'stop',
  summary: 'power a machine off: ACPI shutdown, then a hard stop after 60 s (--force: at once)',
  args: [VM_ARG],
  flags: [
    { name: 'force', kind: 'boolean', description: 'pull the plug at once instead of asking the guest to shut down' },
    { name: 'timeout', kind: 'value', valueName: 'SECONDS', description: 'how long the guest gets to shut down before the hard stop (default 60)' },
  ],
  examples: ['vmsnap vm stop dev', 'vmsnap vm stop dev --timeout 300', 'vmsnap vm stop dev --force'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const timeoutMs = stopTimeoutMs(inv);
    const r = await lib.stopMachine(vm, { force: inv.flag('force'), ...(timeoutMs === undefined ? {} : { powerdownTimeoutMs: timeoutMs }) });
    emit(ctx, r, () => (r.method === 'already-off' ? `"${vm}" is already off.` : `Stopped "${vm}" (${STOP_WORDS[r.method] ?? r.method}).`));
    return 0;
  },
};

/** `vm stop --timeout SECONDS` in ms (the library's and a connection's stop alike), or undefined for the default. */
export function stopTimeoutMs(inv: Invocation): number | undefined {
  const seconds = intOption(inv, 'timeout', 1);
  return seconds === undefined ? undefined : seconds * 1000;
}

export const vmPauseCommand: Command<CliContext> = {
  name: 'pause',
  summary: 'pause a running machine (its CPUs stop; memory is kept)',
  args: [VM_ARG],
  flags: [],
  examples: ['vmsnap vm pause dev'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const s = await lib.pauseMachine(vm);
    emit(ctx, s, () => `Paused "${vm}".`);
    return 0;
  },
};

export const vmResumeCommand: Command<CliContext> = {
  name: 'resume',
  summary: 'resume a paused machine',
  args: [VM_ARG],
  flags: [],
  examples: ['vmsnap vm resume dev'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const s = await lib.resumeMachine(vm);
    emit(ctx, s, () => [`Resumed "${vm}".`, ...remarks(s)].join('\n'));
    return 0;
  },
};

export const vmStatusCommand: Command<CliContext> = {
  name: 'status',
  summary: 'whether a machine runs, is paused or is off, from its QEMU process',
  args: [VM_ARG],
  flags: [],
  examples: ['vmsnap vm status dev', 'vmsnap vm status dev --json'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const s = await lib.machineStatus(vm);
    // Asked only while it runs; a silent agent costs a short time-out at most.
    const guest = s.powerState === 'off' ? null : await lib.guestInfo(vm);
    emit(ctx, { ...s, guest }, () =>
      [
        `Power:       ${s.powerState}`,
        `QEMU pid:    ${s.pid ?? '-'}`,
        `Started:     ${s.startedAt ?? '-'}`,
        `Serial log:  ${s.serialLog}`,
        ...(s.consoleSocket === null ? [] : [`Console:     ${s.consoleSocket}`]),
        ...(s.ssh === null ? [] : [`SSH:         ${s.ssh.user === null ? '' : `${s.ssh.user}@`}${s.ssh.host} port ${s.ssh.port}`]),
        ...s.forwards.filter((f) => f.guestPort !== 22).map((f) => `Forward:     ${f.hostPort} -> guest port ${f.guestPort}`),
        ...(s.failure === null ? [] : [`Problem:     ${s.failure}`]),
        ...(s.notice === null ? [] : [`Notice:      ${s.notice}`]),
        ...describeGuest(guest),
      ].join('\n'),
    );
    return 0;
  },
};

/** The guest as its agent describes it, for `vm status` and `vm show`. */
export function describeGuest(g: GuestInfo | null): string[] {
  if (g === null) return [];
  if (g.agent !== 'answering') return [`Guest agent: not answering (${g.reason ?? 'no reason given'})`];
  const addresses = g.addresses.map((a) => `${a.address}/${a.prefix} (${a.interface})`);
  return [
    `Guest:       ${g.hostname ?? '-'}${g.os === null ? '' : `, ${g.os}`}${g.kernel === null ? '' : ` (kernel ${g.kernel})`}`,
    `Addresses:   ${addresses.length === 0 ? '-' : addresses.join(', ')}`,
  ];
}

export const vmConsoleCommand: Command<CliContext> = {
  name: 'console',
  summary: 'connect the terminal to a running machine\'s serial console (Ctrl-] leaves)',
  args: [VM_ARG],
  flags: [],
  examples: ['vmsnap vm console dev'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const { serialLog } = await lib.machineStatus(vm);
    const sock = await lib.openConsole(vm);
    ctx.out.io.stderr.write(`Connected to the serial console of "${vm}". Press Ctrl-] to leave.\n`);
    // What the guest printed before we connected (a login prompt, say), then the live output.
    const earlier = await serialLogTail(serialLog);
    if (earlier.trim() !== '') {
      ctx.out.io.stderr.write('── Earlier output (serial.log) ──\n');
      process.stdout.write(earlier.endsWith('\n') ? earlier : `${earlier}\n`);
      ctx.out.io.stderr.write('── Live ──\n');
    }
    const stdin = process.stdin;
    const raw = stdin.isTTY === true;
    if (raw) stdin.setRawMode(true);
    try {
      const why = await attachConsole(sock, { input: stdin, output: process.stdout });
      if (why === 'closed') ctx.out.io.stderr.write(`\nThe machine "${vm}" stopped.\n`);
    } finally {
      if (raw) stdin.setRawMode(false);
      stdin.pause();
    }
    return 0;
  },
};
