/**
 * Why an SSH-side step failed. `code` is for programs (the CLI maps it to an exit status, the extension to a
 * dialog); `message` is one sentence a person can act on.
 */
export type SshErrorCode =
  | 'TIMEOUT' // no SSH server answered in time; `lastFailure` says what the last attempt saw
  | 'ABORTED' // cancelled through the AbortSignal
  | 'INVALID_ARGUMENT' // a name, alias, path or port that ssh could not use safely
  | 'INVALID_KEY' // a key file or public key line that is not what it claims to be
  | 'IO_ERROR'; // a file-system failure while reading or writing keys or known_hosts

export class SshError extends Error {
  override readonly name = 'SshError';
  constructor(
    readonly code: SshErrorCode,
    message: string,
    /** For TIMEOUT: what the last attempt saw ("connection refused", "closed before a banner", …). */
    readonly lastFailure: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isSshError(e: unknown): e is SshError {
  return e instanceof Error && e.name === 'SshError' && typeof (e as SshError).code === 'string';
}
