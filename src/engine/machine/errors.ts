import type { PowerState } from './types';

/**
 * Why a library operation was refused or failed. `code` is for programs (the CLI maps it to an exit status, the
 * extension to a dialog); `message` is one sentence a person can act on.
 */
export type MachineErrorCode =
  | 'NOT_FOUND' // no machine / snapshot matches the reference
  | 'AMBIGUOUS' // a name matches several machines or snapshots; `candidates` lists them
  | 'BUSY' // another operation (this or another process) holds the machine's lock
  | 'LOCKED_BY_CLONES' // linked clones depend on the snapshot or machine; `candidates` names them
  | 'POWERED_ON' // the operation needs the machine powered off
  | 'INVALID_NAME' // empty, too long, or with control characters
  | 'INVALID_MANIFEST' // machine.json (or operation.json) is unreadable or has a wrong field
  | 'INVALID_ARGUMENT' // a parameter is wrong (size, cpu count, conflicting options)
  | 'NEEDS_CONFIRMATION' // a destructive step needs an explicit option (e.g. revert: discardCurrent / saveCurrentAs)
  | 'ALREADY_EXISTS' // the target folder of a clone or import exists
  | 'NO_SPACE' // the disk filled up; the source is untouched
  | 'ABORTED' // cancelled through the AbortSignal; nothing was left behind
  | 'IMAGE_ERROR' // the disk layer refused an image; `cause` is the ImageError
  | 'ALREADY_RUNNING' // the machine already runs (in this or another process)
  | 'NOT_RUNNING' // the operation needs a running or paused machine
  | 'QEMU_MISSING' // qemu-system-x86_64 is not installed (the message says how to install it)
  | 'RUNTIME_ERROR' // QEMU failed or refused; `cause` is the QemuError
  | 'FETCH_FAILED' // a cloud image could not be fetched or is not a usable disk image; `cause` is the ImageFetchError
  | 'SSH_TIMEOUT' // the machine's SSH server did not answer in time (the message names the serial log)
  | 'IO_ERROR'; // any other file-system failure

/**
 * What a front end needs to word an error its own way (the CLI names its commands and flags, the extension its
 * buttons); the error's `message` is a plain default that names neither.
 */
export type MachineErrorDetail =
  /** NOT_FOUND: no machine in the library matches `ref`. */
  | { kind: 'machine-not-found'; ref: string }
  /** NOT_FOUND: the machine has no snapshot matching `ref`. */
  | { kind: 'snapshot-not-found'; machineName: string; ref: string }
  /** NEEDS_CONFIRMATION: a revert was asked for without saying what becomes of the current state. */
  | { kind: 'revert-discards-current' }
  /** NEEDS_CONFIRMATION: a machine to delete was exported to libvirt, and that domain still reads its folder. */
  | { kind: 'libvirt-domain-exported'; machineName: string; domain: string; connection: string; powerState: PowerState }
  /** POWERED_ON: the exported domain to undefine with the machine runs (or is paused). */
  | { kind: 'libvirt-domain-running'; machineName: string; domain: string; connection: string }
  /** RUNTIME_ERROR: the connection a machine was exported to cannot be read, so what a delete leaves is unknown. */
  | { kind: 'libvirt-unreachable'; machineName: string; domain: string; connection: string; reason: string };

export class MachineError extends Error {
  override readonly name = 'MachineError';
  /** Structured fields for the front ends to word the error with (see MachineErrorDetail), or null. */
  readonly detail: MachineErrorDetail | null;
  constructor(
    readonly code: MachineErrorCode,
    message: string,
    /** For AMBIGUOUS and LOCKED_BY_CLONES: what matched or what depends, as readable strings. */
    readonly candidates: readonly string[] = [],
    options?: { cause?: unknown; detail?: MachineErrorDetail },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.detail = options?.detail ?? null;
  }
}

export function isMachineError(e: unknown): e is MachineError {
  return e instanceof Error && e.name === 'MachineError' && typeof (e as MachineError).code === 'string';
}
