// The chain operations (flatten, commit, rebase, compare, changedRanges) against QEMU as the oracle: fixtures
// are made with qemu-img/qemu-io, results are checked with qemu-img convert/compare/check, and the same
// operation done by qemu-img on a twin copy must give the same disk.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { isImageError } from '../../../src/engine/qcow2/errors';
import { changedRanges, commit, compare, flatten, rebase, rollBackInterruptedCommit, rollBackInterruptedRebase } from '../../../src/engine/qcow2/ops';
import { convertToRaw, createQcow2, createRaw, expectImageError, type GuestOp, KiB, MiB, qemuApply, readBytes } from '../../support/fixtures';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, qemuSame, requireTool, runStatus, scratchDir, sha256File } from '../../support/qemu';

type Scratch = ReturnType<typeof scratchDir>;

interface Chain {
  dir: string;
  base: string; // raw
  mid: string; // qcow2 on base
  top: string; // qcow2 on mid, with an internal snapshot "snap1"
}

/**
 * base.raw <- mid.qcow2 <- top.qcow2, with data in every layer, zero clusters, discards, an unaligned write, a
 * range big enough for several chunks, and an internal snapshot of top taken before its last writes.
 * Backing names are relative, so a copied folder is an independent twin.
 */
function buildChain(dir: string, withSnapshot = true): Chain {
  mkdirSync(dir, { recursive: true });
  const c: Chain = { dir, base: join(dir, 'base.raw'), mid: join(dir, 'mid.qcow2'), top: join(dir, 'top.qcow2') };
  createRaw(c.base, 48 * MiB);
  qemuApply(c.base, [w(0x11, 0, 8 * MiB), w(0x12, 20 * MiB, 4 * MiB)], 'raw');
  createQcow2(c.mid, { backing: 'base.raw', backingFormat: 'raw' });
  qemuApply(c.mid, [w(0x21, 4 * MiB, 8 * MiB), z(1 * MiB, 1 * MiB), d(20 * MiB, 1 * MiB)]);
  createQcow2(c.top, { backing: 'mid.qcow2', backingFormat: 'qcow2' });
  qemuApply(c.top, [
    w(0x31, 6 * MiB, 3 * MiB),
    z(22 * MiB, 512 * KiB),
    w(0x32, 30 * MiB + 1000, 100 * KiB),
    d(5 * MiB, 64 * KiB),
    w(0x34, 36 * MiB, 10 * MiB),
  ]);
  if (withSnapshot) qemuImg('snapshot', '-c', 'snap1', c.top);
  qemuApply(c.top, [w(0x33, 6 * MiB, 1 * MiB), z(40 * MiB, 1 * MiB)]);
  return c;
}

function w(pattern: number, offset: number, length: number): GuestOp {
  return { kind: 'write', offset, length, pattern };
}
function z(offset: number, length: number): GuestOp {
  return { kind: 'zero', offset, length };
}
function d(offset: number, length: number): GuestOp {
  return { kind: 'discard', offset, length };
}

/** What a chain reads, as the sha256 of `qemu-img convert -O raw`. */
function contentOf(image: string, snapshot?: string): string {
  const raw = `${image}.${Date.now()}-${Math.random().toString(36).slice(2)}.raw`;
  convertToRaw(image, raw, snapshot);
  try {
    return sha256File(raw);
  } finally {
    spawnSync('rm', ['-f', raw]);
  }
}

/** qemu-img check finds nothing (no corruption, no leaks) and the dirty bit is clear. */
function expectClean(image: string): void {
  const r = qemuCheck(image);
  assert.equal(r.corruptions, 0, `${image} has corruptions: ${r.raw}`);
  assert.equal(r.leaks, 0, `${image} leaks clusters: ${r.raw}`);
  assert.equal(r.checkErrors, 0, `${image}: check errors: ${r.raw}`);
  assert.equal(r.status, 0, `${image}: qemu-img check status ${r.status}`);
  assert.notEqual(qemuInfo(image)['dirty-flag'], true, `${image} is left dirty`);
}

/** Bytes qemu-img map says the top layer itself (depth 0) holds as data. */
function topLayerData(image: string): number {
  const entries = JSON.parse(qemuImg('map', '-U', '--output=json', image)) as { length: number; depth: number; data: boolean; present: boolean }[];
  return entries.filter((e) => e.depth === 0 && e.present && e.data).reduce((n, e) => n + e.length, 0);
}

