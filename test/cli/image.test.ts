// `vmsnap image ...` end to end: the built binary, checked against qemu-img and qemu-io.
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, openSync, readdirSync, readSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, qemuSame, requireTool, runStatus, scratchDir } from '../support/qemu';
import { damagedSnapshotTable, shortCompressedImage, v2ZeroFlagImage } from '../engine/qcow2/damaged-fixtures';
import { buildCli, interruptWhen, isOneSentence, vmsnap, vmsnapJson } from './vmsnap';

const MiB = 1024 * 1024;

/** Reads a big-endian u64 from a file. */
function readU64(file: string, at: number): bigint {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(8);
    readSync(fd, b, 0, 8, at);
    return b.readBigUInt64BE(0);
  } finally {
    closeSync(fd);
  }
}

function writeU64(file: string, at: number, value: bigint): void {
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(value);
    writeSync(fd, b, 0, 8, at);
  } finally {
    closeSync(fd);
  }
}

/** The host offset of the first L2 table of a qcow2 file (the L1 table's offset is at byte 40 of the header). */
function firstL2Table(file: string): number {
  const l1 = Number(readU64(file, 40));
  return Number(readU64(file, l1) & 0x00ff_ffff_ffff_fe00n);
}

describe('vmsnap image (end to end)', function () {
  const scratch = scratchDir('vmsnap-cli-');
  const p = scratch.path;

  before(async function () {
    requireTool('qemu-img');
    requireTool('qemu-io');
    await buildCli();
  });
  after(() => scratch.cleanup());

  describe('help and wrong usage', () => {
    it('lists every image command in the help, generated from the registrations', () => {
      const top = vmsnap(['help']);
      assert.equal(top.status, 0);
      for (const c of ['create', 'info', 'map', 'check', 'snapshots', 'write', 'read', 'convert', 'commit', 'rebase', 'compare']) {
        assert.match(top.stdout, new RegExp(`image ${c}\\s`), c);
      }
      const verb = vmsnap(['image', '--help']);
      assert.equal(verb.status, 0);
      assert.match(verb.stdout, /vmsnap image create FILE \[SIZE\] \[--backing FILE\]/);
      const one = vmsnap(['image', 'read', '--help']);
      assert.equal(one.status, 0);
      assert.match(one.stdout, /^Usage: vmsnap image read FILE OFFSET LENGTH \(--sha256 \| --pattern BYTE\)\n/);
      assert.deepEqual(vmsnap(['help', 'image', 'read']).stdout, one.stdout);
    });

    it('exits 2 with one sentence and a hint to --help on an unknown verb, flag or missing argument', () => {
      const cases: [string[], RegExp][] = [
        [['frobnicate'], /^Unknown command "frobnicate"\. Run "vmsnap --help" for usage\.$/],
        [['image', 'inof', 'x'], /^Unknown command "image inof"\. Did you mean "info"\? Run "vmsnap image --help" for usage\.$/],
        [['image', 'info', 'x', '--verbose'], /^Unknown option --verbose for "vmsnap image info"\. Run "vmsnap image info --help" for usage\.$/],
        [['image', 'write', 'x.qcow2', '0'], /missing its LENGTH argument\. Run "vmsnap image write --help"/],
        [['image', 'create', p('bad.qcow2'), '12X'], /^SIZE "12X" is not a size: use bytes or a number with K, M, G or T .*Run "vmsnap image create --help"/],
        [['image', 'write', p('x.qcow2'), '0', '1', '--pattern', '300'], /--pattern "300" is not a byte/],
        [['image', 'write', p('x.qcow2'), '0', '1'], /Give one of --pattern BYTE or --zero\./],
        [[], /^Missing a command\./],
      ];
      for (const [args, message] of cases) {
        const r = vmsnap(args);
        assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.ok(isOneSentence(r.stderr), r.stderr);
        assert.match(r.stderr.trimEnd(), message);
        assert.equal(r.stdout, '');
      }
      assert.ok(!existsSync(p('bad.qcow2')));
    });
  });

  describe('errors', () => {
    it('names a missing file in one line, exit 1, and in --json answers with one error document', () => {
      const r = vmsnap(['image', 'info', p('nope.qcow2')]);
      assert.equal(r.status, 1);
      assert.ok(isOneSentence(r.stderr), r.stderr);
      assert.match(r.stderr, /nope\.qcow2 does not exist/);
      const j = vmsnapJson<{ error: { code: string; message: string } }>(['image', 'check', p('nope.qcow2')]);
      assert.equal(j.status, 1);
      assert.equal(j.doc.error.code, 'NOT_FOUND');
    });

    it('refuses a file that is not qcow2 where a qcow2 image is needed', () => {
      const text = p('notes.txt');
      writeFileSync(text, 'not a disk image\n'.repeat(100));
      for (const verb of ['snapshots', 'check', 'write']) {
        const args = verb === 'write' ? ['image', verb, text, '0', '1', '--zero'] : ['image', verb, text];
        const r = vmsnap(args);
        assert.equal(r.status, 1, `${verb}: ${r.stderr}`);
        assert.ok(isOneSentence(r.stderr), `${verb}: ${r.stderr}`);
        assert.match(r.stderr, /notes\.txt/);
      }
    });
  });

  describe('create and info', () => {
    it('creates images qemu-img reads as made: size, cluster size, compat, extended L2', () => {
      const r = vmsnap(['image', 'create', p('plain.qcow2'), '1G']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^Created .*plain\.qcow2: qcow2 1\.1, 1 GiB \(1073741824 bytes\)/);
      let info = qemuInfo(p('plain.qcow2'));
      assert.equal(info['virtual-size'], 2 ** 30);
      assert.equal(info['cluster-size'], 65536);
      assert.equal(info['format-specific']?.data?.compat, '1.1');
      assert.equal(qemuCheck(p('plain.qcow2')).status, 0);

      const v2 = vmsnapJson<{ compat: string; clusterSize: number; virtualSize: number }>([
        'image', 'create', p('v2.qcow2'), '100M', '--compat', '0.10', '--cluster-size=4K',
      ]);
      assert.equal(v2.status, 0, v2.stderr);
      assert.deepEqual([v2.doc.compat, v2.doc.clusterSize, v2.doc.virtualSize], ['0.10', 4096, 100 * MiB]);
      info = qemuInfo(p('v2.qcow2'));
      assert.equal(info['format-specific']?.data?.compat, '0.10');
      assert.equal(info['cluster-size'], 4096);
      assert.equal(qemuCheck(p('v2.qcow2')).status, 0);

      assert.equal(vmsnap(['image', 'create', p('ext.qcow2'), '64M', '--extended-l2']).status, 0);
      assert.equal(qemuInfo(p('ext.qcow2'))['format-specific']?.data?.['extended-l2'], true);
      assert.equal(qemuCheck(p('ext.qcow2')).status, 0);
    });

    it('creates an overlay taking its size from the backing file, stored relative to its folder', () => {
      qemuImg('create', '-f', 'qcow2', p('base.qcow2'), '256M');
      const r = vmsnap(['image', 'create', 'overlay.qcow2', '--backing', 'base.qcow2'], { cwd: scratch.dir });
      assert.equal(r.status, 0, r.stderr);
      const info = qemuInfo(p('overlay.qcow2'));
      assert.equal(info['virtual-size'], 256 * MiB);
      assert.equal(info['backing-filename'], 'base.qcow2');
      assert.equal(info['backing-filename-format'], 'qcow2');
      assert.equal(qemuCheck(p('overlay.qcow2')).status, 0);
    });

    it('never replaces an existing file', () => {
      const r = vmsnap(['image', 'create', p('plain.qcow2'), '2G']);
      assert.equal(r.status, 1);
      assert.ok(isOneSentence(r.stderr), r.stderr);
      assert.match(r.stderr, /plain\.qcow2 already exists: choose another name/);
      assert.equal(qemuInfo(p('plain.qcow2'))['virtual-size'], 2 ** 30);
    });

    it('describes an image like qemu-img info, and every layer with --chain', () => {
      const human = vmsnap(['image', 'info', p('overlay.qcow2')]);
      assert.equal(human.status, 0, human.stderr);
      assert.match(human.stdout, /^image: .*overlay\.qcow2$/m);
      assert.match(human.stdout, /^file format: qcow2$/m);
      assert.match(human.stdout, /^virtual size: 256 MiB \(268435456 bytes\)$/m);
      assert.match(human.stdout, /^disk size: \d+(\.\d+)? KiB$/m);
      assert.match(human.stdout, /^cluster size: 65536$/m);
      assert.match(human.stdout, /^backing file: base\.qcow2 \(actual path: .*base\.qcow2\)$/m);
      assert.match(human.stdout, /^backing file format: qcow2$/m);
      assert.match(human.stdout, /^ {4}compat: 1\.1$/m);

      const one = vmsnapJson<Record<string, unknown>>(['image', 'info', p('overlay.qcow2')]);
      assert.equal(one.status, 0);
      const q = qemuInfo(p('overlay.qcow2'));
      assert.equal(one.doc.virtualSize, q['virtual-size']);
      assert.equal(one.doc.clusterSize, q['cluster-size']);
      assert.equal(one.doc.backingFile, q['backing-filename']);
      assert.equal(one.doc.fullBackingFile, p('base.qcow2'));
      assert.equal(one.doc.format, 'qcow2');
      assert.equal(one.doc.compat, '1.1');
      assert.equal(one.doc.dirty, false);
      assert.equal(one.doc.corrupt, false);
      assert.ok(typeof one.doc.actualSize === 'number' && one.doc.actualSize > 0);
      assert.deepEqual(one.doc.snapshots, []);

      const chain = vmsnapJson<{ filename: string; backingFile: string | null }[]>(['image', 'info', '--chain', p('overlay.qcow2')]);
      assert.equal(chain.status, 0);
      assert.deepEqual(
        chain.doc.map((l) => [l.filename, l.backingFile]),
        [
          [p('overlay.qcow2'), 'base.qcow2'],
          [p('base.qcow2'), null],
        ],
      );
      const chainText = vmsnap(['image', 'info', '--chain', p('overlay.qcow2')]).stdout;
      assert.equal(chainText.match(/^image: /gm)?.length, 2);
    });

    it('describes a raw file as raw', () => {
      writeFileSync(p('disk.raw'), Buffer.alloc(MiB));
      const j = vmsnapJson<{ format: string; virtualSize: number }>(['image', 'info', p('disk.raw')]);
      assert.equal(j.status, 0, j.stderr);
      assert.deepEqual([j.doc.format, j.doc.virtualSize], ['raw', MiB]);
    });
  });

  describe('write and read', () => {
    before(() => {
      qemuImg('create', '-f', 'qcow2', p('rw-base.qcow2'), '64M');
      qemuIo(p('rw-base.qcow2'), ['write -P 0x11 0 4M']);
      qemuImg('create', '-f', 'qcow2', '-b', p('rw-base.qcow2'), '-F', 'qcow2', p('rw.qcow2'));
    });

    it('writes patterns and zeros that qemu-io reads back, through copy-on-write, leaving the backing file alone', () => {
      let r = vmsnap(['image', 'write', p('rw.qcow2'), '1M', '64K', '--pattern', '0xab']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'Wrote 64 KiB (65536 bytes) of pattern 0xab at offset 1048576.\n');
      // Unaligned: half a cluster, so the rest of the cluster must come from the backing file.
      r = vmsnap(['image', 'write', p('rw.qcow2'), '0x200', '1000', '--pattern', '66']);
      assert.equal(r.status, 0, r.stderr);
      const z = vmsnapJson<{ zero: boolean; length: number }>(['image', 'write', p('rw.qcow2'), '2M', '1M', '--zero']);
      assert.equal(z.status, 0, z.stderr);
      assert.deepEqual([z.doc.zero, z.doc.length], [true, MiB]);
      qemuIo(p('rw.qcow2'), [
        'read -P 0x11 0 512',
        'read -P 66 512 1000',
        'read -P 0x11 1512 1046064',
        'read -P 0xab 1M 64K',
        'read -P 0x11 1114112 983040',
        'read -P 0 2M 1M',
        'read -P 0x11 3M 1M',
        'read -P 0 4M 60M',
      ]);
      qemuIo(p('rw-base.qcow2'), ['read -P 0x11 0 4M']);
      assert.equal(qemuCheck(p('rw.qcow2')).status, 0);
    });

    it('streams a read: --sha256 matches the bytes, --pattern passes or names the first mismatch', () => {
      const expected = createHash('sha256');
      expected.update(Buffer.alloc(64 * 1024, 0xab));
      const sha = vmsnap(['image', 'read', p('rw.qcow2'), '1M', '64K', '--sha256']);
      assert.equal(sha.status, 0, sha.stderr);
      assert.equal(sha.stdout, `${expected.digest('hex')}\n`);

      // 12 MiB spans several 4 MiB chunks of the stream.
      const whole = createHash('sha256');
      const all = Buffer.alloc(12 * MiB, 0);
      all.fill(0x11, 0, 4 * MiB);
      all.fill(66, 512, 1512);
      all.fill(0xab, MiB, MiB + 65536);
      all.fill(0, 2 * MiB, 3 * MiB);
      whole.update(all);
      const j = vmsnapJson<{ sha256: string }>(['image', 'read', p('rw.qcow2'), '0', '12M', '--sha256']);
      assert.equal(j.doc.sha256, whole.digest('hex'));

      const ok = vmsnap(['image', 'read', p('rw.qcow2'), '1M', '64K', '--pattern', '0xab']);
      assert.equal(ok.status, 0, ok.stderr);
      const bad = vmsnap(['image', 'read', p('rw.qcow2'), '1M', '128K', '--pattern', '0xab']);
      assert.equal(bad.status, 1);
      assert.ok(isOneSentence(bad.stderr), bad.stderr);
      assert.equal(bad.stderr, `Content mismatch at offset ${MiB + 65536}: expected 0xab, found 0x11.\n`);
      const badJson = vmsnapJson<{ match: boolean; mismatchOffset: number }>(['image', 'read', p('rw.qcow2'), '1M', '128K', '--pattern', '171']);
      assert.equal(badJson.status, 1);
      assert.deepEqual([badJson.doc.match, badJson.doc.mismatchOffset], [false, MiB + 65536]);
    });

    it('refuses a range past the end of the disk', () => {
      const r = vmsnap(['image', 'read', p('rw.qcow2'), '63M', '2M', '--sha256']);
      assert.equal(r.status, 1);
      assert.ok(isOneSentence(r.stderr), r.stderr);
      assert.match(r.stderr, /past the end/);
    });
  });

  describe('map', () => {
    it('shows which layer serves each range, as JSON and as a table', () => {
      const j = vmsnapJson<{ start: number; length: number; depth: number; kind: string; file: string | null }[]>(['image', 'map', p('rw.qcow2')]);
      assert.equal(j.status, 0, j.stderr);
      // Contiguous, covering the whole disk.
      let at = 0;
      for (const e of j.doc) {
        assert.equal(e.start, at);
        at += e.length;
      }
      assert.equal(at, 64 * MiB);
      const serving = (offset: number): { depth: number; kind: string; file: string | null } => {
        const e = j.doc.find((x) => x.start <= offset && offset < x.start + x.length);
        assert.ok(e, `no extent at ${offset}`);
        return { depth: e.depth, kind: e.kind, file: e.file };
      };
      assert.deepEqual(serving(0), { depth: 0, kind: 'data', file: p('rw.qcow2') });
      assert.deepEqual(serving(MiB), { depth: 0, kind: 'data', file: p('rw.qcow2') });
      assert.deepEqual(serving(3 * MiB), { depth: 1, kind: 'data', file: p('rw-base.qcow2') });
      assert.deepEqual(serving(2 * MiB), { depth: 0, kind: 'zero', file: p('rw.qcow2') });
      assert.equal(serving(10 * MiB).kind, 'unallocated');
      assert.equal(serving(10 * MiB).file, null);

      // qemu-img map agrees on which ranges hold data and at which depth.
      const qemu = JSON.parse(qemuImg('map', '--output=json', p('rw.qcow2'))) as { start: number; length: number; depth: number; data: boolean }[];
      for (const q of qemu.filter((x) => x.data)) {
        const ours = serving(q.start);
        assert.deepEqual([ours.kind, ours.depth], ['data', q.depth], `at ${q.start}`);
      }

      const table = vmsnap(['image', 'map', p('rw.qcow2')]);
      assert.equal(table.status, 0);
      assert.match(table.stdout, /^Offset\s+Length\s+Mapped\s+Depth\s+File$/m);
      assert.match(table.stdout, /^0x300000\s+0x100000\s+data\s+1\s+.*rw-base\.qcow2$/m);
    });
  });

  describe('check', () => {
    it('exits 0 on a clean image, 3 on leaks only, 2 on corruption, as qemu-img check does', () => {
      // Leak: drop the L2 entry of a written cluster; the cluster stays counted but nothing uses it.
      qemuImg('create', '-f', 'qcow2', p('leaky.qcow2'), '16M');
      qemuIo(p('leaky.qcow2'), ['write -P 1 0 64K']);
      writeU64(p('leaky.qcow2'), firstL2Table(p('leaky.qcow2')), 0n);
      // Corruption: a second L2 entry pointing at the same cluster, counted once but used twice.
      qemuImg('create', '-f', 'qcow2', p('broken.qcow2'), '16M');
      qemuIo(p('broken.qcow2'), ['write -P 1 0 64K']);
      const l2 = firstL2Table(p('broken.qcow2'));
      writeU64(p('broken.qcow2'), l2 + 8, readU64(p('broken.qcow2'), l2));
      // The fixtures are what they claim to be, by qemu-img's own account.
      assert.equal(qemuCheck(p('leaky.qcow2')).status, 3);
      assert.equal(qemuCheck(p('broken.qcow2')).status, 2);

      const clean = vmsnap(['image', 'check', p('plain.qcow2')]);
      assert.equal(clean.status, 0, clean.stderr);
      assert.match(clean.stdout, /No errors were found on the image\./);

      const leaky = vmsnapJson<{ leaks: number; corruptions: number }>(['image', 'check', p('leaky.qcow2')]);
      assert.equal(leaky.status, 3, leaky.stderr);
      assert.deepEqual([leaky.doc.leaks, leaky.doc.corruptions], [1, 0]);
      assert.match(vmsnap(['image', 'check', p('leaky.qcow2')]).stdout, /1 leaked cluster/);

      const broken = vmsnapJson<{ corruptions: number }>(['image', 'check', p('broken.qcow2')]);
      assert.equal(broken.status, 2, broken.stderr);
      assert.ok(broken.doc.corruptions > 0);
      assert.match(vmsnap(['image', 'check', p('broken.qcow2')]).stdout, /errors? (was|were) found on the image/);
    });

    it('repairs leaks with --repair, after which qemu-img finds the image clean', () => {
      const r = vmsnap(['image', 'check', '--repair', p('leaky.qcow2')]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.equal(qemuCheck(p('leaky.qcow2')).status, 0);
    });
  });

  describe('internal snapshots', () => {
    before(() => {
      qemuImg('create', '-f', 'qcow2', p('snap.qcow2'), '32M');
      qemuIo(p('snap.qcow2'), ['write -P 0x21 0 1M']);
      qemuImg('snapshot', '-c', 'before-upgrade', p('snap.qcow2'));
      qemuIo(p('snap.qcow2'), ['write -P 0x22 0 512K']);
    });

    it('lists them like qemu-img snapshot -l, and in info', () => {
      const j = vmsnapJson<{ id: string; name: string; date: string; vmStateSize: number; diskSize: number }[]>(['image', 'snapshots', p('snap.qcow2')]);
      assert.equal(j.status, 0, j.stderr);
      assert.equal(j.doc.length, 1);
      assert.deepEqual([j.doc[0]!.id, j.doc[0]!.name, j.doc[0]!.vmStateSize, j.doc[0]!.diskSize], ['1', 'before-upgrade', 0, 32 * MiB]);
      assert.ok(Math.abs(Date.parse(j.doc[0]!.date) - Date.now()) < 10 * 60 * 1000, j.doc[0]!.date);
      const human = vmsnap(['image', 'snapshots', p('snap.qcow2')]);
      assert.match(human.stdout, /^ID\s+TAG\s+VM SIZE\s+DATE\s+VM CLOCK\s+DISK SIZE$/m);
      assert.match(human.stdout, /^1\s+before-upgrade\s+0 B\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+00:00:00\.000\s+32 MiB$/m);
      assert.match(vmsnap(['image', 'info', p('snap.qcow2')]).stdout, /Snapshot list:\n.*\n1\s+before-upgrade/);
      assert.match(vmsnap(['image', 'snapshots', p('plain.qcow2')]).stdout, /has no internal snapshots/);
    });

    it('converts one snapshot to a standalone image equal to what qemu-img extracts', () => {
      const r = vmsnap(['image', 'convert', p('snap.qcow2'), p('from-snap.qcow2'), '--snapshot', 'before-upgrade']);
      assert.equal(r.status, 0, r.stderr);
      qemuImg('convert', '-U', '-l', 'snapshot.name=before-upgrade', '-O', 'qcow2', p('snap.qcow2'), p('from-snap-ref.qcow2'));
      assert.ok(qemuSame(p('from-snap.qcow2'), p('from-snap-ref.qcow2')));
      qemuIo(p('from-snap.qcow2'), ['read -P 0x21 0 1M']);
    });
  });

  describe('convert, commit, rebase, compare', () => {
    before(() => {
      qemuImg('create', '-f', 'qcow2', p('c-base.qcow2'), '32M');
      qemuIo(p('c-base.qcow2'), ['write -P 0x31 0 8M']);
      qemuImg('create', '-f', 'qcow2', '-b', p('c-base.qcow2'), '-F', 'qcow2', p('c-top.qcow2'));
      qemuIo(p('c-top.qcow2'), ['write -P 0x32 4M 1M', 'write -z 6M 1M']);
    });

    it('convert flattens the chain into a standalone image qemu-img finds identical', () => {
      const r = vmsnapJson<{ destination: string; dataBytes: number }>(['image', 'convert', p('c-top.qcow2'), p('c-flat.qcow2')]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.doc.destination, p('c-flat.qcow2'));
      assert.equal(r.doc.dataBytes, 7 * MiB);
      const info = qemuInfo(p('c-flat.qcow2'));
      assert.equal(info['backing-filename'], undefined);
      assert.equal(qemuCheck(p('c-flat.qcow2')).status, 0);
      assert.ok(qemuSame(p('c-top.qcow2'), p('c-flat.qcow2')));
      // An existing destination is refused unless --force says to replace it.
      const again = vmsnap(['image', 'convert', p('c-top.qcow2'), p('c-flat.qcow2')]);
      assert.equal(again.status, 1);
      assert.match(again.stderr, /already exists/);
      assert.equal(vmsnap(['image', 'convert', p('c-top.qcow2'), p('c-flat.qcow2'), '--force', '--cluster-size', '128K']).status, 0);
      assert.equal(qemuInfo(p('c-flat.qcow2'))['cluster-size'], 128 * 1024);
      assert.ok(qemuSame(p('c-top.qcow2'), p('c-flat.qcow2')));
    });

    it('compare exits 0 when identical and 1 saying where they first differ', () => {
      const same = vmsnap(['image', 'compare', p('c-top.qcow2'), p('c-flat.qcow2')]);
      assert.equal(same.status, 0, same.stderr);
      assert.equal(same.stdout, 'Images are identical.\n');
      const diff = vmsnap(['image', 'compare', p('c-top.qcow2'), p('c-base.qcow2')]);
      assert.equal(diff.status, 1, diff.stderr);
      assert.equal(diff.stdout, `Content mismatch at offset ${4 * MiB}.\n`);
      // qemu-img names the same offset.
      assert.match(runStatus('qemu-img', ['compare', p('c-top.qcow2'), p('c-base.qcow2')]).stdout, new RegExp(`offset ${4 * MiB}!`));
      const j = vmsnapJson<{ identical: boolean; firstDifference: number }>(['image', 'compare', p('c-top.qcow2'), p('c-base.qcow2')]);
      assert.deepEqual([j.status, j.doc.identical, j.doc.firstDifference], [1, false, 4 * MiB]);
    });

    it('rebase --no-backing makes the overlay standalone with the same content', () => {
      qemuImg('create', '-f', 'qcow2', '-b', p('c-top.qcow2'), '-F', 'qcow2', p('c-rebase.qcow2'));
      const r = vmsnap(['image', 'rebase', p('c-rebase.qcow2'), '--no-backing']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(qemuInfo(p('c-rebase.qcow2'))['backing-filename'], undefined);
      assert.equal(qemuCheck(p('c-rebase.qcow2')).status, 0);
      assert.ok(qemuSame(p('c-rebase.qcow2'), p('c-flat.qcow2')));
      const usage = vmsnap(['image', 'rebase', p('c-rebase.qcow2')]);
      assert.equal(usage.status, 2);
      assert.match(usage.stderr, /Give one of --backing NEWBASE or --no-backing\./);
    });

    it('rebase --backing moves an overlay onto another base without changing what it reads', () => {
      // c-top reads base data under its own changes; onto an empty base, the base's data must be copied in.
      qemuImg('create', '-f', 'qcow2', p('c-empty.qcow2'), '32M');
      qemuImg('create', '-f', 'qcow2', '-b', p('c-top.qcow2'), '-F', 'qcow2', p('c-moved.qcow2'));
      qemuIo(p('c-moved.qcow2'), ['write -P 0x33 0 64K']);
      const before = vmsnap(['image', 'read', p('c-moved.qcow2'), '0', '32M', '--sha256']).stdout;
      const r = vmsnap(['image', 'rebase', p('c-moved.qcow2'), '--backing', p('c-empty.qcow2'), '--backing-format', 'qcow2']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(qemuInfo(p('c-moved.qcow2'))['backing-filename'], 'c-empty.qcow2');
      assert.equal(vmsnap(['image', 'read', p('c-moved.qcow2'), '0', '32M', '--sha256']).stdout, before);
      assert.equal(qemuCheck(p('c-moved.qcow2')).status, 0);
    });

    it('commit merges the overlay into its base: the chain reads the same, the overlay is emptied', () => {
      const r = vmsnapJson<{ base: string; dataBytes: number }>(['image', 'commit', p('c-top.qcow2')]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.doc.base, p('c-base.qcow2'));
      assert.ok(qemuSame(p('c-top.qcow2'), p('c-flat.qcow2')), 'the chain reads as before');
      assert.ok(qemuSame(p('c-base.qcow2'), p('c-flat.qcow2')), 'the base now holds the overlay\'s changes');
      assert.equal(qemuCheck(p('c-base.qcow2')).status, 0);
      assert.equal(qemuCheck(p('c-top.qcow2')).status, 0);
      const map = vmsnapJson<{ depth: number; kind: string }[]>(['image', 'map', p('c-top.qcow2')]);
      assert.ok(map.doc.every((e) => e.depth !== 0), 'the overlay holds nothing any more');
    });
  });

  describe('Ctrl-C', () => {
    it('stops convert cleanly: exit 130, says so, and leaves no destination or partial file', async () => {
      qemuImg('create', '-f', 'qcow2', p('big.qcow2'), '1G');
      qemuIo(p('big.qcow2'), ['write -P 0x44 0 128M']);
      // VMSNAP_PROGRESS=1 shows progress without a terminal; the first report comes before any data is copied.
      const r = await interruptWhen(['image', 'convert', p('big.qcow2'), p('big-copy.qcow2')], /Converting .*: \d+%/, { VMSNAP_PROGRESS: '1' });
      assert.ok(r.interrupted, `never saw progress: ${r.stderr}`);
      assert.equal(r.status, 130, r.stderr);
      assert.match(r.stderr, /cancelled/i);
      assert.doesNotMatch(r.stderr, /\bat .+:\d+:\d+/);
      assert.ok(!existsSync(p('big-copy.qcow2')));
      assert.deepEqual(readdirSync(scratch.dir).filter((f) => f.includes('big-copy')), []);
      assert.equal(qemuCheck(p('big.qcow2')).status, 0);
    });
  });
  describe('damaged images (issue 15)', () => {
    it('create rounds a size that is not a multiple of 512 up, as qemu-img create does, and says so', () => {
      const r = vmsnap(['image', 'create', p('odd.qcow2'), '1000']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /1 KiB \(1024 bytes\) \(rounded up from 1000 bytes/);
      assert.equal(qemuInfo(p('odd.qcow2'))['virtual-size'], 1024);
      // QEMU reads the whole disk, tail included.
      assert.equal(runStatus('qemu-io', ['-c', 'read 512 512', p('odd.qcow2')]).status, 0);
      assert.equal(qemuCheck(p('odd.qcow2')).status, 0);
    });

    it('convert refuses a compressed cluster cut short instead of baking zero-padded data into a new image', () => {
      shortCompressedImage(p('short.qcow2'), p('short.raw'));
      const r = vmsnap(['image', 'convert', p('short.qcow2'), p('short-copy.qcow2')]);
      assert.equal(r.status, 1, r.stdout);
      assert.match(r.stderr, /decompresses to \d+ bytes instead of 65536/);
      assert.ok(!existsSync(p('short-copy.qcow2')));
      assert.deepEqual(readdirSync(scratch.dir).filter((f) => f.includes('short-copy')), []);
    });

    it('vm import and a full clone refuse a compressed cluster cut short, and leave no machine behind', () => {
      shortCompressedImage(p('short-m.qcow2'), p('short-m.raw'));
      const lib = p('short-library');
      const imported = vmsnap(['--library', lib, 'vm', 'import', 'damaged', p('short-m.qcow2')]);
      assert.equal(imported.status, 1, imported.stdout);
      assert.match(imported.stderr, /decompresses to \d+ bytes instead of 65536/);
      assert.ok(isOneSentence(imported.stderr), imported.stderr);
      // A machine whose layer went bad on disk: its full clone reads every cluster and must stop at the damage.
      assert.equal(vmsnap(['--library', lib, 'vm', 'create', 'm', '--disk-size', '1M']).status, 0);
      const top = vmsnap(['--library', lib, 'vm', 'disk', 'm']).stdout.trimEnd();
      copyFileSync(p('short-m.qcow2'), top);
      const before = readdirSync(lib).sort();
      const clone = vmsnap(['--library', lib, 'clone', 'm', 'm-copy', '--full']);
      assert.equal(clone.status, 1, clone.stdout);
      assert.match(clone.stderr, /decompresses to \d+ bytes instead of 65536/);
      assert.deepEqual(readdirSync(lib).sort(), before);
      assert.doesNotMatch(vmsnap(['--library', lib, 'vm', 'list']).stdout, /m-copy|damaged/);
    });

    it('check finds a damaged snapshot table and a v2 zero flag (exit 2), and --repair does not claim to fix them', () => {
      damagedSnapshotTable(p('snaps.qcow2'), 'too-many');
      v2ZeroFlagImage(p('v2zero.qcow2'));
      for (const file of [p('snaps.qcow2'), p('v2zero.qcow2')]) {
        const r = vmsnap(['image', 'check', file]);
        assert.equal(r.status, 2, `${file}: ${r.stdout}${r.stderr}`);
        assert.match(r.stdout, /errors? (was|were) found on the image/);
        const repaired = vmsnap(['image', 'check', '--repair', file]);
        assert.equal(repaired.status, 2, repaired.stdout);
        assert.doesNotMatch(repaired.stdout, /No errors were found/);
      }
    });
  });
});
