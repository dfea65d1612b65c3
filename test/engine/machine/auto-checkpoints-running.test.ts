// Automatic checkpoints with the real clock, at a 2-second interval, of a running machine: the counting boot-sector
// guest (test/support/counting-guest.ts) keeps counting through them, each holds its memory, and pruning what the
// running chain reads waits until the machine is off.
import { strict as assert } from 'node:assert';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AutoScheduler, Library, type AutoCheckpointOutcome, type MachineDetails } from '../../../src/engine/machine';
import { ACCEL, countsSince, libraryWithCountingGuest, stopEveryMachine, waitForCounts } from '../../support/guest-machines';
import { scratchDir } from '../../support/qemu';

describe('automatic checkpoints of a running machine (real clock, QEMU)', function () {
  this.timeout(120000);
  const scratch = scratchDir('vmsnap-auto-running-');
  let lib: Library;
  let m: MachineDetails;

  before(async () => {
    ({ lib, machine: m } = await libraryWithCountingGuest(join(scratch.dir, 'lib'), scratch.path('guest.raw'), 32));
  });

  after(async () => {
    await stopEveryMachine(lib);
    scratch.cleanup();
  });

  it('takes one every 2 s with memory while the guest keeps counting, and prunes to the retention as it runs', async () => {
    await lib.editMachine('guest', { autoCheckpoints: { everySeconds: 2, keep: 2 } });
    const status = await lib.startMachine('guest');
    await waitForCounts(status.serialLog, 5);
    const outcomes: AutoCheckpointOutcome[] = [];
    const stop = new AbortController();
    const scheduler = new AutoScheduler(lib, { onOutcome: (o) => outcomes.push(o), maxSleepMs: 500 });
    const started = Date.now();
    const running = scheduler.run(stop.signal);
    await new Promise((r) => setTimeout(r, 7000));
    stop.abort();
    await running;
    const elapsed = Date.now() - started;

    const taken = outcomes.filter((o) => o.result === 'taken').map((o) => o.snapshot!);
    assert.ok(taken.length >= 3 && taken.length <= Math.floor(elapsed / 2000) + 1, `${taken.length} checkpoints in ${elapsed} ms: ${outcomes.map((o) => o.message).join(' | ')}`);
    for (const s of taken) assert.ok(s.auto && s.hasMemory && s.takenWhileRunning, JSON.stringify(s));
    for (let i = 1; i < taken.length; i++) {
      const gap = Date.parse(taken[i]!.createdAt) - Date.parse(taken[i - 1]!.createdAt);
      assert.ok(gap >= 1750 && gap < 3500, `gap ${gap} ms between checkpoints`);
    }
    const pauses = taken.map((s) => s.pauseMs.toFixed(1));
    console.log(`      pause per automatic checkpoint with memory (${ACCEL}, 32 MiB guest): ${pauses.join(', ')} ms`);
    // The guest never restarted: its count only went up, one by one, through every checkpoint.
    const counts = countsSince(status.serialLog);
    for (let i = 1; i < counts.length; i++) assert.equal(counts[i], counts[i - 1]! + 1, `count ${counts[i - 1]} then ${counts[i]}`);
    // While it runs, what the retention lets go is merged live (QEMU's block jobs), between automatic layers only.
    const pruned = outcomes.flatMap((o) => o.pruned);
    assert.ok(pruned.length > 0, outcomes.map((o) => o.message).join(' | '));
    assert.deepEqual(outcomes.flatMap((o) => o.kept), []);

    await lib.stopMachine('guest', { force: true });
    await new Promise((r) => setTimeout(r, 2000));
    const after = await lib.autoCheckpoint('guest');
    assert.equal(after.result, 'unchanged', after.message);
    const left = (await lib.show('guest')).snapshots;
    assert.deepEqual(left.map((s) => s.id), taken.slice(-2).map((s) => s.id), 'the newest two stay');
    const stateFiles = readdirSync(m.folder).filter((f) => f.includes('state'));
    assert.equal(stateFiles.length, 2, `the pruned ones' memory files went with them: ${stateFiles.join(', ')}`);
    // The newest one still brings the machine back running where it was.
    const r = await lib.revert('guest', left[1]!.id, { discardCurrent: true });
    assert.equal(r.poweredOn, true, String(r.stateLoadError));
  });
});
