// A big library for the tree's speed test (no vscode here: also used by plain Node profiling).
import { randomUUID } from 'node:crypto';
import { copyFile, link, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Library } from '../../src/engine/machine';

const MiB = 1024 * 1024;
/**
 * A big library, fast: one machine made by the engine, then `machines` machine folders whose machine.json lists
 * `snapshots` snapshots in a chain. Each snapshot layer is a hard link to the one real snapshot layer: the tree
 * reads manifests and sizes, never the data, so this measures what a real library of that shape costs to show.
 */
export async function bigLibrary(lib: Library, machines: number, snapshots: number): Promise<string[]> {
  const seed = await lib.createMachine('seed', { diskSize: MiB });
  await lib.takeSnapshot(seed.id, 'seed snapshot');
  const folder = (await lib.list())[0]!.folder;
  const manifest = JSON.parse(await readFile(join(folder, 'machine.json'), 'utf8')) as {
    snapshots: { layers: string[] }[];
    disks: { top: string }[];
  } & Record<string, unknown>;
  const layer = manifest.snapshots[0]!.layers[0]!;
  const top = manifest.disks[0]!.top;
  const ids: string[] = [];
  const start = Date.now() - machines * snapshots * 60_000;
  for (let i = 0; i < machines; i++) {
    const id = randomUUID();
    const dir = join(lib.dir, `big-${String(i).padStart(3, '0')}-${id.slice(0, 8)}`);
    await mkdir(dir);
    await copyFile(join(folder, top), join(dir, top));
    const records: { id: string; name: string; description: string; parentId: string | null; createdAt: string; takenWhileRunning: boolean; layers: string[] }[] = [];
    for (let j = 0; j < snapshots; j++) {
      const file = `snap-${j}.qcow2`;
      await link(join(folder, layer), join(dir, file));
      records.push({
        id: randomUUID(),
        name: `Snapshot ${j + 1}`,
        description: `state ${j + 1}`,
        parentId: j === 0 ? null : records[j - 1]!.id,
        createdAt: new Date(start + (i * snapshots + j) * 60_000).toISOString(),
        takenWhileRunning: false,
        layers: [file],
      });
    }
    const mac = `52:54:00:${[i >> 8, i & 255, 0x42].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
    const m = { ...manifest, id, name: `vm-${String(i).padStart(3, '0')}`, macAddress: mac, snapshots: records, current: records.at(-1)?.id ?? null, clonedFrom: null };
    await writeFile(join(dir, 'machine.json'), JSON.stringify(m));
    ids.push(id);
  }
  await lib.deleteMachine(seed.id);
  return ids;
}
