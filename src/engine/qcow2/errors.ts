/** Why an image could not be opened, read or changed. `code` is for programs, `message` for people. */
export type ImageErrorCode =
  | 'NOT_FOUND' // the file does not exist
  | 'BAD_MAGIC' // not a qcow2 image
  | 'UNSUPPORTED_VERSION' // qcow2 version other than 2 or 3
  | 'UNSUPPORTED_FEATURE' // an incompatible feature bit this library does not implement
  | 'MARKED_CORRUPT' // the image's corrupt bit is set
  | 'ENCRYPTED' // AES or LUKS encryption
  | 'EXTERNAL_DATA_FILE' // data lives in another file
  | 'UNSUPPORTED_COMPRESSION' // e.g. zstd
  | 'INVALID_IMAGE' // a table or offset is out of bounds, overlaps, or is malformed
  | 'BACKING_MISSING' // a backing file cannot be found
  | 'BACKING_LOOP' // the backing chain refers back to itself
  | 'BACKING_TOO_DEEP' // more layers than the depth limit
  | 'READ_ONLY' // a write to an image opened read-only (or dirty, or a snapshot view)
  | 'OUT_OF_RANGE' // a guest offset or length outside the virtual disk
  | 'SNAPSHOT_NOT_FOUND' // no internal snapshot with that id or name
  | 'INVALID_ARGUMENT' // a parameter a caller passed is wrong
  | 'ABORTED' // the operation was cancelled through its AbortSignal
  | 'NO_SPACE' // the disk is full
  | 'IO_ERROR'; // any other failure of the file system

/**
 * What is wrong with the image itself, when that is why an operation failed; a front end says how to fix it
 * (the engine's message says what is wrong, not which command repairs it).
 */
export type ImageCondition =
  | 'damaged' // a table or entry is invalid: a check finds out how, and whether a repair fixes it
  | 'dirty' // not closed cleanly (lazy refcounts): its refcounts need a repair before it is written to
  | 'marked-corrupt'; // the corrupt bit is set: it needs a repair before it is used

export class ImageError extends Error {
  override readonly name = 'ImageError';
  constructor(
    readonly code: ImageErrorCode,
    message: string,
    readonly path?: string,
    readonly condition?: ImageCondition,
  ) {
    super(message);
  }
}

export function isImageError(e: unknown): e is ImageError {
  return e instanceof Error && e.name === 'ImageError' && typeof (e as ImageError).code === 'string';
}

/** Turns a Node file-system error into an ImageError naming the file; keeps ImageErrors as they are. */
export function toImageError(e: unknown, path: string): ImageError {
  if (isImageError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  switch (err?.code) {
    case 'ENOENT':
      return new ImageError('NOT_FOUND', `${path} does not exist.`, path);
    case 'ENOSPC':
    case 'EDQUOT':
      return new ImageError('NO_SPACE', `The disk holding ${path} is full: free some space and try again.`, path);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new ImageError('READ_ONLY', `${path} cannot be written: permission denied.`, path);
    default:
      return new ImageError('IO_ERROR', `${path}: ${err?.message ?? String(e)}`, path);
  }
}

export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new ImageError('ABORTED', `${what} was cancelled.`);
}
