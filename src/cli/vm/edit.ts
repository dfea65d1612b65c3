// `vmsnap vm edit`: a machine's settings: name, note, CPUs, memory, the ISO in its CD drive, its port forwards,
// its display device and its automatic checkpoints.
import { formatInterval, type AutoCheckpointPolicy, type EditMachineOptions, type MachineDetails } from '../../engine/machine';
import { UsageError, type Command, type Invocation } from '../args';
import { emit, type CliContext } from '../output';
import { choiceOption, hardwareOptions, intOption, openLibrary, VM_ARG } from './shared';

export const vmEditCommand: Command<CliContext> = {
  name: 'edit',
  summary: 'change a machine\'s name, note, CPUs, memory, CD (--iso, --eject), port forwards or display; effective at the next start',
  description: [
    'Forwards listen on 127.0.0.1 only. --forward takes a comma-separated list of HOSTPORT:GUESTPORT (one forward per',
    'guest port: a new one replaces the old; 22 sets the SSH port); when HOSTPORT is taken at start, the next free',
    'port is used and `vm start` says so. --no-forward takes a comma-separated list of guest ports, or all.',
    'The ISO is used where it is (never copied or written); it boots when the disk has no operating system yet.',
    '--display: std (standard VGA, the default), virtio (virtio-vga) or none (no screen); a running machine keeps its',
    'display until it is stopped and started (a revert to a snapshot with memory gets the display it was taken with).',
    '',
    'Automatic checkpoints (off by default): --auto-every takes one every interval (30m, 2h, 1d, 90s) while a',
    'scheduler runs (VS Code with the extension, or `vmsnap auto run`), skipped when the machine did not change',
    'since its last snapshot (a running machine always counts as changed) or when the disk is too full. A running',
    'machine\'s checkpoint holds its memory. After each one, automatic checkpoints are pruned to: the newest',
    '--auto-keep (default 8), plus the newest of each of the --auto-daily most recent days that have one, plus the',
    'newest of each of the --auto-weekly most recent weeks (Monday to Sunday) that have one. Pruning deletes only',
    'automatic checkpoints, and only those whose deletion merges automatic layers alone: never one of yours, one a',
    'linked clone needs, one a snapshot of yours hangs on, or the one the current state descends from when it has',
    'changed since. Renaming or describing a checkpoint makes it yours. Fields left out keep their value.',
  ].join('\n'),
  args: [VM_ARG],
  flags: [
    { name: 'name', kind: 'value', valueName: 'NAME', description: 'a new display name' },
    { name: 'note', kind: 'value', valueName: 'TEXT', description: 'a new free-text note' },
    { name: 'cpus', kind: 'value', valueName: 'N', description: 'virtual CPUs' },
    { name: 'memory', kind: 'value', valueName: 'MIB', description: 'memory in MiB' },
    { name: 'iso', kind: 'value', valueName: 'FILE', description: 'put this ISO image in the CD drive' },
    { name: 'eject', kind: 'boolean', description: 'take the ISO image out of the CD drive' },
    { name: 'forward', kind: 'value', valueName: 'HOST:GUEST[,...]', description: 'forward 127.0.0.1:HOST to the guest\'s port GUEST' },
    { name: 'no-forward', kind: 'value', valueName: 'GUEST[,...]|all', description: 'stop forwarding to these guest ports' },
    { name: 'display', kind: 'value', valueName: 'std|virtio|none', description: 'the display device (its screen: Open Display, vm screenshot)' },
    { name: 'auto-every', kind: 'value', valueName: 'INTERVAL', description: 'automatic checkpoints every INTERVAL (30m, 2h, 1d, 90s)' },
    { name: 'auto-keep', kind: 'value', valueName: 'N', description: 'keep the newest N automatic checkpoints (default 8)' },
    { name: 'auto-daily', kind: 'value', valueName: 'D', description: 'also keep the newest of each of the D most recent days' },
    { name: 'auto-weekly', kind: 'value', valueName: 'W', description: 'also keep the newest of each of the W most recent weeks' },
    { name: 'auto-off', kind: 'boolean', description: 'turn automatic checkpoints off (the checkpoints stay)' },
  ],
  choices: [{ flags: ['iso', 'eject'], required: false }],
  examples: ['vmsnap vm edit dev --memory 4096', 'vmsnap vm edit dev --iso ~/Downloads/debian-12.iso', 'vmsnap vm edit dev --eject', 'vmsnap vm edit dev --forward 8080:80,5433:5432', 'vmsnap vm edit dev --no-forward all', 'vmsnap vm edit dev --display virtio', 'vmsnap vm edit dev --auto-every 30m --auto-keep 8 --auto-daily 3 --auto-weekly 2', 'vmsnap vm edit dev --auto-off'],
  async run(inv, ctx) {
    const changes: EditMachineOptions = hardwareOptions(inv);
    const name = inv.value('name');
    if (name !== undefined) changes.name = name;
    const iso = inv.value('iso');
    if (iso !== undefined) changes.iso = iso;
    if (inv.flag('eject')) changes.iso = null;
    const add = inv.value('forward');
    const remove = inv.value('no-forward');
    if (add !== undefined || remove !== undefined) {
      changes.forwards = {
        ...(remove === undefined ? {} : { remove: remove.trim() === 'all' ? ('all' as const) : portList(inv, remove) }),
        ...(add === undefined ? {} : { add: forwardList(inv, add) }),
      };
    }
    const auto = autoPolicyOptions(inv);
    if (auto !== undefined) changes.autoCheckpoints = auto;
    const display = choiceOption(inv, 'display', ['std', 'virtio', 'none']);
    if (display !== undefined) changes.display = display;
    if (Object.keys(changes).length === 0) throw new UsageError('Nothing to change: give at least one of the options.', inv.path);
    const lib = await openLibrary(inv, ctx);
    const ref = inv.required('VM');
    const m = await lib.editMachine(ref, changes);
    const later = changes.display === undefined ? 'The CD drive and forwards change at the next start.' : 'The CD drive, forwards and display change at the next start (stop and start the machine).';
    emit(ctx, m, () => [`Changed "${m.name}".`, ...describeDevices(m), ...(auto === undefined ? [] : [`Auto:        ${m.autoCheckpoints === null ? 'off' : describePolicy(m.autoCheckpoints)}`]), ...(m.powerState === 'off' ? [] : [later])].join('\n'));
    return 0;
  },
};

