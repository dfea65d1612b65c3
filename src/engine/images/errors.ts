// Why bringing a cloud image into the image cache failed. `code` is for programs (the CLI maps it to an exit
// status, the extension to a dialog); `message` is one sentence naming the problem and the way out.
export type ImageFetchErrorCode =
  | 'INVALID_ARGUMENT' // a malformed --sha256, an unsupported URL scheme
  | 'NOT_FOUND' // the local file does not exist, or the server answered 404 / 410
  | 'UNREACHABLE' // DNS failure, connection refused, no route, an untrusted TLS certificate
  | 'TIMEOUT' // no bytes for the idle timeout (30 s unless configured)
  | 'INTERRUPTED' // the connection closed before the whole file arrived
  | 'HTTP_STATUS' // any other non-2xx answer; `status` has it
  | 'BAD_REDIRECT' // too many redirects, a redirect from https to http, or to another scheme
  | 'CHECKSUM_MISMATCH' // the file's sha256 is not the expected one; `expected` and `actual` name both
  | 'NOT_AN_IMAGE' // a web page, a text file, an unknown or damaged file
  | 'UNSUPPORTED_FORMAT' // a disk image or archive we recognise but do not take (compressed, VMDK, ISO, an overlay…)
  | 'CANCELLED' // the AbortSignal fired; nothing was left behind
  | 'NO_SPACE' // the disk holding the cache is (or would be) full
  | 'IO_ERROR'; // any other file-system failure

export interface ImageFetchErrorDetails {
  /** The source as the cache names it (credentials removed from a URL). */
  source?: string;
  /** HTTP_STATUS and NOT_FOUND from a server: the status code. */
  status?: number;
  /** CHECKSUM_MISMATCH: the sha256 asked for and the one the file has. */
  expected?: string;
  actual?: string;
  cause?: unknown;
}

export class ImageFetchError extends Error {
  override readonly name = 'ImageFetchError';
  readonly source: string | undefined;
  readonly status: number | undefined;
  readonly expected: string | undefined;
  readonly actual: string | undefined;

  constructor(
    readonly code: ImageFetchErrorCode,
    message: string,
    details: ImageFetchErrorDetails = {},
  ) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
    this.source = details.source;
    this.status = details.status;
    this.expected = details.expected;
    this.actual = details.actual;
  }
}

export function isImageFetchError(e: unknown): e is ImageFetchError {
  return e instanceof Error && e.name === 'ImageFetchError' && typeof (e as ImageFetchError).code === 'string';
}

/** A file-system failure while writing into the cache, as an ImageFetchError (ENOSPC becomes NO_SPACE). */
export function cacheIoError(e: unknown, cacheDir: string, source?: string): ImageFetchError {
  if (isImageFetchError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  const details = { ...(source !== undefined ? { source } : {}), cause: e };
  switch (err?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new ImageFetchError('NO_SPACE', `The disk holding the image cache (${cacheDir}) is full: free some space and try again.`, details);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new ImageFetchError('IO_ERROR', `The image cache (${cacheDir}) cannot be written (${err.code}): check its permissions.`, details);
    default:
      return new ImageFetchError('IO_ERROR', `The image cache (${cacheDir}) failed: ${err?.message ?? String(e)}.`, details);
  }
}
