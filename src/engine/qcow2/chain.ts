import { resolve } from 'node:path';
import type { ChainExtent, Disk } from './disk';
import { type OpenOptions, openLayer } from './image';
import { checkRange } from './raw';

/** Opens an image of either format (qcow2 by its magic, otherwise raw) with its backing chain. */
export async function openDisk(path: string, options: OpenOptions = {}): Promise<Disk> {
  return openLayer(resolve(path), null, options, 0, new Set());
}

/** The layers of a chain, top first. */
export function layersOf(disk: Disk): Disk[] {
  const out: Disk[] = [];
  for (let d: Disk | null = disk; d; d = d.backing) out.push(d);
  return out;
}

/**
 * What the chain reads for a range and which layer serves each part, as `qemu-img map` reports it:
 * data or zero from the layer at `depth`, or unallocated when no layer has it (it reads as zeros).
 */
export async function chainMap(disk: Disk, offset = 0, length = disk.size - offset): Promise<ChainExtent[]> {
  checkRange(disk, offset, length);
  const out: ChainExtent[] = [];
  const push = (e: ChainExtent): void => {
    const last = out[out.length - 1];
    if (last && last.kind === e.kind && last.depth === e.depth && last.offset + last.length === e.offset) last.length += e.length;
    else out.push(e);
  };
  const depthOfChain = layersOf(disk).length - 1;
  const walk = async (layer: Disk | null, depth: number, from: number, to: number): Promise<void> => {
    if (!layer || from >= layer.size) {
      push({ offset: from, length: to - from, kind: 'unallocated', depth: depthOfChain, path: null });
      return;
    }
    const within = Math.min(to, layer.size);
    for (const e of await layer.layerMap(from, within - from)) {
      if (e.kind === 'unallocated') await walk(layer.backing, depth + 1, e.offset, e.offset + e.length);
      else push({ offset: e.offset, length: e.length, kind: e.kind, depth, path: layer.path });
    }
    if (within < to) push({ offset: within, length: to - within, kind: 'unallocated', depth: depthOfChain, path: null });
  };
  if (length > 0) await walk(disk, 0, offset, offset + length);
  return out;
}
