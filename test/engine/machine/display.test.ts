// The display device through the library: machines get std VGA by default, a memory snapshot records the display
// it was saved with, and a revert loads the state into exactly that (none for states saved before displays).
import { strict as assert } from 'node:assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Library } from '../../../src/engine/machine';
import { validateManifest } from '../../../src/engine/machine/manifest';
import { runtimeInfo } from '../../../src/engine/runtime';
import { scratchDir } from '../../support/qemu';
import { libraryWithCountingGuest, logSize, stopEveryMachine, waitForCounts } from '../../support/guest-machines';

interface RawManifest {
  display?: string;
  snapshots: { name: string; vm: { display?: string } | null }[];
}

describe('machine library: the display device of running machines and their memory snapshots', function () {
  this.timeout(120000);
  const scratch = scratchDir('vmsnap-display-lib-');
  let lib: Library;
  let folder: string;

  before(async () => {
    const guest = await libraryWithCountingGuest(join(scratch.dir, 'lib'), scratch.path('guest.raw'));
    lib = guest.lib;
    folder = guest.machine.folder;
  });

  after(async () => {
    await stopEveryMachine(lib);
    scratch.cleanup();
  });

  const manifestFile = (): string => join(folder, 'machine.json');
  const readRaw = (): RawManifest => JSON.parse(readFileSync(manifestFile(), 'utf8')) as RawManifest;

  it('starts with std VGA by default and records it in a memory snapshot; a revert loads the state with it', async () => {
    const started = await lib.startMachine('guest');
    assert.equal((await runtimeInfo(folder))?.display, 'std');
    await waitForCounts(started.serialLog, 5);
    await lib.takeSnapshot('guest', 'with-screen');
    assert.equal(readRaw().snapshots.find((s) => s.name === 'with-screen')?.vm?.display, 'std');
    const r = await lib.revert('guest', 'with-screen', { discardCurrent: true });
    assert.equal(r.poweredOn, true, String(r.stateLoadError));
    await waitForCounts(started.serialLog, 3, logSize(started.serialLog));
    assert.equal((await runtimeInfo(folder))?.display, 'std');
    await lib.stopMachine('guest', { force: true });
  });

  it('loads a state saved before machines had displays (no display in its record) without one, whatever the machine\'s setting', async () => {
    // A headless run stands in for a machine from before displays: its snapshot's record then loses the field.
    const m = readRaw();
    m.display = 'none';
    writeFileSync(manifestFile(), JSON.stringify(m));
    const started = await lib.startMachine('guest');
    assert.equal((await runtimeInfo(folder))?.display, 'none');
    await waitForCounts(started.serialLog, 5, logSize(started.serialLog));
    await lib.takeSnapshot('guest', 'old-state');
    await lib.stopMachine('guest', { force: true });
    const old = readRaw();
    const rec = old.snapshots.find((s) => s.name === 'old-state')!;
    assert.equal(rec.vm?.display, 'none');
    delete rec.vm!.display;
    old.display = 'virtio'; // the machine's setting now: a cold start would get it, the old state must not
    writeFileSync(manifestFile(), JSON.stringify(old));

    const from = logSize(started.serialLog);
    const r = await lib.revert('guest', 'old-state', { discardCurrent: true });
    assert.equal(r.poweredOn, true, String(r.stateLoadError));
    await waitForCounts(started.serialLog, 3, from);
    assert.equal((await runtimeInfo(folder))?.display, 'none');
    await lib.stopMachine('guest', { force: true });
    await lib.startMachine('guest');
    assert.equal((await runtimeInfo(folder))?.display, 'virtio', 'a cold start takes the machine\'s setting');
    await lib.stopMachine('guest', { force: true });
  });

  it('refuses a manifest whose display is not std, virtio or none, naming the field', () => {
    const m = readRaw();
    assert.throws(() => validateManifest({ ...m, display: 'cirrus' }, 'machine.json'), /field "display" must be "std", "virtio" or "none"/);
    const snaps = m.snapshots.map((s) => (s.vm === null ? s : { ...s, vm: { ...s.vm, display: 'tcp:0' } }));
    assert.throws(() => validateManifest({ ...m, snapshots: snaps }, 'machine.json'), /vm\.display" must be/);
  });
});
