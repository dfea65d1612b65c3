// The per-library image cache: cloud images fetched once (from a URL or a local path) and kept as
// `<sha256>.<format>`, read-only, so every machine made from the same image shares one file and a second
// fetch costs nothing. A fetch either places a whole, checked image and its index entry, or leaves nothing.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fsyncDir } from '../os';
import { readIndex, updateIndex, type IndexEntry } from './cache-index';
import { inspectImage, type ImageFormat } from './detect';
import { cacheIoError, ImageFetchError } from './errors';
import { DEFAULT_IDLE_TIMEOUT_MS, redactUrl } from './http-download';
import { copyToFile, downloadToFile, sourceError, type ProgressCallback, type Transferred } from './transfer';

export interface FetchImageOptions {
  /** The library's image cache folder (made when missing). */
  cacheDir: string;
  /** The expected sha256, as hex or "sha256:HEX"; a mismatch fails with CHECKSUM_MISMATCH. */
  sha256?: string | undefined;
  /** Bytes done of the total (null when a server sends no length); monotonic. */
  onProgress?: ProgressCallback | undefined;
  signal?: AbortSignal | undefined;
  /** A download that receives nothing for this long fails with TIMEOUT (default 30 s). */
  idleTimeoutMs?: number | undefined;
  /** Fetch again even when the index knows this source (a "latest" URL that has moved on). */
  refresh?: boolean | undefined;
}

export interface CachedImage {
  /** The image file in the cache (absolute, read-only): the base layer for machines. */
  path: string;
  format: ImageFormat;
  /** The size of the disk the guest sees, in bytes. */
  virtualSize: number;
  sha256: string;
  /** The source as the cache knows it: an absolute path, or the URL without credentials. */
  source: string;
  /** Bytes of the image file. */
  size: number;
  /** Nothing was transferred: the cache had it. */
  fromCache: boolean;
}

export interface CachedImageInfo {
  sha256: string;
  path: string;
  format: ImageFormat;
  size: number;
  virtualSize: number;
  /** The URLs and paths this image was fetched from, as the index remembers them. */
  sources: string[];
  /** When it was last fetched, when the index says (ISO 8601). */
  fetchedAt: string | null;
}

type Origin = { kind: 'url'; url: URL; key: string } | { kind: 'path'; path: string; key: string };

const SHA256_HEX = /^[0-9a-f]{64}$/;
const IMAGE_NAME = /^([0-9a-f]{64})\.(qcow2|raw)$/;
const FORMATS: readonly ImageFormat[] = ['qcow2', 'raw'];
/** A partial file untouched this long belongs to a process that died (a live download writes every second). */
const LEFTOVER_MS = 10 * 60_000;

/** Parses a sha256 given as hex or "sha256:HEX" (any case); null when none is given. */
export function parseSha256(value: string | undefined): string | null {
  if (value === undefined) return null;
  const hex = value.trim().replace(/^sha256:/i, '').toLowerCase();
  if (!SHA256_HEX.test(hex)) {
    throw new ImageFetchError('INVALID_ARGUMENT', `"${value}" is not a sha256: give 64 hexadecimal digits (optionally after "sha256:").`);
  }
  return hex;
}

function parseSource(source: string): Origin {
  if (/^https?:\/\//i.test(source)) {
    let url: URL;
    try {
      url = new URL(source);
    } catch {
      throw new ImageFetchError('INVALID_ARGUMENT', `"${source}" is not a valid URL: check it.`);
    }
    return { kind: 'url', url, key: redactUrl(url) };
  }
  if (/^file:/i.test(source)) {
    let path: string;
    try {
      path = fileURLToPath(source);
    } catch {
      throw new ImageFetchError('INVALID_ARGUMENT', `"${source}" is not a valid file: URL: give the path itself.`);
    }
    return { kind: 'path', path, key: path };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
    throw new ImageFetchError('INVALID_ARGUMENT', `"${source.split('://')[0]}://" addresses cannot be fetched: give an http(s) URL or a local path.`);
  }
  if (source.trim() === '') throw new ImageFetchError('INVALID_ARGUMENT', 'No image was given: give a local path or an http(s) URL.');
  const path = resolve(source);
  return { kind: 'path', path, key: path };
}

function imageFile(cacheDir: string, sha256: string, format: ImageFormat): string {
  return join(cacheDir, `${sha256}.${format}`);
}

async function fileSize(path: string): Promise<number | null> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : null;
  } catch {
    return null;
  }
}

/** The cached file for a hash, if there is one. */
async function findCached(cacheDir: string, sha256: string): Promise<{ path: string; format: ImageFormat; size: number } | null> {
  for (const format of FORMATS) {
    const path = imageFile(cacheDir, sha256, format);
    const size = await fileSize(path);
    if (size !== null) return { path, format, size };
  }
  return null;
}

