// How much of the host disk each machine's folder takes, for the machine rows: measured here, one folder at a time.
//
// Not the engine's Library.sizes(): that counts the disk layers only (a snapshot's memory state, often the biggest
// file of a running machine's snapshot, is left out), and each call re-reads every manifest of the library and opens
// the machine's top layers to count their allocated clusters. A row needs one figure for the whole folder, for
// every machine, after every change: one readdir and a stat per file.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { MachineNode } from './nodes';

/** The last measured size of each machine's folder: new rows show it until it is measured again. */
export class FolderSizes {
  private readonly last = new Map<string, number | undefined>();

  get(machineId: string): number | undefined {
    return this.last.get(machineId);
  }

  /** Forgets the machines no longer listed (deleted). */
  keepOnly(machineIds: ReadonlySet<string>): void {
    for (const id of this.last.keys()) if (!machineIds.has(id)) this.last.delete(id);
  }

  /** Measures rows in order until `deadline` (ms since the epoch); returns how many it measured. */
  async measureUntil(nodes: MachineNode[], deadline: number): Promise<number> {
    let measured = 0;
    for (; measured < nodes.length && Date.now() < deadline; measured++) {
      const n = nodes[measured]!;
      n.sizeBytes = await folderBytes(n.machine.folder);
      this.last.set(n.machine.id, n.sizeBytes);
    }
    return measured;
  }

  /**
   * Measures rows one folder at a time, so that what the user asks for meanwhile (expanding a machine) does not
   * queue behind thousands of file-system calls; `resized` gets each row whose size changed. Stops when `current()`
   * turns false (the rows were dropped: the new ones measure themselves).
   */
  async measure(nodes: MachineNode[], current: () => boolean, resized: (node: MachineNode) => void): Promise<void> {
    for (const n of nodes) {
      const size = await folderBytes(n.machine.folder);
      if (!current()) return;
      this.last.set(n.machine.id, size);
      if (n.sizeBytes === size) continue;
      n.sizeBytes = size;
      resized(n);
    }
  }
}

/** Bytes a machine's own files occupy on the host disk (allocated blocks, so sparse images count what they use). */
export async function folderBytes(folder: string): Promise<number | undefined> {
  try {
    const names = await readdir(folder);
    const sizes = await Promise.all(names.map(async (n) => (await stat(join(folder, n)).catch(() => undefined))?.blocks ?? 0));
    return sizes.reduce((a, b) => a + b, 0) * 512;
  } catch {
    return undefined;
  }
}
