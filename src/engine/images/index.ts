// The image cache: cloud images (qcow2 or raw) fetched from a URL or a local path once, checked, and kept by hash.
// Layout of a cache folder: `<sha256>.qcow2` / `<sha256>.raw` (read-only images), `index.json` (source → sha256,
// size, virtual size, mtime or ETag), `index.lock` while the index changes, `<random>.partial` while a fetch runs.
export * from './errors';
export { fetchImage, listCachedImages, removeCachedImage, parseSha256 } from './cache';
export type { CachedImage, CachedImageInfo, FetchImageOptions } from './cache';
export { sniff, inspectImage, HEAD_BYTES } from './detect';
export type { ImageFormat, ImageFacts, Verdict } from './detect';
export { DEFAULT_IDLE_TIMEOUT_MS, MAX_REDIRECTS } from './http-download';
