// The demo library `npm start` opens: a small machine with a few snapshots and a linked clone, made with the engine.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Library } from '../../src/engine/machine';
import { Qcow2Image } from '../../src/engine/qcow2/image';
import { CACHE } from './host';

export const DEMO_LIBRARY = join(CACHE, 'demo-library');
const MiB = 1024 * 1024;

/** Writes `length` bytes of `byte` at `offset` into the machine's current disk, as its guest would. */
async function guestWrites(lib: Library, machine: string, offset: number, length: number, byte: number): Promise<void> {
  const image = await Qcow2Image.open(await lib.diskPath(machine), { writable: true });
  try {
    await image.write(Buffer.alloc(length, byte), offset);
    await image.flush();
  } finally {
    await image.close();
  }
}

/** Creates the demo library once; later runs keep whatever the user did to it. */
export async function ensureDemoLibrary(): Promise<string> {
  if (existsSync(join(DEMO_LIBRARY, '.demo-complete'))) return DEMO_LIBRARY;
  const lib = await Library.open(DEMO_LIBRARY);
  for (const m of await lib.list()) await lib.deleteMachine(m.id, { withClones: true }).catch(() => {});
  const vm = await lib.createMachine('dev-vm', { diskSize: 8 * 1024 * MiB, note: 'Debian 12 with the project’s toolchain' });
  await guestWrites(lib, vm.id, 0, 24 * MiB, 0x11);
  const base = await lib.takeSnapshot(vm.id, 'Fresh install', { description: 'Debian 12, nothing else' });
  await guestWrites(lib, vm.id, 64 * MiB, 12 * MiB, 0x22);
  await lib.takeSnapshot(vm.id, 'Toolchain installed', { description: 'git, node 20, build-essential' });
  await guestWrites(lib, vm.id, 128 * MiB, 6 * MiB, 0x33);
  await lib.takeSnapshot(vm.id, 'Before npm upgrade', { description: 'all tests green' });
  await guestWrites(lib, vm.id, 256 * MiB, 3 * MiB, 0x44);
  const clone = await lib.clone(vm.id, 'ci-runner', { kind: 'linked', from: base.id });
  await guestWrites(lib, clone.machine.id, 32 * MiB, 4 * MiB, 0x55);
  await lib.takeSnapshot(clone.machine.id, 'Runner registered', { description: 'GitHub runner configured' });
  const { writeFile } = await import('node:fs/promises');
  await writeFile(join(DEMO_LIBRARY, '.demo-complete'), `${new Date().toISOString()}\n`);
  return DEMO_LIBRARY;
}
