// `vmsnap vm create --iso`, `vm edit --iso/--eject` and `vm edit --forward/--no-forward` through runCli in-process,
// on real QEMU (TCG): a machine with an empty disk boots the counting guest from a bootable CD, a memory snapshot
// keeps its CD drive, forwards listen on 127.0.0.1 only, and a taken port is replaced by the next free one.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { Library } from '../../src/engine/machine';
import { anyFreePort, runtimeInfo, stopMachine } from '../../src/engine/runtime';
import { countingBootSector } from '../support/counting-guest';
import { ACCEL, requireQemu, waitForCounts } from '../support/guest-machines';
import { requireTool, scratchDir } from '../support/qemu';
import { runCaptured, type Captured } from './in-process';

/** A bootable ISO (El Torito, no emulation) whose boot image is the counting boot sector. */
function makeCountingIso(dir: string, iso: string): void {
  const root = join(dir, 'iso-root');
  mkdirSync(root, { recursive: true });
  const boot = Buffer.alloc(2048);
  countingBootSector().copy(boot);
  writeFileSync(join(root, 'boot.img'), boot);
  execFileSync('genisoimage', ['-quiet', '-o', iso, '-V', 'COUNTING', '-b', 'boot.img', '-no-emul-boot', '-boot-load-size', '4', root]);
}

function tryConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.setTimeout(2000);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

function occupy(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1' }, () => resolve(server));
  });
}

