// Helpers the `vmsnap image` commands share: option values, opening and closing images, stream chunks.
import { Qcow2Image, type OpenOptions } from '../../engine/qcow2';
import { UsageError, type FlagSpec, type Invocation } from '../args';
import { parseSize } from '../units';

export const FORCE_FLAG: FlagSpec = { name: 'force', kind: 'boolean', description: 'replace the file if it exists' };

export function backingFormatOption(inv: Invocation): 'qcow2' | 'raw' | undefined {
  const v = inv.value('backing-format');
  if (v === undefined || v === 'qcow2' || v === 'raw') return v;
  throw new UsageError(`--backing-format "${v}" is not a format: use qcow2 or raw.`, inv.path);
}

export function clusterSizeOption(inv: Invocation): number | undefined {
  const v = inv.value('cluster-size');
  return v === undefined ? undefined : parseSize(v, '--cluster-size');
}

/** Opens a qcow2 image, runs `use`, and closes it; a failure to close is reported unless `use` failed first. */
export async function withImage<T>(path: string, options: OpenOptions, use: (image: Qcow2Image) => Promise<T>): Promise<T> {
  const image = await Qcow2Image.open(path, options);
  let result: T;
  try {
    result = await use(image);
  } catch (e) {
    await image.close().catch(() => {});
    throw e;
  }
  await image.close();
  return result;
}

/** Closes a disk whose result is already known (read-only use): a close failure cannot lose data. */
export async function closeQuietly(disk: { close(): Promise<void> }): Promise<void> {
  await disk.close().catch(() => {});
}

/** Chunk size for streaming reads and writes: large enough for throughput, small enough for prompt Ctrl-C. */
export const STREAM_CHUNK = 4 * 1024 * 1024;
