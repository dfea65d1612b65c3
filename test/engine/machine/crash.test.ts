import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { Library } from '../../../src/engine/machine';
import { requireTool, scratchDir } from '../../support/qemu';

const exec = promisify(execFile);
import { operations } from './crash-child';
import { checkAllImages, DISK_SIZE, writeRegions } from './library-oracles';

interface RawManifest {
  id: string;
  name: string;
  disks: { top: string }[];
  snapshots: { id: string; name: string; description: string; parentId: string | null; layers: string[] }[];
  current: string | null;
  clonedFrom: { machineId: string; kind: string } | null;
}

/** qemu-img reads the whole state (through its chain) into a raw file, which is hashed. */
async function digest(path: string, tmp: string): Promise<string> {
  const out = join(tmp, `state-${Math.random().toString(16).slice(2)}.raw`);
  await exec('qemu-img', ['convert', '-U', '-O', 'raw', path, out]);
  const sum = createHash('sha256').update(readFileSync(out)).digest('hex').slice(0, 16);
  rmSync(out);
  return sum;
}

/** A folder's files by name, size and mtime (cp -a keeps mtimes, so folders an operation did not touch match). */
function signature(folder: string): string {
  return readdirSync(folder)
    .sort()
    .map((f) => {
      const st = statSync(join(folder, f));
      return `${f}:${st.size}:${st.mtimeMs}`;
    })
    .join('|');
}

const describeCache = new Map<string, unknown>();

/** What a user can see of a library: machines by name, each state's tree path and content digest. */
async function fingerprint(dir: string, tmp: string): Promise<string> {
  const folders = readdirSync(dir).map((f) => join(dir, f)).filter((f) => existsSync(join(f, 'machine.json')));
  const manifests = folders.map((f) => ({ folder: f, m: JSON.parse(readFileSync(join(f, 'machine.json'), 'utf8')) as RawManifest }));
  const key = (folder: string, m: RawManifest): string => {
    const src = m.clonedFrom ? manifests.find((x) => x.m.id === m.clonedFrom!.machineId) : undefined;
    return `${signature(folder)}#${src ? key(src.folder, src.m) : ''}`;
  };
  const machines = await Promise.all(
    manifests.map(async ({ folder, m }) => {
      const k = key(folder, m) + m.name;
      const cached = describeCache.get(k);
      if (cached) return cached as { name: string };
      const path = (id: string | null): string => {
        const names: string[] = [];
        for (let at = id; at !== null; ) {
          const s = m.snapshots.find((x) => x.id === at)!;
          names.unshift(s.name);
          at = s.parentId;
        }
        return names.join(' > ');
      };
      const snapshots = await Promise.all(m.snapshots.map(async (s) => `${path(s.id)} [${s.description}] ${await digest(join(folder, s.layers[0]!), tmp)}`));
      const described = {
        name: m.name,
        clonedFrom: m.clonedFrom ? `${m.clonedFrom.kind} of ${manifests.find((x) => x.m.id === m.clonedFrom!.machineId)?.m.name}` : null,
        snapshots: snapshots.sort(),
        current: `${path(m.current)} ${await digest(join(folder, m.disks[0]!.top), tmp)}`,
      };
      describeCache.set(k, described);
      return described;
    }),
  );
  return JSON.stringify(machines.sort((a, b) => a.name.localeCompare(b.name)), null, 1);
}

/** qemu-img check of every layer in the folders that differ from the template (the others were checked there). */
async function checkChanged(work: string, template: string): Promise<void> {
  const templateSigs = new Set(readdirSync(template).map((f) => join(template, f)).filter((f) => existsSync(join(f, 'machine.json'))).map(signature));
  const changed = readdirSync(work)
    .map((f) => join(work, f))
    .filter((f) => existsSync(join(f, 'machine.json')) && !templateSigs.has(signature(f)));
  const files = changed.flatMap((d) => readdirSync(d).filter((f) => f.endsWith('.qcow2')).map((f) => join(d, f)));
  await Promise.all(
    files.map(async (f) => {
      const r = await exec('qemu-img', ['check', '--output=json', f]).catch((e: { stdout?: string; code?: number }) => ({ stdout: e.stdout ?? '', code: e.code }));
      const c = JSON.parse(r.stdout || '{}') as { corruptions?: number; leaks?: number; 'check-errors'?: number };
      assert.ok(!c.corruptions && !c.leaks && !c['check-errors'] && !('code' in r && r.code), `qemu-img check ${f} is not clean: ${r.stdout}`);
    }),
  );
}