describe('cli: vm create --iso, vm edit --iso/--eject/--forward/--no-forward (QEMU, TCG)', function () {
  this.timeout(120000);
  const scratch = scratchDir('vmsnap-cli-devices-');
  const libDir = join(scratch.dir, 'lib');
  const iso = scratch.path('counting.iso');
  const run = (args: string[]): Promise<Captured> => runCaptured(['--library', libDir, ...args], { env: { VMSNAP_QEMU_ACCEL: ACCEL } });
  const ok = async (args: string[]): Promise<Captured> => {
    const r = await run(args);
    assert.equal(r.status, 0, `vmsnap ${args.join(' ')}: ${r.stderr}`);
    return r;
  };
  const json = async <T>(args: string[]): Promise<T> => JSON.parse((await ok([...args, '--json'])).stdout) as T;

  before(() => {
    requireQemu();
    requireTool('genisoimage');
    makeCountingIso(scratch.dir, iso);
  });

  after(async () => {
    const lib = await Library.open(libDir);
    for (const m of await lib.list()) await stopMachine(m.folder, { force: true }).catch(() => {});
    scratch.cleanup();
  });

  it('refuses an ISO that does not exist, naming the file, and creates nothing', async () => {
    const missing = scratch.path('nowhere.iso');
    const r = await run(['vm', 'create', 'x', '--iso', missing]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`ISO image ${missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} does not exist`));
    assert.deepEqual(await json<unknown[]>(['vm', 'list']), []);
    const both = await run(['vm', 'create', 'x', '--iso', iso, '--from-image', iso]);
    assert.equal(both.status, 2, both.stderr);
  });

  it('boots an empty disk from the CD, keeps the CD drive in a memory snapshot, ejects, and refuses a revert whose ISO is gone', async () => {
    const created = await ok(['vm', 'create', 'cd', '--iso', iso, '--disk-size', '64M', '--cpus', '1', '--memory', '64']);
    assert.match(created.stdout, /CD: .*counting\.iso/);
    const shown = await json<{ iso: string | null; folder: string }>(['vm', 'show', 'cd']);
    assert.equal(shown.iso, iso);
    const s = await json<{ serialLog: string }>(['vm', 'start', 'cd']);
    await waitForCounts(s.serialLog, 5); // the counting guest runs: it came from the CD (the disk is empty)
    const info = await runtimeInfo(shown.folder);
    assert.ok(info?.argv.some((a) => a.includes(`file=${iso},format=raw,if=none,id=cd0,media=cdrom,readonly=on`)), 'read-only CD drive');

    await ok(['snapshot', 'take', 'cd', 'with-cd']);
    // Ejected now (the running QEMU keeps its CD until it stops); the snapshot's state still loads with its CD.
    const ejected = await ok(['vm', 'edit', 'cd', '--eject']);
    assert.match(ejected.stdout, /CD: +empty/);
    assert.match(ejected.stdout, /change at the next start/);
    const r = await json<{ poweredOn: boolean; stateLoadError: string | null }>(['snapshot', 'revert', 'cd', 'with-cd', '--discard-current']);
    assert.equal(r.poweredOn, true, String(r.stateLoadError));
    assert.equal((await json<{ iso: string | null }>(['vm', 'show', 'cd'])).iso, iso, 'the current state has the CD the snapshot had');
    await ok(['vm', 'stop', 'cd', '--force']);

    // Eject, and the next start has no CD drive.
    await ok(['vm', 'edit', 'cd', '--eject']);
    await ok(['vm', 'start', 'cd']);
    assert.ok(!(await runtimeInfo(shown.folder))?.argv.some((a) => a.includes('id=cd0')), 'no CD drive after --eject');
    await ok(['vm', 'stop', 'cd', '--force']);

    // The ISO went away: a revert with memory is refused, naming the file; nothing changed.
    const moved = scratch.path('moved.iso');
    renameSync(iso, moved);
    try {
      const before = readFileSync(join(shown.folder, 'machine.json'), 'utf8');
      const refused = await run(['snapshot', 'revert', 'cd', 'with-cd', '--discard-current']);
      assert.equal(refused.status, 1);
      assert.ok(refused.stderr.includes(iso), refused.stderr);
      assert.match(refused.stderr, /is gone/);
      assert.equal(readFileSync(join(shown.folder, 'machine.json'), 'utf8'), before, 'the machine is as it was');
      const edit = await run(['vm', 'edit', 'cd', '--iso', iso]);
      assert.equal(edit.status, 1);
      assert.ok(edit.stderr.includes(`${iso} does not exist`), edit.stderr);
    } finally {
      renameSync(moved, iso);
    }
  });

  it('forwards a host port on 127.0.0.1 only, shows it, moves to the next free port when it is taken, and removes it', async () => {
    await ok(['vm', 'create', 'net', '--disk-size', '16M', '--cpus', '1', '--memory', '64']);
    const port = await anyFreePort();
    const bad = await run(['vm', 'edit', 'net', '--forward', '80']);
    assert.equal(bad.status, 2);
    const edited = await ok(['vm', 'edit', 'net', '--forward', `${port}:8080,${port + 1}:8081`]);
    assert.match(edited.stdout, new RegExp(`127\\.0\\.0\\.1:${port} -> guest port 8080`));
    const shown = await json<{ forwards: { guestPort: number; hostPort?: number }[] }>(['vm', 'show', 'net']);
    assert.deepEqual(shown.forwards, [{ guestPort: 22 }, { guestPort: 8080, hostPort: port }, { guestPort: 8081, hostPort: port + 1 }]);

    await ok(['vm', 'start', 'net']);
    const status = await ok(['vm', 'status', 'net']);
    assert.match(status.stdout, new RegExp(`Forward: +${port} -> guest port 8080`));
    assert.equal(await tryConnect('127.0.0.1', port), true, 'QEMU listens on 127.0.0.1');
    const outside = Object.values(networkInterfaces()).flat().find((a) => a !== undefined && a.family === 'IPv4' && !a.internal);
    if (outside !== undefined) assert.equal(await tryConnect(outside.address, port), false, `nothing listens on ${outside.address}`);
    await ok(['vm', 'stop', 'net', '--force']);

    // The wanted port is taken when the machine starts: the next free one, and the start says so.
    const holder = await occupy(port);
    try {
      const started = await ok(['vm', 'start', 'net']);
      const moved = /Port (\d+) was taken: guest port 8080 is on (\d+) instead/.exec(started.stdout);
      assert.ok(moved, started.stdout);
      assert.equal(Number(moved[1]), port);
      assert.notEqual(Number(moved[2]), port);
      const st = await json<{ forwards: { guestPort: number; hostPort: number; wanted?: number }[] }>(['vm', 'status', 'net']);
      assert.deepEqual(st.forwards.find((f) => f.guestPort === 8080), { guestPort: 8080, hostPort: Number(moved[2]), wanted: port });
      await ok(['vm', 'stop', 'net', '--force']);
    } finally {
      holder.close();
    }

    await ok(['vm', 'edit', 'net', '--no-forward', '8081']);
    assert.deepEqual((await json<{ forwards: { guestPort: number }[] }>(['vm', 'show', 'net'])).forwards.map((f) => f.guestPort), [22, 8080]);
    const unknown = await run(['vm', 'edit', 'net', '--no-forward', '9999']);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /forwards no host port to guest port 9999/);
    await ok(['vm', 'edit', 'net', '--no-forward', 'all']);
    assert.deepEqual((await json<{ forwards: { guestPort: number }[] }>(['vm', 'show', 'net'])).forwards, [{ guestPort: 22 }]);
  });

  it('keeps the SSH port of the last start, so an SSH session or a Remote-SSH window finds the machine again', async () => {
    await ok(['vm', 'create', 'keep', '--disk-size', '16M', '--cpus', '1', '--memory', '64']);
    await ok(['vm', 'start', 'keep']);
    const first = (await json<{ ssh: { port: number } }>(['vm', 'status', 'keep'])).ssh.port;
    await ok(['vm', 'stop', 'keep', '--force']);
    const again = await ok(['vm', 'start', 'keep']);
    assert.equal((await json<{ ssh: { port: number } }>(['vm', 'status', 'keep'])).ssh.port, first);
    assert.doesNotMatch(again.stdout, /was taken/);
    await ok(['vm', 'stop', 'keep', '--force']);
    // Taken meanwhile by another program: another port, without a word (nobody asked for that one).
    const holder = await occupy(first);
    try {
      const moved = await ok(['vm', 'start', 'keep']);
      assert.notEqual((await json<{ ssh: { port: number } }>(['vm', 'status', 'keep'])).ssh.port, first);
      assert.doesNotMatch(moved.stdout, /was taken/);
      await ok(['vm', 'stop', 'keep', '--force']);
    } finally {
      holder.close();
    }
  });
});