/**
 * Runs `op` on `top` in a child process that kills itself (SIGKILL) at its `atChunk`th progress report with data,
 * then checks that `changed` was changed and kept its undo journal, and that `rollBack` puts it back, once: byte
 * for byte, or (`asBefore`: a commit into an image with free clusters, which the commit may fill) reading what it
 * did before with no leaks.
 */
async function killHalfwayThenRollBack(
  op: 'commit' | 'rebase',
  top: string,
  atChunk: number,
  changed: string,
  rollBack: (file: string) => Promise<boolean>,
  restored: 'byte for byte' | 'as before' = 'byte for byte',
): Promise<{ journalBytes: number }> {
  const sha = sha256File(changed);
  const before = `${changed}.before`;
  cpSync(changed, before);
  const script = join(dirname(top), `kill-${op}.ts`);
  writeFileSync(
    script,
    `import { ${op} } from ${JSON.stringify(resolve('src/engine/qcow2/ops/index.ts'))};\n` +
      `let chunks = 0;\n` +
      `void ${op}(process.argv[2]!, ${op === 'rebase' ? 'null, ' : ''}{ onProgress: (done) => { if (done > 0 && ++chunks === ${atChunk}) process.kill(process.pid, 'SIGKILL'); } });\n`,
  );
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, top], { encoding: 'utf8' });
  assert.equal(r.signal, 'SIGKILL', `the child was to be killed mid-${op}: ${r.stderr}`);
  assert.ok(existsSync(`${changed}.vmsnap-undo`), 'the journal survives the crash');
  const journalBytes = statSync(`${changed}.vmsnap-undo`).size;
  assert.notEqual(sha256File(changed), sha, `the crash happened after ${changed} was changed`);
  assert.equal(await rollBack(changed), true);
  if (restored === 'byte for byte') assert.equal(sha256File(changed), sha, 'rolled back byte for byte');
  assert.ok(qemuSame(changed, before), 'reads as before');
  expectClean(changed);
  assert.equal(await rollBack(changed), false, 'nothing left to roll back');
  return { journalBytes };
}

/** Host offset of guest `offset` in the qcow2 layer `image` itself (qemu-img map), or null if it holds none there. */
function hostOffset(image: string, offset: number): number | null {
  const map = JSON.parse(qemuImg('map', '-U', '--output=json', image)) as { start: number; length: number; depth: number; offset?: number }[];
  const e = map.find((x) => x.start <= offset && offset < x.start + x.length && x.depth === 0 && x.offset !== undefined);
  return e === undefined ? null : e.offset! + (offset - e.start);
}

function abortAfterFirstChunk(): { controller: AbortController; onProgress: (done: number, total: number) => void; calls: () => number } {
  const controller = new AbortController();
  let calls = 0;
  return {
    controller,
    calls: () => calls,
    onProgress: (done, total) => {
      calls++;
      if (done > 0 && done < total) controller.abort();
    },
  };
}