/**
 * Brings the disk image at `source` (a local path or an http(s) URL) into the cache and returns it. A source
 * the index already knows (for a path: same size and mtime) or a `sha256` already cached returns at once, with
 * no network and no copy. Throws an ImageFetchError; after any failure the cache holds nothing new.
 */
export async function fetchImage(source: string, options: FetchImageOptions): Promise<CachedImage> {
  const expected = parseSha256(options.sha256);
  const origin = parseSource(source);
  const label = origin.key;
  const cacheDir = resolve(options.cacheDir);
  if (options.signal?.aborted) throw new ImageFetchError('CANCELLED', `Fetching ${label} was cancelled.`, { source: label });
  try {
    await mkdir(cacheDir, { recursive: true });
  } catch (e) {
    throw cacheIoError(e, cacheDir, label);
  }
  await sweepLeftovers(cacheDir, Math.max(LEFTOVER_MS, 2 * (options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS)));

  const known = options.refresh === true ? undefined : (await readIndex(cacheDir)).sources[origin.key];
  let sourceStat: { size: number; mtimeMs: number } | null = null;
  if (origin.kind === 'path') {
    sourceStat = await statSource(origin.path, label);
    const unchanged = known !== undefined && known.size === sourceStat.size && known.mtimeMs === sourceStat.mtimeMs;
    if (unchanged && expected !== null && expected !== known.sha256) throw mismatch(label, expected, known.sha256);
    if (unchanged) {
      const hit = await fromCache(cacheDir, known.sha256, origin.key, known, options.onProgress);
      if (hit !== null) return hit;
    }
  } else {
    // A URL's content is trusted to be what its hash said: no request, not even a HEAD.
    const sha = expected ?? known?.sha256;
    if (sha !== undefined) {
      const hit = await fromCache(cacheDir, sha, origin.key, known?.sha256 === sha ? known : undefined, options.onProgress);
      if (hit !== null) return hit;
    }
  }

  const partial = join(cacheDir, `${randomBytes(12).toString('hex')}.partial`);
  try {
    const transfer = { cacheDir, label, onProgress: options.onProgress, signal: options.signal, idleTimeoutMs: options.idleTimeoutMs };
    let got: Transferred;
    const entryExtras: Partial<IndexEntry> = {};
    if (origin.kind === 'url') {
      const d = await downloadToFile(origin.url, partial, transfer);
      got = d;
      if (d.start.etag !== null) entryExtras.etag = d.start.etag;
      if (d.start.lastModified !== null) entryExtras.lastModified = d.start.lastModified;
    } else {
      got = await copyToFile(origin.path, sourceStat!.size, partial, transfer);
      const after = await statSource(origin.path, label);
      if (after.size !== sourceStat!.size || after.mtimeMs !== sourceStat!.mtimeMs) {
        throw new ImageFetchError('IO_ERROR', `${label} changed while it was being copied: try again once nothing writes to it.`, { source: label });
      }
      entryExtras.mtimeMs = sourceStat!.mtimeMs;
    }
    const facts = await inspectImage(partial, label, origin.kind === 'url');
    if (expected !== null && got.sha256 !== expected) throw mismatch(label, expected, got.sha256);
    if (options.signal?.aborted) throw new ImageFetchError('CANCELLED', `Fetching ${label} was cancelled.`, { source: label });
    const entry: IndexEntry = {
      sha256: got.sha256,
      format: facts.format,
      size: got.size,
      virtualSize: facts.virtualSize,
      fetchedAt: new Date().toISOString(),
      ...entryExtras,
    };
    const path = await place(cacheDir, partial, origin.key, entry);
    return { path, format: facts.format, virtualSize: facts.virtualSize, sha256: got.sha256, source: origin.key, size: got.size, fromCache: false };
  } catch (e) {
    await rm(partial, { force: true }).catch(() => {});
    throw cacheIoError(e, cacheDir, label);
  }
}

/** Moves the checked partial file to its name and records the source, both inside the cache's lock. */
async function place(cacheDir: string, partial: string, key: string, entry: IndexEntry): Promise<string> {
  const target = imageFile(cacheDir, entry.sha256, entry.format);
  let placed = false;
  await updateIndex(
    cacheDir,
    async (index) => {
      if ((await fileSize(target)) !== null) {
        await unlink(partial); // another fetch brought the same bytes first
      } else {
        await chmod(partial, 0o444);
        await rename(partial, target);
        placed = true;
        await fsyncDir(cacheDir);
      }
      index.sources[key] = entry;
    },
    async () => {
      if (placed) await removeImageFile(target);
    },
  );
  return target;
}

