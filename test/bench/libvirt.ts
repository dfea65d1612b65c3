// libvirt through our source next to the same work done with virsh by hand: take and revert a snapshot with
// memory of a running domain (the counting guest, TCG), list its snapshot tree, and read 20 domains x 20 snapshots
// (names, parents, descriptions, times, memory, current snapshot, power state) as the tree shows them. Runs as root
// against qemu:///system; starts libvirtd when none answers (with the tests' qemu.conf, see test/support/libvirt.ts),
// makes every domain and snapshot afresh and removes them all afterwards. The load average is printed with the rows.
import { execFileSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { LibvirtSource } from '../../src/engine/libvirt';
import { defineCountingDomain, removeTestDomains, startDaemons, SYSTEM_URI, testPrefix } from '../support/libvirt';
import { median, type BenchRow } from './report';

const RUNS = 7;
/**
 * VMSNAP_BENCH_LIBVIRT_DOMAINS: fewer domains against a host's own daemon that re-probes QEMU before every change
 * (/dev/kvm unusable for its QEMU user: ~7 s a snapshot); the daemon the bench starts itself takes ~30 ms.
 */
const DOMAINS = Number(process.env['VMSNAP_BENCH_LIBVIRT_DOMAINS'] ?? 20);
const SNAPSHOTS = 20;

function virsh(...args: string[]): string {
  return execFileSync('virsh', ['-q', '-c', SYSTEM_URI, ...args], { encoding: 'utf8' });
}

async function time(fn: () => unknown): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

export async function libvirtSection(workDir: string): Promise<BenchRow[]> {
  chmodSync(workDir, 0o755);
  const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(`  load average ${load()}`);
  const daemons = await startDaemons();
  const prefix = testPrefix();
  const source = new LibvirtSource(SYSTEM_URI);
  const rows: BenchRow[] = [];
  try {
    const live = `${prefix}live`;
    defineCountingDomain(SYSTEM_URI, workDir, live);
    virsh('start', live);
    const ours = { take: [] as number[], revert: [] as number[] };
    const hand = { take: [] as number[], revert: [] as number[] };
    // Ours and by hand alternate, each first every other time (the first after a revert pays for the guest
    // settling), so that load from elsewhere falls on both alike.
    const alternate = async (i: number, a: () => Promise<void>, b: () => Promise<void>): Promise<void> => {
      for (const f of i % 2 === 0 ? [a, b] : [b, a]) await f();
    };
    for (let i = 0; i < RUNS; i++) {
      await alternate(
        i,
        async () => void ours.take.push(await time(() => source.takeSnapshot(live, `ours-${i}`))),
        async () => void hand.take.push(await time(() => virsh('snapshot-create-as', '--domain', live, '--name', `hand-${i}`))),
      );
    }
    for (let i = 0; i < RUNS; i++) {
      await alternate(
        i,
        async () => void ours.revert.push(await time(() => source.revert(live, `ours-${i}`, { discardCurrent: true }))),
        async () => void hand.revert.push(await time(() => virsh('snapshot-revert', '--domain', live, '--snapshotname', `hand-${i}`))),
      );
    }
    // The snapshot list of one domain: our tree (with descriptions, times, memory) against virsh's own tree view
    // and its current snapshot.
    // The source asks in its first virsh line for what the last read of the domain needed next; a new source (a
    // connection's first read) cannot, so its figure is kept apart.
    const listOne = { ours: [] as number[], hand: [] as number[], first: [] as number[] };
    for (let i = 0; i < RUNS; i++) {
      await alternate(
        i,
        async () => {
          listOne.ours.push(await time(() => source.snapshotTree(live)));
          listOne.first.push(await time(() => new LibvirtSource(SYSTEM_URI).snapshotTree(live)));
        },
        async () =>
          void listOne.hand.push(
            await time(() => {
              virsh('snapshot-list', '--domain', live, '--tree');
              virsh('snapshot-current', '--domain', live, '--name');
            }),
          ),
      );
    }
    const ratio = (a: number[], b: number[]): boolean => median(a) <= 1.2 * median(b);
    rows.push({ operation: 'libvirt: take a snapshot with memory (running, 32 MiB)', oursMs: median(ours.take), qemuMs: median(hand.take), target: '<= 1.2x', met: ratio(ours.take, hand.take) });
    rows.push({ operation: 'libvirt: revert to a running snapshot', oursMs: median(ours.revert), qemuMs: median(hand.revert), target: '<= 1.2x', met: ratio(ours.revert, hand.revert) });
    rows.push({ operation: `libvirt: list a domain's ${2 * RUNS} snapshots as a tree`, oursMs: median(listOne.ours), qemuMs: median(listOne.hand), target: '<= 1.2x', met: ratio(listOne.ours, listOne.hand) });
    rows.push({ operation: `libvirt: list a domain's ${2 * RUNS} snapshots as a tree, a connection's first read`, oursMs: median(listOne.first), qemuMs: median(listOne.hand), target: '<= 1.2x', met: ratio(listOne.first, listOne.hand) });
    virsh('destroy', live);
    for (const r of rows) console.log(`  ${r.operation}: ${Math.round(r.oursMs)} ms (virsh by hand ${Math.round(r.qemuMs ?? 0)} ms)`);

    // 20 powered-off domains with 20 real internal snapshots each (qcow2 snapshots and libvirt's metadata), made in
    // one virsh session per domain.
    console.log(`  making ${DOMAINS} domains x ${SNAPSHOTS} snapshots`);
    for (let d = 0; d < DOMAINS; d++) {
      const name = `${prefix}d${String(d).padStart(2, '0')}`;
      defineCountingDomain(SYSTEM_URI, workDir, name);
      execFileSync('virsh', ['-q', '-c', SYSTEM_URI], { input: Array.from({ length: SNAPSHOTS }, (_, s) => `snapshot-create-as --domain ${name} --name s${s} --description "snapshot ${s}"`).join('\n') + '\n' });
    }
    const listOurs: number[] = [];
    const listHand: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      listOurs.push(await time(() => source.readAll()));
      // By hand: the domains, then per domain its state and its snapshot tree with parents (no descriptions).
      listHand.push(
        await time(() => {
          const names = virsh('list', '--all', '--name').split('\n').filter((n) => n.trim() !== '');
          for (const n of names) {
            virsh('domstate', n);
            virsh('snapshot-list', '--domain', n, '--parent');
          }
        }),
      );
    }
    const all = await source.readAll();
    const mine = all.filter((v) => v.machine.name.startsWith(prefix));
    if (mine.reduce((n, v) => n + v.snapshots.length, 0) < DOMAINS * SNAPSHOTS) throw new Error('the listing missed snapshots');
    rows.push({
      operation: `libvirt: read ${DOMAINS} domains x ${SNAPSHOTS} snapshots with their trees (${all.length} domains in all)`,
      oursMs: median(listOurs),
      qemuMs: median(listHand),
      target: '< 500 ms',
      met: median(listOurs) < 500,
    });
    const list = rows[rows.length - 1] as BenchRow;
    console.log(`  ${list.operation}: ${Math.round(list.oursMs)} ms (virsh by hand ${Math.round(list.qemuMs ?? 0)} ms)`);
    console.log(`  load average ${load()}`);
    return rows;
  } finally {
    removeTestDomains(SYSTEM_URI, prefix);
    await daemons.stop();
  }
}