describe('qcow2 chain operations, checked against qemu-img', function () {
  this.timeout(120_000);
  let s: Scratch;
  let n = 0;
  const fresh = (withSnapshot = true): Chain => buildChain(s.path(`case-${++n}`), withSnapshot);

  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
    s = scratchDir('vmsnap-ops-');
  });
  after(() => s.cleanup());

  describe('flatten', () => {
    it('writes a standalone image that reads exactly like the whole chain (qemu-img convert -O raw)', async () => {
      const c = fresh();
      const before = [sha256File(c.base), sha256File(c.mid), sha256File(c.top)];
      const out = join(c.dir, 'full.qcow2');
      const progress: number[] = [];
      const result = await flatten(c.top, out, { onProgress: (done) => progress.push(done) });
      assert.equal(result.path, out);
      assert.equal(contentOf(out), contentOf(c.top));
      assert.ok(qemuSame(out, c.top));
      const info = qemuInfo(out);
      assert.equal(info['backing-filename'], undefined, 'the copy has no backing file');
      assert.equal(info['virtual-size'], 48 * MiB);
      assert.equal(info['cluster-size'], 65536);
      assert.equal(info['format-specific']?.data?.compat, '1.1');
      expectClean(out);
      assert.deepEqual([sha256File(c.base), sha256File(c.mid), sha256File(c.top)], before, 'the chain is only read');
      assert.ok(progress.length >= 3, 'progress is reported chunk by chunk');
      assert.deepEqual([...progress].sort((a, b) => a - b), progress, 'progress only grows');
    });

    it('stores no more data than qemu-img convert -O qcow2 (zero and unallocated ranges are not written)', async () => {
      const c = fresh();
      const ours = join(c.dir, 'ours.qcow2');
      const theirs = join(c.dir, 'theirs.qcow2');
      await flatten(c.top, ours);
      qemuImg('convert', '-O', 'qcow2', c.top, theirs);
      assert.ok(topLayerData(ours) <= topLayerData(theirs), `ours holds ${topLayerData(ours)} bytes of data, qemu ${topLayerData(theirs)}`);
    });

    it('flattens an internal snapshot (qemu-img snapshot -c) instead of the current state', async () => {
      const c = fresh();
      const out = join(c.dir, 'snap.qcow2');
      await flatten(c.top, out, { snapshot: 'snap1' });
      assert.equal(contentOf(out), contentOf(c.top, 'snap1'));
      assert.notEqual(contentOf(out), contentOf(c.top), 'the snapshot differs from the current state');
      expectClean(out);
      await expectImageError(() => flatten(c.top, join(c.dir, 'x.qcow2'), { snapshot: 'nope' }), 'SNAPSHOT_NOT_FOUND', 'unknown snapshot');
      assert.equal(existsSync(join(c.dir, 'x.qcow2')), false);
    });

    it('honours another cluster size and flattens a raw image', async () => {
      const c = fresh();
      const small = join(c.dir, 'small.qcow2');
      await flatten(c.top, small, { clusterSize: 4096 });
      assert.equal(qemuInfo(small)['cluster-size'], 4096);
      assert.ok(qemuSame(small, c.top));
      expectClean(small);
      const fromRaw = join(c.dir, 'from-raw.qcow2');
      await flatten(c.base, fromRaw);
      assert.equal(contentOf(fromRaw), sha256File(c.base));
      expectClean(fromRaw);
    });

    it('refuses an existing destination unless told to overwrite, and never overwrites a layer of the chain', async () => {
      const c = fresh();
      const out = join(c.dir, 'exists.qcow2');
      writeFileSync(out, 'keep me');
      await expectImageError(() => flatten(c.top, out), 'INVALID_ARGUMENT', 'existing destination');
      assert.equal(sha256File(out), sha256File(writeAndReturn(join(c.dir, 'ref'), 'keep me')));
      await flatten(c.top, out, { overwrite: true });
      assert.ok(qemuSame(out, c.top));
      const mid = sha256File(c.mid);
      await expectImageError(() => flatten(c.top, c.mid, { overwrite: true }), 'INVALID_ARGUMENT', 'destination inside the chain');
      assert.equal(sha256File(c.mid), mid);
    });

    it('cancelled halfway leaves neither the destination nor a temporary file', async () => {
      const c = fresh();
      const out = join(c.dir, 'cancelled.qcow2');
      const filesBefore = readdirSync(c.dir).sort();
      const a = abortAfterFirstChunk();
      const err = await expectImageError(() => flatten(c.top, out, { signal: a.controller.signal, onProgress: a.onProgress }), 'ABORTED', 'abort');
      assert.match(err.message, /cancelled/);
      assert.equal(existsSync(out), false);
      assert.deepEqual(readdirSync(c.dir).sort(), filesBefore, 'no temporary file is left');
      await expectImageError(() => flatten(c.top, out, { signal: AbortSignal.abort() }), 'ABORTED', 'already aborted');
      assert.equal(existsSync(out), false);
    });
  });

  describe('commit', () => {
    it('merges the top into its backing image exactly as qemu-img commit does, and empties the top', async () => {
      const a = fresh(false);
      const b = buildTwin(a, s.path(`twin-${n}`));
      const baseSha = sha256File(a.base);
      const result = await commit(a.top);
      qemuImg('commit', '-q', b.top);
      assert.equal(result.base, a.mid);
      assert.ok(qemuSame(a.mid, b.mid), 'the backing image holds what qemu-img commit puts there');
      assert.ok(qemuSame(a.top, b.top), 'the top still reads the same');
      assert.equal(contentOf(a.top), contentOf(b.top));
      assert.equal(topLayerData(a.top), 0, 'the top is empty');
      assert.equal(existsSync(`${a.mid}.vmsnap-undo`), false, 'the undo journal is removed');
      assert.equal(sha256File(a.base), baseSha, 'the layer below the backing image is untouched');
      expectClean(a.mid);
      expectClean(a.top);
    });

    it('commits into a raw backing file byte for byte like qemu-img commit', async () => {
      const a = fresh();
      const b = buildTwin(a, s.path(`twin-${n}`));
      await commit(a.mid);
      qemuImg('commit', '-q', b.mid);
      assert.equal(sha256File(a.base), sha256File(b.base));
      assert.ok(qemuSame(a.top, b.top));
      expectClean(a.mid);
    });

    it('keepTop leaves the top as it is (qemu-img commit -d)', async () => {
      const a = fresh();
      const b = buildTwin(a, s.path(`twin-${n}`));
      const topSha = sha256File(a.top);
      await commit(a.top, { keepTop: true });
      qemuImg('commit', '-q', '-d', b.top);
      assert.equal(sha256File(a.top), topSha);
      assert.ok(qemuSame(a.mid, b.mid));
      expectClean(a.mid);
    });

    it('copies partial clusters of a backing image with larger clusters from its own chain', async () => {
      const dir = s.path(`partial-${++n}`);
      mkdirSync(dir);
      const base = join(dir, 'base.qcow2');
      const over = join(dir, 'over.qcow2');
      const top = join(dir, 'top.qcow2');
      createQcow2(base, { size: 8 * MiB });
      qemuApply(base, [w(0x41, 0, 8 * MiB)]);
      createQcow2(over, { backing: 'base.qcow2', clusterSize: 65536 });
      createQcow2(top, { backing: 'over.qcow2', clusterSize: 4096 });
      qemuApply(top, [w(0x42, 4096, 4096), w(0x43, 1 * MiB + 512, 700), z(2 * MiB + 8192, 4096)]);
      const expected = contentOf(top);
      const baseSha = sha256File(base);
      await commit(top);
      assert.equal(contentOf(top), expected);
      assert.equal(contentOf(over), expected, 'the backing image now reads what the top did');
      assert.equal(sha256File(base), baseSha);
      expectClean(over);
      expectClean(top);
    });

    it('cancelled halfway leaves the backing image byte for byte and the top unchanged', async () => {
      const c = fresh(false);
      const [midSha, topSha, baseSha] = [sha256File(c.mid), sha256File(c.top), sha256File(c.base)];
      const a = abortAfterFirstChunk();
      await expectImageError(() => commit(c.top, { signal: a.controller.signal, onProgress: a.onProgress }), 'ABORTED', 'abort');
      assert.ok(a.calls() >= 2, 'the abort came after data was written');
      assert.equal(sha256File(c.mid), midSha);
      assert.equal(sha256File(c.top), topSha);
      assert.equal(sha256File(c.base), baseSha);
      assert.equal(existsSync(`${c.mid}.vmsnap-undo`), false);
      // Also into a raw backing file.
      const b = abortAfterFirstChunk();
      await expectImageError(() => commit(c.mid, { signal: b.controller.signal, onProgress: b.onProgress }), 'ABORTED', 'abort raw');
      assert.equal(sha256File(c.base), baseSha);
      assert.equal(sha256File(c.mid), midSha);
    });

    it('an error halfway puts the backing image back', async () => {
      const c = fresh(false);
      const midSha = sha256File(c.mid);
      let calls = 0;
      const boom = new Error('progress sink failed');
      await assert.rejects(
        commit(c.top, {
          onProgress: (done) => {
            if (done > 0 && ++calls === 2) throw boom;
          },
        }),
        (e: unknown) => e === boom,
      );
      assert.equal(sha256File(c.mid), midSha);
      assert.ok(qemuSame(c.top, c.top));
      expectClean(c.mid);
    });

    it('a commit killed halfway is rolled back from its journal and can be run again', async () => {
      const a = fresh(false);
      const b = buildTwin(a, s.path(`twin-${n}`));
      await killHalfwayThenRollBack('commit', a.top, 2, a.mid, rollBackInterruptedCommit);
      await commit(a.top);
      qemuImg('commit', '-q', b.top);
      assert.ok(qemuSame(a.mid, b.mid));
      expectClean(a.mid);
    });

    it('puts the data into new clusters of a qcow2 backing image: what the top replaces is freed, not overwritten, and reused next time', async () => {
      const a = fresh(false);
      const b = buildTwin(a, s.path(`twin-${n}`));
      // mid holds 0x21 at 4-12 MiB; the top writes 6-9 MiB and 36-46 MiB.
      const oldHost = hostOffset(a.mid, 7 * MiB)!;
      assert.deepEqual(readBytes(a.mid, oldHost, 4), Buffer.alloc(4, 0x21));
      await commit(a.top);
      qemuImg('commit', '-q', b.top);
      assert.ok(qemuSame(a.mid, b.mid), 'the backing image holds what qemu-img commit puts there');
      assert.notEqual(hostOffset(a.mid, 7 * MiB), oldHost, 'the guest range moved to a new cluster');
      assert.deepEqual(readBytes(a.mid, oldHost, 4), Buffer.alloc(4, 0x21), 'the replaced cluster was not written');
      expectClean(a.mid);

      // A second top over the same range: the freed clusters take its data, the file hardly grows.
      const grown = statSync(a.mid).size;
      const top2 = join(a.dir, 'top2.qcow2');
      createQcow2(top2, { backing: 'mid.qcow2', backingFormat: 'qcow2' });
      qemuApply(top2, [w(0x35, 6 * MiB, 3 * MiB)]);
      const expected = contentOf(top2);
      await commit(top2);
      assert.equal(contentOf(a.mid), expected);
      assert.ok(statSync(a.mid).size - grown < 1 * MiB, `the freed 3 MiB were reused (the file grew by ${statSync(a.mid).size - grown} bytes)`);
      expectClean(a.mid);
    });

    it('killed halfway while filling free clusters, the backing image reads as before after the roll-back', async () => {
      const a = fresh(false);
      await commit(a.top); // leaves free clusters in mid
      const top2 = join(a.dir, 'top2.qcow2');
      createQcow2(top2, { backing: 'mid.qcow2', backingFormat: 'qcow2' });
      qemuApply(top2, [w(0x36, 2 * MiB, 12 * MiB), w(0x37, 30 * MiB, 8 * MiB)]);
      const expected = contentOf(top2);
      const { journalBytes } = await killHalfwayThenRollBack('commit', top2, 2, a.mid, rollBackInterruptedCommit, 'as before');
      assert.ok(journalBytes < 1 * MiB, `the journal holds the tables only, not 20 MiB of data (${journalBytes} bytes)`);
      await commit(top2);
      assert.equal(contentOf(a.mid), expected);
      expectClean(a.mid);
    });

    it('refuses to empty a top with internal snapshots before touching the backing image', async () => {
      const c = fresh();
      const [midSha, topSha] = [sha256File(c.mid), sha256File(c.top)];
      const err = await expectImageError(() => commit(c.top), 'INVALID_ARGUMENT', 'internal snapshots');
      assert.match(err.message, /internal snapshots/);
      assert.deepEqual([sha256File(c.mid), sha256File(c.top)], [midSha, topSha]);
    });

    it('refuses a layer without a backing file', async () => {
      const dir = s.path(`lone-${++n}`);
      mkdirSync(dir);
      const lone = join(dir, 'lone.qcow2');
      createQcow2(lone, { size: MiB });
      await expectImageError(() => commit(lone), 'INVALID_ARGUMENT', 'no backing file');
    });
  });

  describe('rebase', () => {
    it('onto a lower layer of the chain (deleting a snapshot layer): content, backing and the other layers as qemu-img rebase', async () => {
      const a = fresh();
      const b = buildTwin(a, s.path(`twin-${n}`));
      const expected = contentOf(a.top);
      const [baseSha, midSha] = [sha256File(a.base), sha256File(a.mid)];
      const result = await rebase(a.top, a.base);
      qemuImg('rebase', '-q', '-b', 'base.raw', '-F', 'raw', b.top);
      assert.equal(result.fastPath, true);
      assert.ok(result.copiedBytes > 0);
      assert.equal(contentOf(a.top), expected, 'the top reads exactly as before');
      assert.ok(qemuSame(a.top, b.top));
      const info = qemuInfo(a.top);
      assert.equal(info['backing-filename'], 'base.raw');
      assert.equal(info['backing-filename-format'], 'raw');
      assert.deepEqual([sha256File(a.base), sha256File(a.mid)], [baseSha, midSha], 'backing files are only read');
      expectClean(a.top);
      assert.equal(contentOf(a.top, 'snap1'), contentOf(b.top, 'snap1'), 'the internal snapshot is untouched');
    });

    it('onto nothing makes the top standalone with the same content', async () => {
      const a = fresh();
      const b = buildTwin(a, s.path(`twin-${n}`));
      const expected = contentOf(a.top);
      const result = await rebase(a.top, null);
      qemuImg('rebase', '-q', '-b', '', b.top);
      assert.equal(result.fastPath, true);
      assert.equal(contentOf(a.top), expected);
      assert.ok(qemuSame(a.top, b.top));
      assert.equal(qemuInfo(a.top)['backing-filename'], undefined);
      expectClean(a.top);
    });

    it('onto an unrelated image compares both chains and keeps the content', async () => {
      const a = fresh();
      const other = join(a.dir, 'other.qcow2');
      createQcow2(other, { size: 48 * MiB });
      qemuApply(other, [w(0x11, 0, 2 * MiB), w(0x77, 10 * MiB, 4 * MiB), w(0x21, 4 * MiB, 1 * MiB)]);
      const expected = contentOf(a.top);
      const otherSha = sha256File(other);
      const result = await rebase(a.top, other);
      assert.equal(result.fastPath, false);
      assert.equal(contentOf(a.top), expected);
      assert.equal(qemuInfo(a.top)['backing-filename'], 'other.qcow2');
      assert.equal(sha256File(other), otherSha);
      expectClean(a.top);
    });

    it('cancelled halfway puts the layer back byte for byte, with its old backing file', async () => {
      const a = fresh();
      const sha = sha256File(a.top);
      const c = abortAfterFirstChunk();
      await expectImageError(() => rebase(a.top, null, { signal: c.controller.signal, onProgress: c.onProgress }), 'ABORTED', 'abort');
      assert.equal(sha256File(a.top), sha);
      assert.equal(qemuInfo(a.top)['backing-filename'], 'mid.qcow2');
      assert.ok(!existsSync(`${a.top}.vmsnap-undo`), 'no undo journal left');
      expectClean(a.top);
    });

    it('killed halfway, is put back byte for byte from its undo journal and can be run again', async () => {
      const a = fresh();
      const b = buildTwin(a, s.path(`twin-${n}`));
      await killHalfwayThenRollBack('rebase', a.top, 1, a.top, rollBackInterruptedRebase);
      await rebase(a.top, null);
      qemuImg('rebase', '-q', '-b', '', b.top);
      assert.ok(qemuSame(a.top, b.top));
      expectClean(a.top);
    });

    it('killed halfway in a layer with free clusters, reads as before; its journal holds only the tables', async () => {
      const a = fresh(false);
      await commit(a.top); // leaves free clusters in mid
      const expected = contentOf(a.mid);
      const { journalBytes } = await killHalfwayThenRollBack('rebase', a.mid, 2, a.mid, rollBackInterruptedRebase, 'as before');
      assert.ok(journalBytes < 1 * MiB, `the journal holds the tables only (${journalBytes} bytes)`);
      await rebase(a.mid, null);
      assert.equal(contentOf(a.mid), expected);
      assert.equal(qemuInfo(a.mid)['backing-filename'], undefined);
      expectClean(a.mid);
    });

    it('deleting a middle layer costs what that layer holds, not the disk size (100 GiB virtual)', async () => {
      const dir = s.path(`huge-${++n}`);
      mkdirSync(dir);
      const [base, mid, top] = ['base.qcow2', 'mid.qcow2', 'top.qcow2'].map((f) => join(dir, f)) as [string, string, string];
      createQcow2(base, { size: 100 * 1024 * MiB });
      qemuApply(base, [w(0x11, 0, MiB), w(0x12, 70 * 1024 * MiB, MiB)]);
      createQcow2(mid, { backing: 'base.qcow2' });
      qemuApply(mid, [w(0x21, 512 * KiB, MiB), z(70 * 1024 * MiB, 64 * KiB), w(0x22, 90 * 1024 * MiB, 2 * MiB)]);
      createQcow2(top, { backing: 'mid.qcow2' });
      qemuApply(top, [w(0x31, 0, 64 * KiB), w(0x32, 90 * 1024 * MiB, MiB)]);
      cpSync(dir, `${dir}-before`, { recursive: true });
      let total = -1;
      const result = await rebase(top, base, { onProgress: (_done, all) => (total = all) });
      assert.equal(result.fastPath, true);
      assert.ok(total <= 4 * MiB, `only the middle layer's ranges are read (${total} bytes planned)`);
      assert.equal(qemuInfo(top)['backing-filename'], 'base.qcow2');
      assert.ok(qemuSame(join(`${dir}-before`, 'top.qcow2'), top), 'the top reads as before');
      qemuIo(top, [
        `read -q -P 0x31 0 ${64 * KiB}`,
        `read -q -P 0x11 ${64 * KiB} ${448 * KiB}`,
        `read -q -P 0x21 ${512 * KiB} ${MiB}`,
        `read -q -P 0 ${70 * 1024 * MiB} ${64 * KiB}`,
        `read -q -P 0x12 ${70 * 1024 * MiB + 64 * KiB} ${MiB - 64 * KiB}`,
        `read -q -P 0x22 ${90 * 1024 * MiB + MiB} ${MiB}`,
      ]);
      expectClean(top);
    });

    it('refuses a new backing file that would make a loop', async () => {
      const a = fresh();
      const midSha = sha256File(a.mid);
      await expectImageError(() => rebase(a.mid, a.top), 'BACKING_LOOP', 'loop');
      assert.equal(sha256File(a.mid), midSha);
    });
  });

  describe('compare', () => {
    it('agrees with qemu-img compare on identical, different and differently sized disks', async () => {
      const c = fresh();
      const copy = join(c.dir, 'copy.qcow2');
      const raw = join(c.dir, 'copy.raw');
      qemuImg('convert', '-O', 'qcow2', c.top, copy);
      qemuImg('convert', '-O', 'raw', c.top, raw);
      assert.deepEqual(await compare(c.top, copy), { identical: true, firstDifference: null });
      assert.deepEqual(await compare(copy, raw), { identical: true, firstDifference: null });
      assert.equal(runStatus('qemu-img', ['compare', c.top, copy]).status, 0);

      qemuApply(copy, [w(0x55, 5 * MiB + 123, 1)]);
      assert.deepEqual(await compare(c.top, copy), { identical: false, firstDifference: 5 * MiB + 123 });
      assert.equal(runStatus('qemu-img', ['compare', c.top, copy]).status, 1);

      // Zeros written as data read the same as nothing at all.
      const zeros = join(c.dir, 'zeros.qcow2');
      const empty = join(c.dir, 'empty.qcow2');
      createQcow2(zeros, { size: 8 * MiB });
      createQcow2(empty, { size: 8 * MiB });
      qemuApply(zeros, [w(0, 0, 4 * MiB)]);
      assert.equal((await compare(zeros, empty)).identical, true);
      assert.equal(runStatus('qemu-img', ['compare', zeros, empty]).status, 0);

      // Different sizes: the extra part must read as zeros.
      const small = join(c.dir, 'small.qcow2');
      const big = join(c.dir, 'big.qcow2');
      createQcow2(small, { size: 16 * MiB });
      createQcow2(big, { size: 32 * MiB });
      qemuApply(small, [w(0x66, 0, MiB)]);
      qemuApply(big, [w(0x66, 0, MiB), z(20 * MiB, MiB)]);
      assert.deepEqual(await compare(small, big), { identical: true, firstDifference: null });
      assert.equal(runStatus('qemu-img', ['compare', small, big]).status, 0);
      qemuApply(big, [w(0x67, 20 * MiB + 7, 3)]);
      assert.deepEqual(await compare(big, small), { identical: false, firstDifference: 20 * MiB + 7 });
      assert.equal(runStatus('qemu-img', ['compare', big, small]).status, 1);
    });

    it('can be cancelled', async () => {
      const c = fresh();
      const copy = join(c.dir, 'copy.qcow2');
      qemuImg('convert', '-O', 'qcow2', c.top, copy);
      const a = abortAfterFirstChunk();
      await expectImageError(() => compare(c.top, copy, { signal: a.controller.signal, onProgress: a.onProgress }), 'ABORTED', 'abort');
    });
  });

  describe('changedRanges', () => {
    /** base <- s1, then two branches a and b on s1 with known writes. */
    function branches(): { dir: string; base: string; s1: string; a: string; b: string } {
      const dir = s.path(`branches-${++n}`);
      mkdirSync(dir);
      const f = { dir, base: join(dir, 'base.qcow2'), s1: join(dir, 's1.qcow2'), a: join(dir, 'a.qcow2'), b: join(dir, 'b.qcow2') };
      createQcow2(f.base, { size: 32 * MiB });
      qemuApply(f.base, [w(0x11, 0, 4 * MiB)]);
      createQcow2(f.s1, { backing: 'base.qcow2' });
      qemuApply(f.s1, [w(0x22, 4 * MiB, MiB)]);
      createQcow2(f.a, { backing: 's1.qcow2' });
      qemuApply(f.a, [w(0x33, 8 * MiB, 64 * KiB), z(1 * MiB, 64 * KiB)]);
      createQcow2(f.b, { backing: 's1.qcow2' });
      // The last two writes store what the chain already reads: allocated, but not a real change.
      qemuApply(f.b, [w(0x44, 16 * MiB, 128 * KiB), w(0x22, 4 * MiB, 64 * KiB), w(0x11, 2 * MiB + 4 * KiB, 4 * KiB)]);
      return f;
    }

    it('between two branches of a shared layer: what either side wrote since, from allocation maps', async () => {
      const f = branches();
      const r = await changedRanges(f.a, f.b);
      assert.equal(r.sharedLayer, realpathSync(f.s1));
      assert.deepEqual(r.ranges, [
        { offset: 1 * MiB, length: 64 * KiB },
        { offset: 2 * MiB, length: 64 * KiB },
        { offset: 4 * MiB, length: 64 * KiB },
        { offset: 8 * MiB, length: 64 * KiB },
        { offset: 16 * MiB, length: 128 * KiB },
      ]);
      assert.equal(r.bytes, 6 * 64 * KiB);
    });

    it('exact: only bytes that really differ', async () => {
      const f = branches();
      const r = await changedRanges(f.a, f.b, { exact: true });
      assert.deepEqual(r.ranges, [
        { offset: 1 * MiB, length: 64 * KiB },
        { offset: 8 * MiB, length: 64 * KiB },
        { offset: 16 * MiB, length: 128 * KiB },
      ]);
      assert.equal(r.bytes, 256 * KiB);
    });

    it('between a snapshot and a later state: the later layers only', async () => {
      const f = branches();
      const r = await changedRanges(f.s1, f.a);
      assert.deepEqual(r.ranges, [
        { offset: 1 * MiB, length: 64 * KiB },
        { offset: 8 * MiB, length: 64 * KiB },
      ]);
      const same = await changedRanges(f.a, f.a);
      assert.deepEqual(same.ranges, []);
    });

    it('falls back to both whole chains when they share no layer', async () => {
      const f = branches();
      const lone = join(f.dir, 'lone.qcow2');
      createQcow2(lone, { size: 32 * MiB });
      qemuApply(lone, [w(0x11, 0, 64 * KiB)]);
      const r = await changedRanges(lone, f.s1);
      assert.equal(r.sharedLayer, null);
      assert.deepEqual(r.ranges, [{ offset: 0, length: 5 * MiB }]);
      const exact = await changedRanges(lone, f.s1, { exact: true });
      assert.deepEqual(exact.ranges, [{ offset: 64 * KiB, length: 5 * MiB - 64 * KiB }]);
    });
  });

  it('errors are ImageErrors with a code', async () => {
    const err = await flatten(s.path('missing.qcow2'), s.path('out.qcow2')).catch((e: unknown) => e);
    assert.ok(isImageError(err) && err.code === 'NOT_FOUND', String(err));
  });
});

/** A copy of a chain's folder (relative backing names keep it independent). */
function buildTwin(c: Chain, dir: string): Chain {
  cpSync(c.dir, dir, { recursive: true });
  return { dir, base: join(dir, 'base.raw'), mid: join(dir, 'mid.qcow2'), top: join(dir, 'top.qcow2') };
}

function writeAndReturn(path: string, text: string): string {
  writeFileSync(path, text);
  return path;
}