async function fromCache(cacheDir: string, sha256: string, key: string, known: IndexEntry | undefined, onProgress: ProgressCallback | undefined): Promise<CachedImage | null> {
  const cached = await findCached(cacheDir, sha256);
  if (cached === null) return null;
  let virtualSize = known?.virtualSize;
  if (virtualSize === undefined || known?.format !== cached.format) {
    try {
      virtualSize = (await inspectImage(cached.path, cached.path, false)).virtualSize;
    } catch {
      return null; // damaged by hand: fetch it again
    }
  }
  onProgress?.(cached.size, cached.size);
  return { path: cached.path, format: cached.format, virtualSize, sha256, source: key, size: cached.size, fromCache: true };
}

async function statSource(path: string, label: string): Promise<{ size: number; mtimeMs: number }> {
  let s;
  try {
    s = await stat(path);
  } catch (e) {
    throw sourceError(e, label);
  }
  if (s.isDirectory()) throw new ImageFetchError('NOT_AN_IMAGE', `${label} is a folder, not a disk image: give the image file inside it.`, { source: label });
  if (!s.isFile()) throw new ImageFetchError('NOT_AN_IMAGE', `${label} is not a regular file (a device, pipe or socket): give a disk image file.`, { source: label });
  return { size: s.size, mtimeMs: s.mtimeMs };
}

function mismatch(label: string, expected: string, actual: string): ImageFetchError {
  return new ImageFetchError('CHECKSUM_MISMATCH', `${label} has sha256 ${actual}, not the expected ${expected}: check the checksum you gave, or fetch the image again from a trusted source.`, { source: label, expected, actual });
}

/** Removes partial and temporary files of fetches whose process died (a live one keeps writing its own). */
async function sweepLeftovers(cacheDir: string, olderThanMs: number): Promise<void> {
  let names: string[];
  try {
    names = await readdir(cacheDir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.endsWith('.partial') && !(name.startsWith('.index.json.') && name.endsWith('.tmp'))) continue;
    const path = join(cacheDir, name);
    try {
      if (Date.now() - (await stat(path)).mtimeMs > olderThanMs) await rm(path, { force: true });
    } catch {
      // gone meanwhile, or not ours to remove: leave it
    }
  }
}

async function removeImageFile(path: string): Promise<void> {
  // Windows refuses to delete a read-only file.
  if (process.platform === 'win32') await chmod(path, 0o644).catch(() => {});
  await rm(path, { force: true });
}

/** The images in the cache, with the sources each came from. A missing cache folder is an empty cache. */
export async function listCachedImages(cacheDir: string): Promise<CachedImageInfo[]> {
  const dir = resolve(cacheDir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw cacheIoError(e, dir);
  }
  const index = await readIndex(dir);
  const images: CachedImageInfo[] = [];
  for (const name of names.sort()) {
    const m = IMAGE_NAME.exec(name);
    if (m === null) continue;
    const sha256 = m[1]!;
    const format = m[2] as ImageFormat;
    const path = join(dir, name);
    const size = await fileSize(path);
    if (size === null) continue;
    const entries = Object.entries(index.sources).filter(([, e]) => e.sha256 === sha256 && e.format === format);
    let virtualSize = entries[0]?.[1].virtualSize;
    if (virtualSize === undefined) {
      try {
        virtualSize = (await inspectImage(path, path, false)).virtualSize;
      } catch {
        continue; // not an image we placed: leave it out
      }
    }
    const fetched = entries.map(([, e]) => e.fetchedAt).filter((t) => t !== '').sort();
    images.push({ sha256, path, format, size, virtualSize, sources: entries.map(([s]) => s).sort(), fetchedAt: fetched.at(-1) ?? null });
  }
  return images;
}

/**
 * Deletes a cached image and the index entries that lead to it. Whether a machine still uses it as a base layer
 * is the caller's question. Throws NOT_FOUND when the cache has no image with that hash.
 */
export async function removeCachedImage(cacheDir: string, sha256: string): Promise<void> {
  const dir = resolve(cacheDir);
  const sha = parseSha256(sha256)!;
  try {
    await updateIndex(dir, async (index) => {
      const cached = await findCached(dir, sha);
      const sources = Object.keys(index.sources).filter((s) => index.sources[s]!.sha256 === sha);
      if (cached === null && sources.length === 0) {
        throw new ImageFetchError('NOT_FOUND', `The image cache has no image with sha256 ${sha}: list the cached images to see what it holds.`);
      }
      for (const format of FORMATS) await removeImageFile(imageFile(dir, sha, format));
      for (const s of sources) delete index.sources[s];
    });
  } catch (e) {
    throw cacheIoError(e, dir);
  }
}
