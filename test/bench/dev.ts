// Dev machines on the real Debian guest (tests' image, built from Debian's packages and cached): from
// `vm create --from-image` to SSH answering (a first boot with cloud-init), a snapshot with memory after the guest
// has used its memory (how long the guest did not run, and the whole call), and a revert to that snapshot until
// SSH answers again. Accelerator: VMSNAP_QEMU_ACCEL, else TCG (KVM fails for real guests on these hosts).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Library } from '../../src/engine/machine';
import { sshArgs, waitForSsh, type SshTarget } from '../../src/engine/ssh';
import { debianImage } from '../support/debian-image';
import { median, type BenchRow } from './report';

const ACCEL = process.env['VMSNAP_QEMU_ACCEL'] ?? 'tcg';
const RUNS = 3;
/** Memory the guest fills with random bytes before the snapshot (of 1024 MiB), so the state is not mostly zeros. */
const FILL_MIB = 256;

function ssh(target: SshTarget, script: string): string {
  return execFileSync('ssh', sshArgs(target, { batchMode: true, command: ['sh', '-c', script] }), { encoding: 'utf8' });
}

export async function devSection(workDir: string): Promise<BenchRow[]> {
  const image = await debianImage();
  const home = join(workDir, 'home');
  mkdirSync(home, { recursive: true });
  process.env['HOME'] = home; // no user keys: the library makes its own pair, as on a fresh machine
  const lib = await Library.open(join(workDir, 'lib'), { qemu: { accel: ACCEL } });
  const rows: BenchRow[] = [];
  try {
    const t0 = performance.now();
    await lib.createFromImage('dev', image, { memoryMiB: 1024, diskSize: 4 * 1024 ** 3 });
    await lib.startMachine('dev');
    // A revert starts a new QEMU, with the SSH forward on a new port: the target is asked for again after each.
    let target = await lib.sshTarget('dev', { wait: { timeoutMs: 600_000 } });
    ssh(target, 'true');
    const firstBoot = performance.now() - t0;
    rows.push({ operation: `dev (${ACCEL}): create from image until SSH logs in (first boot, cloud-init)`, oursMs: firstBoot, qemuMs: null });
    console.log(`  first boot to SSH: ${Math.round(firstBoot)} ms`);

    ssh(target, `head -c ${FILL_MIB}M /dev/urandom > /dev/shm/fill && sync`);
    const pauses: number[] = [];
    const takes: number[] = [];
    const reverts: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t1 = performance.now();
      const snap = await lib.takeSnapshot('dev', `bench ${i}`);
      takes.push(performance.now() - t1);
      pauses.push(snap.pauseMs);
      ssh(target, 'sudo rm -rf /usr/share/doc');
      const t2 = performance.now();
      await lib.revert('dev', snap.id, { discardCurrent: true });
      target = await lib.sshTarget('dev');
      await waitForSsh(target.host, target.port, { timeoutMs: 120_000, retryDelayMs: 20 });
      ssh(target, 'test -d /usr/share/doc');
      reverts.push(performance.now() - t2);
      console.log(`  run ${i + 1}: paused ${Math.round(snap.pauseMs)} ms, take ${Math.round(takes[i]!)} ms, revert to SSH ${Math.round(reverts[i]!)} ms`);
    }
    const paused = median(pauses);
    rows.push({ operation: `dev (${ACCEL}): snapshot with memory, guest paused (${FILL_MIB} MiB used)`, oursMs: paused, qemuMs: null, target: '< 100 ms', met: paused < 100 });
    rows.push({ operation: `dev (${ACCEL}): snapshot with memory, whole call`, oursMs: median(takes), qemuMs: null });
    const revert = median(reverts);
    rows.push({ operation: `dev (${ACCEL}): revert to it until SSH logs in again`, oursMs: revert, qemuMs: null, target: '< 3 s (KVM)', met: revert < 3000 });
  } finally {
    for (const m of await lib.list()) await lib.stopMachine(m.id, { force: true }).catch(() => {});
  }
  return rows;
}