/** --auto-every/-keep/-daily/-weekly as a (partial) policy, --auto-off as null, neither as undefined. */
function autoPolicyOptions(inv: Invocation): Partial<AutoCheckpointPolicy> | null | undefined {
  const every = inv.value('auto-every');
  const everySeconds = every === undefined ? undefined : parseInterval(inv, every);
  const keep = intOption(inv, 'auto-keep', 1);
  const daily = intOption(inv, 'auto-daily', 0);
  const weekly = intOption(inv, 'auto-weekly', 0);
  const fields: Partial<AutoCheckpointPolicy> = {
    ...(everySeconds === undefined ? {} : { everySeconds }),
    ...(keep === undefined ? {} : { keep }),
    ...(daily === undefined ? {} : { daily }),
    ...(weekly === undefined ? {} : { weekly }),
  };
  if (inv.flag('auto-off')) {
    if (Object.keys(fields).length > 0) throw new UsageError('--auto-off turns automatic checkpoints off: give it without the other --auto options.', inv.path);
    return null;
  }
  return Object.keys(fields).length === 0 ? undefined : fields;
}

const INTERVAL_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** "30m", "2h", "1h30m", "90s", "1d" as seconds. */
function parseInterval(inv: Invocation, text: string): number {
  const t = text.trim().toLowerCase();
  if (!/^(\d+[smhd])+$/.test(t)) throw new UsageError(`--auto-every "${text}" is not an interval: use a number with s, m, h or d (30m, 2h, 1h30m, 90s).`, inv.path);
  let seconds = 0;
  for (const [, n, unit] of t.matchAll(/(\d+)([smhd])/g)) seconds += Number(n) * INTERVAL_UNITS[unit!]!;
  if (seconds < 1) throw new UsageError(`--auto-every "${text}" must be at least 1s.`, inv.path);
  return seconds;
}

/** "every 30m, keep the newest 8, + 3 daily, + 2 weekly". */
export function describePolicy(p: AutoCheckpointPolicy): string {
  return `every ${formatInterval(p.everySeconds)}, keep the newest ${p.keep}${p.daily > 0 ? `, + ${p.daily} daily` : ''}${p.weekly > 0 ? `, + ${p.weekly} weekly` : ''}`;
}

const DISPLAY_WORDS: Record<MachineDetails['display'], string> = {
  std: 'standard VGA',
  virtio: 'virtio-vga',
  none: 'none (no screen)',
};

/** "CD: FILE", "Display: standard VGA" and "Forward: 8080 -> guest port 80" lines, as `vm edit` and `vm show` print them. */
export function describeDevices(m: MachineDetails): string[] {
  return [
    `CD:          ${m.iso ?? 'empty'}`,
    `Display:     ${DISPLAY_WORDS[m.display]}`,
    ...m.forwards.map((f) => `Forward:     127.0.0.1:${f.hostPort ?? 'any free port'} -> guest port ${f.guestPort}${f.guestPort === 22 ? ' (SSH)' : ''}`),
  ];
}

function port(inv: Invocation, text: string, what: string): number {
  const t = text.trim();
  if (!/^\d{1,5}$/.test(t) || Number(t) < 1 || Number(t) > 65535) throw new UsageError(`${what} "${text}" is not a port from 1 to 65535.`, inv.path);
  return Number(t);
}

function forwardList(inv: Invocation, text: string): { guestPort: number; hostPort: number }[] {
  return text.split(',').map((item) => {
    const parts = item.split(':');
    if (parts.length !== 2) throw new UsageError(`--forward "${item}" is not HOSTPORT:GUESTPORT (e.g. 8080:80).`, inv.path);
    return { hostPort: port(inv, parts[0]!, '--forward host port'), guestPort: port(inv, parts[1]!, '--forward guest port') };
  });
}

function portList(inv: Invocation, text: string): number[] {
  return text.split(',').map((p) => port(inv, p, '--no-forward'));
}
