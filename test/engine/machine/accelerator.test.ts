// The accelerator a machine runs with: under auto (kvm:tcg) a guest KVM cannot run is started again with TCG
// once, the machine remembers it, and a memory snapshot taken afterwards reverts. The guest that KVM cannot run
// is test/support/kvm-trap-guest.ts; on a host where KVM runs it (real hardware) or no KVM exists, the same test
// checks that nothing falls back and the guest runs as before.
import { strict as assert } from 'node:assert';
import { constants, accessSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Library, isMachineError } from '../../../src/engine/machine';
import { accelNotice, accelVerdict, KVM_FALLBACK_NOTICE, shouldWatch, startAccel } from '../../../src/engine/machine/accelerator';
import { validateManifest } from '../../../src/engine/machine/manifest';
import { isAutoAccel, runtimeInfo, stopMachine } from '../../../src/engine/runtime';
import { PMODE_OK_LINE, writeKvmTrapGuest } from '../../support/kvm-trap-guest';
import { requireQemu } from '../../support/guest-machines';
import { scratchDir } from '../../support/qemu';

function kvmOpenable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function printed(log: string, line: string): true | undefined {
  return existsSync(log) && readFileSync(log, 'latin1').includes(line) ? true : undefined;
}

describe('machine accelerator: the decision', () => {
  const auto = { accel: 'kvm:tcg' };
  it('auto means KVM first with TCG after it; KVM alone or TCG alone is no auto', () => {
    assert.equal(isAutoAccel('kvm:tcg'), true);
    assert.equal(isAutoAccel('kvm'), false);
    assert.equal(isAutoAccel('tcg'), false);
    assert.equal(isAutoAccel('tcg:kvm'), false);
  });

  it('a machine KVM failed on starts with TCG under auto, and with what was asked for otherwise', () => {
    const failed = { kvmFailedAt: '2024-05-01T00:00:00.000Z' };
    assert.equal(startAccel(auto, {}), 'kvm:tcg');
    assert.equal(startAccel(auto, failed), 'tcg');
    assert.equal(startAccel({ accel: 'kvm' }, failed), 'kvm', 'explicit KVM is never worked round');
    assert.equal(startAccel({ accel: 'tcg' }, failed), 'tcg');
  });

  it('falls back only for an internal error of a guest KVM runs under auto', () => {
    assert.equal(accelVerdict(auto, 'internal-error', 'kvm'), 'fall-back');
    assert.equal(accelVerdict({ accel: 'kvm' }, 'internal-error', 'kvm'), 'as-is');
    assert.equal(accelVerdict(auto, 'internal-error', 'tcg'), 'as-is');
    assert.equal(accelVerdict(auto, 'running', 'kvm'), 'as-is');
    assert.equal(accelVerdict(auto, 'guest-panicked', 'kvm'), 'as-is');
    assert.equal(accelVerdict(auto, null, null), 'as-is');
    assert.equal(shouldWatch(auto, 'kvm'), true);
    assert.equal(shouldWatch(auto, 'tcg'), false, 'no KVM in use: nothing to watch');
    assert.equal(shouldWatch({ accel: 'kvm' }, 'kvm'), false);
  });

  it('the notice says TCG runs the guest only when that is because KVM failed on it', () => {
    const failed = { kvmFailedAt: '2024-05-01T00:00:00.000Z' };
    assert.equal(accelNotice(auto, failed, 'tcg'), KVM_FALLBACK_NOTICE);
    assert.equal(accelNotice(auto, {}, 'tcg'), null, 'a host without KVM');
    assert.equal(accelNotice({ accel: 'tcg' }, failed, 'tcg'), null, 'TCG asked for');
    assert.equal(accelNotice(auto, failed, null), null, 'off');
  });

  it('the manifest keeps kvmFailedAt and a CD (absolute path) and refuses a relative ISO path', () => {
    const base = {
      format: 'vmsnap-machine', version: 1, revision: 1, id: '0123abcd-0000-4000-8000-000000000000', name: 'm', macAddress: '52:54:00:00:00:01',
      cpus: 1, memoryMiB: 64, powerState: 'off', createdAt: '2024-01-01T00:00:00.000Z', note: '', disks: [{ virtualSize: 1048576, top: 'a.qcow2' }],
      snapshots: [], current: null, clonedFrom: null,
    };
    const m = validateManifest({ ...base, kvmFailedAt: '2024-05-01T00:00:00.000Z', cdrom: '/isos/debian.iso' }, 'machine.json');
    assert.equal(m.kvmFailedAt, '2024-05-01T00:00:00.000Z');
    assert.equal(m.cdrom, '/isos/debian.iso');
    assert.throws(() => validateManifest({ ...base, cdrom: 'debian.iso' }, 'machine.json'), /"cdrom" must be an absolute path/);
    assert.throws(() => validateManifest({ ...base, kvmFailedAt: 'yesterday' }, 'machine.json'), /"kvmFailedAt" must be an ISO 8601 date/);
  });
});

