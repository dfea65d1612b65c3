// Snapshot thumbnails as the UI shows them: a data: URI of the PNG, which VS Code's hovers (tree tooltips) and our
// webviews (CSP img-src data:) both display, locally and in remote windows alike (no file URI to map).
import { readFile } from 'node:fs/promises';

/** A thumbnail is ~10-40 KB; anything far larger is not ours and is not inlined. */
const MAX_THUMBNAIL_BYTES = 1024 * 1024;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** The thumbnail as a data: URI, or null when there is none or it is not a PNG (the UI shows a placeholder). */
export async function thumbnailDataUri(file: string | null): Promise<string | null> {
  if (file === null) return null;
  try {
    const bytes = await readFile(file);
    if (bytes.length > MAX_THUMBNAIL_BYTES || !bytes.subarray(0, 8).equals(PNG_SIGNATURE)) return null;
    return `data:image/png;base64,${bytes.toString('base64')}`;
  } catch {
    return null;
  }
}
