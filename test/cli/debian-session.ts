// The CLI against the real Debian guest, as the Debian tests drive it: a library and a HOME without SSH keys in a
// scratch folder, `bin/vmsnap` run as a user runs it, the guest image from the machine's cache, and every QEMU
// stopped afterwards. Call the returned hooks from the suite's before() and after().
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Library } from '../../src/engine/machine';
import { stopMachine } from '../../src/engine/runtime';
import { debianImage } from '../support/debian-image';
import { ACCEL, requireQemu } from '../support/guest-machines';
import { requireTool, scratchDir, type Scratch } from '../support/qemu';
import { buildCli, ROOT } from './vmsnap';

export interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

export interface DebianSession {
  scratch: Scratch;
  libDir: string;
  /** The Debian guest image (set by setUp). */
  image: () => string;
  cli: (args: string[], input?: string) => Promise<Run>;
  /** `cli` that must exit 0. */
  ok: (args: string[]) => Promise<Run>;
  json: <T>(args: string[]) => Promise<T>;
  /** A command in the guest over `vm ssh` (waits for a booting guest's SSH server); its trimmed stdout. */
  inGuest: (vm: string, script: string) => Promise<string>;
  setUp: (...tools: string[]) => Promise<void>;
  tearDown: () => Promise<void>;
}

export function debianSession(prefix: string): DebianSession {
  const scratch = scratchDir(prefix);
  const libDir = join(scratch.dir, 'lib');
  // A home without SSH keys: the library makes its own key pair.
  const home = join(scratch.dir, 'home');
  let image = '';
  const cli = (args: string[], input?: string): Promise<Run> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [join(ROOT, 'bin/vmsnap'), '--library', libDir, ...args], {
        env: { ...process.env, HOME: home, VMSNAP_QEMU_ACCEL: ACCEL, VMSNAP_DEBUG: '', VMSNAP_PROGRESS: '' },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.stdin.end(input ?? '');
      child.on('exit', (code) => resolve({ status: code ?? -1, stdout, stderr }));
    });
  const ok = async (args: string[]): Promise<Run> => {
    const r = await cli(args);
    assert.equal(r.status, 0, `vmsnap ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r;
  };
  return {
    scratch,
    libDir,
    image: () => image,
    cli,
    ok,
    json: async <T>(args: string[]): Promise<T> => JSON.parse((await ok([...args, '--json'])).stdout) as T,
    inGuest: async (vm, script) => (await ok(['vm', 'ssh', vm, '--', 'sh', '-c', script])).stdout.trim(),
    setUp: async (...tools) => {
      requireQemu();
      for (const t of ['ssh', ...tools]) requireTool(t);
      mkdirSync(home, { recursive: true });
      await buildCli();
      image = await debianImage();
    },
    tearDown: async () => {
      const lib = await Library.open(libDir).catch(() => null);
      for (const m of (await lib?.list()) ?? []) await stopMachine(m.folder, { force: true }).catch(() => {});
      scratch.cleanup();
    },
  };
}
