// `vmsnap vm create`: a new machine with one empty sparse disk, or launched from a cloud image with cloud-init.
import { readFile } from 'node:fs/promises';
import type { CreateFromImageOptions, CreateMachineOptions, Library } from '../../engine/machine';
import { UsageError, type Command, type Invocation } from '../args';
import { emit, longOperation, type CliContext } from '../output';
import { formatSize, parseSize } from '../units';
import { hardwareOptions, openLibrary, shortId } from './shared';

export const vmCreateCommand: Command<CliContext> = {
  name: 'create',
  summary: 'create a machine with one empty disk, or from a cloud image (--from-image) that you can SSH into',
  description: [
    'With --from-image, the image (qcow2 or raw, a path or an http(s) URL) is kept in the library\'s image cache, so a',
    'second machine from it costs nothing; the machine\'s disk is an overlay on it. A cloud-init seed creates a user',
    '(--user, default: your user name, or "dev" for root) with passwordless sudo and your SSH public key (--ssh-key,',
    'default ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub, else a key pair made once for the library), sets the',
    'hostname to the machine\'s name and turns password login off. Then: vmsnap vm start NAME; vmsnap vm ssh NAME.',
  ].join('\n'),
  args: [{ name: 'NAME', description: 'the display name: any text without control characters' }],
  flags: [
    { name: 'disk-size', kind: 'value', valueName: 'SIZE', description: 'virtual size of its disk (default 16G)' },
    { name: 'cpus', kind: 'value', valueName: 'N', description: 'virtual CPUs (default 2)' },
    { name: 'memory', kind: 'value', valueName: 'MIB', description: 'memory in MiB (default 2048)' },
    { name: 'note', kind: 'value', valueName: 'TEXT', description: 'a free-text note' },
    { name: 'dir', kind: 'value', valueName: 'DIR', description: 'put the machine\'s folder in DIR instead of the library' },
    { name: 'from-image', kind: 'value', valueName: 'PATH|URL', description: 'launch from a cloud image (qcow2 or raw) with cloud-init' },
    { name: 'sha256', kind: 'value', valueName: 'HEX', description: 'with --from-image: the image\'s expected SHA-256' },
    { name: 'user', kind: 'value', valueName: 'NAME', description: 'with --from-image: the guest user to create' },
    { name: 'ssh-key', kind: 'value', valueName: 'FILE.pub', description: 'with --from-image: the public key to let in' },
    { name: 'user-data', kind: 'value', valueName: 'FILE', description: 'with --from-image: your own cloud-init user-data' },
    { name: 'iso', kind: 'value', valueName: 'FILE', description: 'put an ISO image (an installer) in the CD drive: it boots until the disk can' },
  ],
  choices: [{ flags: ['from-image', 'iso'], required: false }],
  examples: [
    'vmsnap vm create dev --disk-size 20G',
    'vmsnap vm create "Windows 11 test" --cpus 4 --memory 8192',
    'vmsnap vm create debian --iso debian-12.7.0-amd64-netinst.iso --disk-size 20G',
    'vmsnap vm create dev --from-image https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2 --disk-size 20G',
  ],
  async run(inv, ctx) {
    const image = inv.value('from-image');
    if (image !== undefined) return createFromImage(inv, ctx, image);
    for (const name of ['sha256', 'user', 'ssh-key', 'user-data']) {
      if (inv.value(name) !== undefined) throw new UsageError(`--${name} goes with --from-image.`, inv.path);
    }
    const options: CreateMachineOptions = hardwareOptions(inv);
    const size = inv.value('disk-size');
    if (size !== undefined) options.diskSize = parseSize(size, '--disk-size');
    const dir = inv.value('dir');
    if (dir !== undefined) options.dir = dir;
    const iso = inv.value('iso');
    if (iso !== undefined) options.iso = iso;
    const lib = await openLibrary(inv, ctx);
    const m = await lib.createMachine(inv.required('NAME'), options);
    emit(ctx, m, () =>
      [
        `Created machine "${m.name}" (id ${shortId(m.id)}, MAC ${m.macAddress}): ${m.cpus} CPUs, ${m.memoryMiB} MiB, a ${formatSize(m.disks[0]?.virtualSize ?? 0)} disk.`,
        `Disk 0: ${m.disks[0]?.path ?? '-'}`,
        ...(m.iso === null ? [] : [`CD: ${m.iso} (boots until the disk has an operating system; \`vmsnap vm edit "${m.name}" --eject\` takes it out)`]),
      ].join('\n'),
    );
    return 0;
  },
};

async function createFromImage(inv: Invocation, ctx: CliContext, image: string): Promise<number> {
  if (inv.value('dir') !== undefined) throw new UsageError('--dir cannot be used with --from-image (the machine needs the library\'s image cache).', inv.path);
  const options: CreateFromImageOptions = hardwareOptions(inv);
  const size = inv.value('disk-size');
  if (size !== undefined) options.diskSize = parseSize(size, '--disk-size');
  const sha256 = inv.value('sha256');
  if (sha256 !== undefined) options.sha256 = sha256;
  const user = inv.value('user');
  if (user !== undefined) options.user = user;
  const key = inv.value('ssh-key');
  if (key !== undefined) options.sshKey = key;
  const userData = inv.value('user-data');
  if (userData !== undefined) {
    options.userData = await readFile(userData, 'utf8').catch((e: Error) => {
      throw new UsageError(`--user-data ${userData} cannot be read: ${e.message}`, inv.path);
    });
  }
  const lib: Library = await openLibrary(inv, ctx);
  const r = await longOperation(ctx, 'Fetching the image', (op) => lib.createFromImage(inv.required('NAME'), image, { ...options, ...op }));
  const m = r.machine;
  emit(ctx, r, () =>
    [
      `Created machine "${m.name}" (id ${shortId(m.id)}, MAC ${m.macAddress}) from ${r.image.source}${r.image.fromCache ? ' (cached)' : ''}: ${m.cpus} CPUs, ${m.memoryMiB} MiB, a ${formatSize(m.disks[0]?.virtualSize ?? 0)} disk.`,
      `Guest user "${m.guest?.user ?? '-'}" lets in the key ${r.key.path}${r.key.generated ? ' (a key pair made now for this library)' : ''}.`,
      `Next: vmsnap vm start "${m.name}" && vmsnap vm ssh "${m.name}"`,
    ].join('\n'),
  );
  return 0;
}
