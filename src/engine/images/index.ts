// The image cache: cloud images (qcow2 or raw) fetched from a URL or a path once, checked, and kept by hash.
export * from './errors';
export { fetchImage, listCachedImages, removeCachedImage, parseSha256 } from './cache';
export type { CachedImage, CachedImageInfo, FetchImageOptions } from './cache';
export { sniff, inspectImage, HEAD_BYTES } from './detect';
export type { ImageFormat, ImageFacts, Verdict } from './detect';
export { DEFAULT_IDLE_TIMEOUT_MS, MAX_REDIRECTS } from './http-download';