describe('machine accelerator: KVM fallback on a real QEMU (kvm:tcg)', function () {
  this.timeout(180000);
  const scratch = scratchDir('vmsnap-accel-');
  const libDir = join(scratch.dir, 'lib');

  before(() => requireQemu());
  after(async () => {
    const lib = await Library.open(libDir);
    for (const x of await lib.list()) await stopMachine(x.folder, { force: true }).catch(() => {});
    scratch.cleanup();
  });

  it('a guest KVM cannot run ends up running with TCG, says so, later starts go straight to TCG, and a memory snapshot reverts', async () => {
    // The watch is long here: under nested KVM the trap guest's BIOS alone takes about 7 s.
    const lib = await Library.open(libDir, { qemu: { accel: 'kvm:tcg', accelWatchMs: 30000 } });
    const raw = scratch.path('trap.raw');
    writeKvmTrapGuest(raw);
    const m = (await lib.importMachine('trap', raw, { cpus: 1, memoryMiB: 64 })).machine;

    const s = await lib.startMachine('trap');
    assert.equal(s.powerState, 'running');
    assert.equal(s.failure, null);
    await waitFor('the guest reaches protected mode and says so', 60000, () => printed(s.serialLog, PMODE_OK_LINE));
    const fellBack = (await lib.show('trap')).kvmFailedAt !== null;
    const accel = (await runtimeInfo(m.folder))?.accel;
    console.log(`      (KVM ${kvmOpenable() ? 'openable' : 'not openable'} here; ${fellBack ? 'KVM failed on the guest: fell back to TCG' : `no fallback: the guest ran with ${accel}`})`);
    if (!fellBack) {
      assert.equal(s.notice, null);
      return;
    }
    assert.equal(accel, 'tcg');
    assert.equal(s.notice, KVM_FALLBACK_NOTICE);
    assert.equal((await lib.machineStatus('trap')).notice, KVM_FALLBACK_NOTICE);

    // Remembered: the next start goes straight to TCG, without watching.
    await lib.stopMachine('trap', { force: true });
    const t0 = Date.now();
    const again = await lib.startMachine('trap');
    assert.ok(Date.now() - t0 < 10000, `no watch on a TCG start (${Date.now() - t0} ms)`);
    assert.equal((await runtimeInfo(m.folder))?.accel, 'tcg');
    assert.equal(again.notice, KVM_FALLBACK_NOTICE);
    await waitFor('the guest runs again', 30000, () => printed(again.serialLog, PMODE_OK_LINE));

    // A memory snapshot records TCG and reverts into a running machine.
    const snap = await lib.takeSnapshot('trap', 'tcg-live');
    assert.equal(snap.hasMemory, true);
    const manifest = JSON.parse(readFileSync(join(m.folder, 'machine.json'), 'utf8')) as { snapshots: { vm: { accel: string } | null }[] };
    assert.equal(manifest.snapshots[0]?.vm?.accel, 'tcg');
    const r = await lib.revert('trap', 'tcg-live', { discardCurrent: true });
    assert.equal(r.poweredOn, true, String(r.stateLoadError));
    const after = await lib.machineStatus('trap');
    assert.equal(after.powerState, 'running');
    assert.equal(after.notice, KVM_FALLBACK_NOTICE);
    await lib.stopMachine('trap', { force: true });

    // KVM asked for explicitly: the failure is reported, never worked round.
    const kvmLib = await Library.open(libDir, { qemu: { accel: 'kvm' } });
    await kvmLib.importMachine('trap-kvm', raw, { cpus: 1, memoryMiB: 64 });
    const k = await kvmLib.startMachine('trap-kvm');
    assert.equal(k.notice, null);
    const failed = await waitFor('KVM stops the guest', 60000, async () => {
      const st = await kvmLib.machineStatus('trap-kvm');
      return st.failure === null ? undefined : st;
    });
    assert.equal(failed.qemuRunState, 'internal-error');
    assert.match(failed.failure ?? '', /KVM could not run the guest/);
    assert.equal((await kvmLib.show('trap-kvm')).kvmFailedAt, null);
    await assert.rejects(kvmLib.resumeMachine('trap-kvm'), (e: unknown) => isMachineError(e) && e.code === 'RUNTIME_ERROR' && /KVM could not run the guest/.test(e.message));

    // The same machine under auto: its status starts it again with TCG.
    const viaStatus = await lib.machineStatus('trap-kvm');
    assert.equal(viaStatus.powerState, 'running');
    assert.equal(viaStatus.notice, KVM_FALLBACK_NOTICE);
    assert.notEqual((await lib.show('trap-kvm')).kvmFailedAt, null);
  });
});
