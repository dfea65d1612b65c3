/**
 * Why a cloud-init seed could not be built or written. `code` is for programs (the CLI maps it to an exit status,
 * the extension to a dialog); `message` is one sentence naming the problem and the way out.
 */
export type SeedErrorCode =
  | 'INVALID_USER' // the guest user name breaks useradd's rules or names a system account
  | 'INVALID_HOSTNAME' // not an RFC 1123 label
  | 'INVALID_INSTANCE_ID' // empty, too long, or with characters unsafe in a guest path
  | 'INVALID_KEY' // an authorized key or host key is malformed, multi-line, or the host key pair does not match
  | 'INVALID_USER_DATA' // the caller's own user-data is empty or not text
  | 'INVALID_FILE' // a seed file name or the volume label is not allowed, or names collide
  | 'NO_SPACE' // the disk filled up while writing the seed image
  | 'IO_ERROR'; // any other file-system failure

export class SeedError extends Error {
  override readonly name = 'SeedError';
  constructor(
    readonly code: SeedErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isSeedError(e: unknown): e is SeedError {
  return e instanceof Error && e.name === 'SeedError' && typeof (e as SeedError).code === 'string';
}
