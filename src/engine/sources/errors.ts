/**
 * Why an operation on a machine source other than our library was refused or failed. As MachineError: `code` for
 * programs, `message` one sentence a person can act on, `detail` for front ends that word it their own way.
 */
export type SourceErrorCode =
  | 'NOT_FOUND' // no machine / snapshot matches the reference
  | 'UNSUPPORTED' // the source cannot do this (the message says why); detail.kind 'unsupported'
  | 'UNREACHABLE' // the connection's host or daemon cannot be reached
  | 'AUTH_FAILED' // the connection was refused for its credentials (a wrong SSH key)
  | 'TOOL_MISSING' // the source's client (virsh) is not installed
  | 'TIMEOUT' // the source did not answer in time
  | 'POWERED_ON' // the operation needs the machine powered off
  | 'NOT_RUNNING' // the operation needs a running machine
  | 'ALREADY_EXISTS' // a machine or snapshot with the name exists
  | 'INVALID_NAME'
  | 'NEEDS_CONFIRMATION' // a destructive step needs an explicit option
  | 'ABORTED' // cancelled (its AbortSignal); what it had made is removed
  | 'FAILED'; // the source refused for another reason; the message is its own

export type SourceErrorDetail =
  | { kind: 'unsupported'; operation: string; reason: string }
  | { kind: 'machine-not-found'; source: string; ref: string }
  | { kind: 'snapshot-not-found'; machineName: string; ref: string }
  | { kind: 'revert-discards-current' };

export class SourceError extends Error {
  override readonly name = 'SourceError';
  readonly detail: SourceErrorDetail | null;
  constructor(
    readonly code: SourceErrorCode,
    message: string,
    options?: { cause?: unknown; detail?: SourceErrorDetail },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.detail = options?.detail ?? null;
  }
}

export function isSourceError(e: unknown): e is SourceError {
  return e instanceof Error && e.name === 'SourceError' && typeof (e as SourceError).code === 'string';
}

/** The refusal of something a source cannot do, with its reason ("libvirt 9.0 cannot revert to an external snapshot"). */
export function unsupported(operation: string, reason: string): SourceError {
  return new SourceError('UNSUPPORTED', reason, { detail: { kind: 'unsupported', operation, reason } });
}
