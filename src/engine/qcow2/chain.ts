// Backing chains: opening a layer of either format with the layers below it (loops and too deep chains
// refused, backing names resolved against the overlay's folder), and walking a chain's layers and allocation.
// Qcow2Image.open starts here, and each qcow2 layer found is opened by image.ts (the two call each other).
import { open as openFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, relative, resolve } from 'node:path';
import type { ChainExtent, Disk } from './disk';
import { ImageError, toImageError } from './errors';
import { QCOW2_MAGIC } from './header';
import { type OpenOptions, Qcow2Image } from './image';
import { RawDisk, checkRange } from './raw';

export const DEFAULT_MAX_BACKING_DEPTH = 64;

/** What an overlay says about the layer below it. */
export interface BackingReference {
  readonly path: string;
  readonly backingFile: string | null;
  readonly backingFormat: string | null;
}

/** Opens an image of either format (qcow2 by its magic, otherwise raw) with its backing chain. */
export async function openDisk(path: string, options: OpenOptions = {}): Promise<Disk> {
  return openLayer(resolve(path), null, options, 0, new Set());
}

/** What a file holds, from its first bytes: qcow2 by its magic, anything else is raw. */
export async function probeFormat(path: string): Promise<'qcow2' | 'raw'> {
  let fh;
  try {
    // Look before opening: opening a FIFO would wait for a writer forever.
    const st = await stat(path);
    if (!st.isFile() && !st.isBlockDevice()) throw new ImageError('INVALID_ARGUMENT', `${path} is not a regular file.`, path);
    fh = await openFile(path, 'r');
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    return bytesRead === 4 && b.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  } catch (e) {
    throw toImageError(e, path);
  } finally {
    await fh?.close();
  }
}

/**
 * Opens a layer as the format it is declared (or probed) to be, with the chain below it. `depth` counts the
 * layers above this one; `seen` holds the real paths of the layers above, to refuse a chain that loops.
 */
export async function openLayer(
  path: string,
  format: 'qcow2' | 'raw' | null,
  options: OpenOptions,
  depth: number,
  seen: Set<string>,
): Promise<Disk> {
  return (format ?? (await probeFormat(path))) === 'qcow2' ? openQcow2(path, options, depth, seen) : RawDisk.open(path, options.writable ?? false);
}

/** Opens a qcow2 layer and the chain below it. */
export async function openQcow2(path: string, options: OpenOptions, depth: number, seen: Set<string>): Promise<Qcow2Image> {
  const real = await realpath(path).catch((e: unknown) => {
    throw toImageError(e, path);
  });
  if (seen.has(real)) {
    throw new ImageError('BACKING_LOOP', `The backing chain loops: ${path} is its own backing file (directly or through others).`, path);
  }
  seen.add(real);
  const maxDepth = options.maxBackingDepth ?? DEFAULT_MAX_BACKING_DEPTH;
  return Qcow2Image.openLayer(path, options, (image) => openBacking(image, maxDepth, depth, seen));
}

/** Opens the layer an overlay (at `depth`) names as its backing file, with the chain below that. */
export async function openBacking(image: BackingReference, maxDepth: number, depth: number, seen: Set<string>): Promise<Disk> {
  const name = image.backingFile!;
  if (depth + 1 > maxDepth) {
    throw new ImageError('BACKING_TOO_DEEP', `The backing chain of ${image.path} is deeper than ${maxDepth} layers.`, image.path);
  }
  const target = isAbsolute(name) ? name : resolve(dirname(image.path), name);
  const fmt = image.backingFormat;
  if (fmt !== null && fmt !== 'qcow2' && fmt !== 'raw') {
    throw new ImageError('UNSUPPORTED_FEATURE', `${image.path} has a backing file of format "${fmt}"; only qcow2 and raw are supported.`, image.path);
  }
  try {
    return await openLayer(target, fmt, { backing: true, maxBackingDepth: maxDepth }, depth + 1, seen);
  } catch (e) {
    const err = toImageError(e, target);
    if (err.code === 'NOT_FOUND') {
      throw new ImageError('BACKING_MISSING', `The backing file of ${image.path} is missing: ${target} (stored as "${name}").`, image.path);
    }
    throw err;
  }
}

/** How a backing file is named inside an overlay: relative to the overlay's folder. */
export function storedBackingName(imagePath: string, backingPath: string): string {
  return relative(dirname(resolve(imagePath)), resolve(backingPath)) || basename(backingPath);
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
