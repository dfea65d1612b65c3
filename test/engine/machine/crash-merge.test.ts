// A kill inside the copying of a snapshot deletion's merge (commit and rebase), with enough data (a few hundred
// MiB) that the kill lands in the middle of it: the library reopens to before or after, byte-exact and clean.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { Library, type MachineDetails } from '../../../src/engine/machine';
import { requireTool, scratchDir } from '../../support/qemu';

const MiB = 1024 * 1024;

/**
 * Runs the deletion in a child process and, with `killAt`, kills it once the layer the merge copies into has grown
 * by `killAt.bytes`: the kill then lands inside the copying, whatever the speed of the disk. Returns whether it was
 * killed.
 */
async function runDeletion(child: string, dir: string, killAt: { file: string; bytes: number } | null): Promise<boolean> {
  const p = spawn(process.execPath, [child, dir, 'delete-big-merge'], { stdio: 'ignore' });
  let done = false;
  const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => ((done = true), resolve(code))));
  if (killAt !== null) {
    const start = statSync(killAt.file).size;
    while (!done && (!existsSync(killAt.file) || statSync(killAt.file).size < start + killAt.bytes)) await new Promise((r) => setTimeout(r, 1));
  }
  const killed = !done && killAt !== null && p.kill('SIGKILL');
  const code = await exited;
  if (!killed) assert.equal(code, 0, 'the deletion failed');
  return killed;
}

/** Every qcow2 layer of the folder passes qemu-img check. */
function checkClean(folder: string): void {
  for (const f of readdirSync(folder).filter((x) => x.endsWith('.qcow2'))) {
    const r = spawnSync('qemu-img', ['check', '-U', join(folder, f)], { encoding: 'utf8' });
    assert.equal(r.status, 0, `qemu-img check ${f}: ${r.stdout}${r.stderr}`);
  }
}

/** qemu-img compare: the two images (with their chains) read the same, byte for byte. */
function same(a: string, b: string, what: string): void {
  const r = spawnSync('qemu-img', ['compare', '-U', a, b], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${what} differs: ${r.stdout}${r.stderr}`);
}

describe('machine library crash safety: killed inside a big merge', function () {
  this.timeout(900_000);
  let scratch: ReturnType<typeof scratchDir>;
  let child: string;

  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
    scratch = scratchDir('vmsnap-crash-merge-');
    child = join(scratch.dir, 'crash-child.js');
    buildSync({ entryPoints: [join(__dirname, 'crash-child.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: child, logLevel: 'warning' });
  });
  after(() => scratch?.cleanup());

  // Deleting A, B its only child: B is committed into A when B holds less (commit), else rebased onto nothing.
  for (const [strategy, aMiB, bMiB] of [['commit', 320, 256], ['rebase', 256, 320]] as const) {
    it(`${strategy}: a kill in the middle of copying ${strategy === 'commit' ? bMiB : aMiB} MiB reopens to before or after`, async () => {
      const template = join(scratch.dir, `template-${strategy}`);
      const lib = await Library.open(template);
      await lib.createMachine('big', { diskSize: 1024 * MiB });
      const write = async (pattern: number, offsetMiB: number, lengthMiB: number): Promise<void> => {
        execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} ${offsetMiB}M ${lengthMiB}M`, await lib.diskPath('big')]);
      };
      await write(1, 0, aMiB);
      await lib.takeSnapshot('big', 'A');
      await write(2, 512, bMiB);
      await lib.takeSnapshot('big', 'B');
      await write(3, 1000, 1);
      const before = await lib.show('big');
      const layerOf = (m: MachineDetails, name: string): string | undefined => m.snapshots.find((s) => s.name === name)?.layers[0];

      // Uninterrupted, the deletion is the merge the test means.
      const whole = join(scratch.dir, 'whole');
      execFileSync('cp', ['-a', template, whole]);
      await runDeletion(child, whole, null);
      assert.deepEqual((await (await Library.open(whole)).show('big')).snapshots.map((s) => s.name), ['B']);
      execFileSync('rm', ['-rf', whole]);
      const copied = (strategy === 'commit' ? bMiB : aMiB) * MiB;

      const outcomes: string[] = [];
      for (const fraction of [0.25, 0.5, 0.75]) {
        const work = join(scratch.dir, 'work');
        execFileSync('rm', ['-rf', work]);
        execFileSync('cp', ['-a', template, work]);
        const folder = join(work, before.folder.split('/').pop()!);
        // A commit copies B into A's layer; a rebase copies A into B's.
        const target = join(folder, layerOf(before, strategy === 'commit' ? 'A' : 'B')!.split('/').pop()!);
        const killed = await runDeletion(child, work, { file: target, bytes: Math.round(copied * fraction) });
        const reopened = await Library.open(work);
        const m = await reopened.show('big');
        const which = m.snapshots.length === 2 ? 'before' : 'after';
        outcomes.push(`${fraction}:${killed ? 'killed' : 'finished'}:${which}`);
        assert.deepEqual(m.snapshots.map((s) => s.name), which === 'before' ? ['A', 'B'] : ['B']);
        const here = (p: string): string => join(folder, p.split('/').pop()!);
        same(layerOf(before, 'B')!, here(layerOf(m, 'B')!), 'snapshot B');
        if (which === 'before') same(layerOf(before, 'A')!, here(layerOf(m, 'A')!), 'snapshot A');
        same(before.disks[0]!.path, here(m.disks[0]!.path), 'the current state');
        checkClean(folder);
        assert.deepEqual(readdirSync(folder).filter((f) => f.startsWith('.') || f === 'operation.json' || f === 'machine.lock'), [], 'leftovers');
      }
      if (process.env.VMSNAP_TEST_VERBOSE) console.log(`${strategy}: ${outcomes.join(' ')}`);
      assert.ok(outcomes.every((o) => o.includes('killed')), `too few kills landed inside the merge: ${outcomes.join(' ')}`);
      execFileSync('rm', ['-rf', template]);
    });
  }
});