/** Nothing an operation leaves behind: journals, locks, staging folders, temporary or unreferenced files. */
function expectNoLeftovers(dir: string): void {
  const top = readdirSync(dir).filter((f) => f.startsWith('.'));
  assert.deepEqual(top, [], `leftovers in the library: ${top.join(', ')}`);
  for (const name of readdirSync(dir)) {
    const folder = join(dir, name);
    if (!existsSync(join(folder, 'machine.json'))) continue;
    const m = JSON.parse(readFileSync(join(folder, 'machine.json'), 'utf8')) as { disks: { top: string }[]; snapshots: { layers: string[] }[] };
    const referenced = new Set(['machine.json', ...m.disks.map((d) => d.top), ...m.snapshots.flatMap((s) => s.layers)]);
    const extra = readdirSync(folder).filter((f) => !referenced.has(f));
    assert.deepEqual(extra, [], `leftovers in ${folder}`);
    for (const f of referenced) assert.ok(existsSync(join(folder, f)), `${folder}/${f} is referenced but missing`);
  }
}

describe('machine library crash safety: killed at every step, the library recovers to before or after', function () {
  this.timeout(600_000);
  let scratch: ReturnType<typeof scratchDir>;
  let template: string;
  let child: string;
  let beforeState: string;

  before(async () => {
    requireTool('qemu-img');
    requireTool('qemu-io');
    scratch = scratchDir('vmsnap-crash-');
    child = join(scratch.dir, 'crash-child.js');
    buildSync({ entryPoints: [join(__dirname, 'crash-child.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: child, logLevel: 'warning' });
    // vm: A > B > C, and the current state under A (B: 4 MiB, C: 1 MiB, so deleting B commits C into it).
    template = join(scratch.dir, 'template');
    const lib = await Library.open(template);
    await lib.createMachine('vm', { diskSize: DISK_SIZE });
    await writeRegions(lib, 'vm', 0, 2, 1);
    await lib.takeSnapshot('vm', 'A', { description: 'first' });
    await writeRegions(lib, 'vm', 2, 6, 2);
    await lib.takeSnapshot('vm', 'B');
    await writeRegions(lib, 'vm', 6, 7, 3);
    await lib.takeSnapshot('vm', 'C');
    await writeRegions(lib, 'vm', 0, 1, 4);
    await lib.revert('vm', 'A', { discardCurrent: true });
    await writeRegions(lib, 'vm', 7, 8, 5);
    // vm2 with a linked clone (to promote), vm3 alone (to rename and delete).
    await lib.createMachine('vm2', { diskSize: DISK_SIZE });
    await writeRegions(lib, 'vm2', 1, 3, 6);
    await lib.takeSnapshot('vm2', 'S');
    await lib.clone('vm2', 'linked', { kind: 'linked', from: 'S' });
    await writeRegions(lib, 'linked', 3, 4, 7);
    await lib.takeSnapshot('linked', 'L');
    await lib.createMachine('vm3', { diskSize: DISK_SIZE });
    await writeRegions(lib, 'vm3', 0, 8, 8);
    checkAllImages(readdirSync(template).map((f) => join(template, f)).filter((f) => existsSync(join(f, 'machine.json'))));
    beforeState = await fingerprint(template, scratch.dir);
  });
  after(() => scratch?.cleanup());

  for (const op of Object.keys(operations)) {
    it(`${op}: every interruption opens to the state before or after, clean and without leftovers`, async () => {
      const work = join(scratch.dir, 'work');
      const outcomes: string[] = [];
      const states = new Map<number, string>();
      let afterState: string | null = null;
      for (let n = 1; n <= 60 && afterState === null; n++) {
        execFileSync('rm', ['-rf', work]);
        execFileSync('cp', ['-a', template, work]);
        const r = spawnSync(process.execPath, [child, work, op], { encoding: 'utf8', env: { ...process.env, VMSNAP_CRASH_AFTER_STEP: String(n) } });
        if (r.status === 0) {
          expectNoLeftovers(work);
          await checkChanged(work, template);
          afterState = await fingerprint(work, scratch.dir);
          outcomes.push(`${n}:completed`);
        } else {
          assert.equal(r.signal, 'SIGKILL', `step ${n}: the operation failed instead of being killed: ${r.stderr}`);
          await Library.open(work);
          expectNoLeftovers(work);
          await checkChanged(work, template);
          states.set(n, await fingerprint(work, scratch.dir));
        }
      }
      assert.ok(afterState !== null, `${op} did not complete within 60 steps`);
      assert.notEqual(afterState, beforeState, 'the operation changes something');
      for (const [n, s] of states) {
        const which = s === beforeState ? 'before' : s === afterState ? 'after' : 'neither';
        outcomes.push(`${n}:${which}`);
        assert.notEqual(which, 'neither', `killed after step ${n}, the library reads neither as before nor as after:\n${s}\nbefore:\n${beforeState}\nafter:\n${afterState}`);
      }
      assert.ok(states.size >= 1, `only ${states.size} interruption points: ${outcomes.join(' ')}`);
    });
  }

  for (const op of ['take', 'revert-discard']) {
    it(`${op}: killed while a hidden temporary file exists, the reopened library has none left`, async () => {
      const work = join(scratch.dir, 'temp-kill');
      let caught: string[] = [];
      for (let round = 0; round < 40 && caught.length === 0; round++) {
        execFileSync('rm', ['-rf', work]);
        execFileSync('cp', ['-a', template, work]);
        const folder = join(work, readdirSync(work).find((f) => f.startsWith('vm-'))!);
        const p = spawn(process.execPath, [child, work, op], { stdio: 'ignore' });
        let done = false;
        const exited = new Promise<void>((resolve) => p.on('exit', () => ((done = true), resolve())));
        // Killed the moment a temporary file shows (written, not yet renamed into place).
        while (!done) {
          const temps = readdirSync(folder).filter((f) => f.startsWith('.'));
          if (temps.length > 0 && p.kill('SIGKILL')) {
            caught = temps;
            break;
          }
          await new Promise((r) => setImmediate(r));
        }
        await exited;
        await Library.open(work);
        expectNoLeftovers(work);
        await checkChanged(work, template);
      }
      assert.ok(caught.length > 0, 'no kill landed while a temporary file existed');
    });
  }

  it('a finished operation whose journal comes back after a later change (its removal was not flushed) is not undone', async () => {
    const work = join(scratch.dir, 'stale-journal');
    const vmFolder = (): string => join(work, readdirSync(work).find((f) => f.startsWith('vm-'))!);
    // The journal of a snapshot, as it stands once the new manifest is written: the step before its removal.
    let journal: string | null = null;
    for (let n = 1; n <= 60 && journal === null; n++) {
      execFileSync('rm', ['-rf', work]);
      execFileSync('cp', ['-a', template, work]);
      const r = spawnSync(process.execPath, [child, work, 'take'], { encoding: 'utf8', env: { ...process.env, VMSNAP_CRASH_AFTER_STEP: String(n) } });
      assert.notEqual(r.status, 0, 'the snapshot completed before its manifest step was found');
      const file = join(vmFolder(), 'operation.json');
      if (!existsSync(file)) continue;
      const text = readFileSync(file, 'utf8');
      const after = (JSON.parse(text) as { after: { revision: number } }).after.revision;
      if ((JSON.parse(readFileSync(join(vmFolder(), 'machine.json'), 'utf8')) as { revision: number }).revision === after) journal = text;
    }
    assert.ok(journal !== null, 'no step left the journal next to its manifest');
    const lib = await Library.open(work);
    // Later work: data written in the current state (the snapshot's new top layer), and a change of the manifest.
    await writeRegions(lib, 'vm', 3, 5, 9);
    await lib.editSnapshot('vm', 'taken', { description: 'a later change' });
    const state = await fingerprint(work, scratch.dir);
    // A power cut before the folder was flushed: the journal's removal is lost, the later manifest is not.
    writeFileSync(join(vmFolder(), 'operation.json'), journal);
    const reopened = await Library.open(work);
    expectNoLeftovers(work);
    assert.equal(await fingerprint(work, scratch.dir), state, 'the snapshot and the later work are all kept');
    assert.equal((await reopened.show('vm')).snapshots.find((x) => x.name === 'taken')?.description, 'a later change');
    checkAllImages([vmFolder()]);
  });
});
