/**
 * Why running a machine with QEMU failed. `code` is for programs (the machine layer maps it to its own errors),
 * `message` is one sentence naming the problem and the way out.
 */
export type QemuErrorCode =
  | 'QEMU_NOT_FOUND' // the qemu-system binary is missing
  | 'START_FAILED' // QEMU exited or refused to start; the message quotes its own words
  | 'ALREADY_RUNNING' // a QEMU process already runs this machine folder
  | 'NOT_RUNNING' // the operation needs a running (or paused) machine
  | 'IMAGE_IN_USE' // another process holds a disk layer's lock
  | 'QMP_ERROR' // QEMU answered a command with an error (see QmpError.errorClass)
  | 'QMP_UNAVAILABLE' // the control socket could not be reached or closed early
  | 'TIMEOUT' // QEMU did not answer or finish in time
  | 'STATE_SAVE_FAILED' // the memory state could not be saved (disks may have been switched: see details)
  | 'STATE_LOAD_FAILED' // a saved memory state could not be loaded
  | 'INVALID_ARGUMENT' // a parameter is wrong
  | 'PORT_TAKEN' // a forwarded host port was taken when QEMU bound it (see `port`)
  | 'ACCEL_FAILED' // the accelerator (KVM) could not run the guest: QEMU's run state became internal-error
  | 'IO_ERROR'; // a file in the machine folder could not be read or written

/** A running snapshot whose disks were switched to new top layers before its memory save failed. */
export interface SwitchedDisks {
  /** The layers QEMU no longer writes: they hold the disks as of the snapshot instant. */
  frozenLayers: string[];
  /** The new top layers QEMU now writes into: the machine's current state must point at them. */
  newTops: string[];
}

export class QemuError extends Error {
  override readonly name: string = 'QemuError';
  /** Set on STATE_SAVE_FAILED when the disks had already been switched: the caller must record the new tops. */
  readonly switched: SwitchedDisks | null;
  /** Set on PORT_TAKEN: the host port another program held. */
  readonly port: number | null;
  constructor(
    readonly code: QemuErrorCode,
    message: string,
    options?: { cause?: unknown; switched?: SwitchedDisks; port?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.switched = options?.switched ?? null;
    this.port = options?.port ?? null;
  }
}

/** QEMU's own error reply to a QMP command: `errorClass` is QMP's class (GenericError, DeviceNotFound, ...). */
export class QmpError extends QemuError {
  override readonly name: string = 'QmpError';
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly description: string,
  ) {
    super('QMP_ERROR', `QEMU refused ${command}: ${description}`);
  }
}

export function isQemuError(e: unknown): e is QemuError {
  return e instanceof Error && (e.name === 'QemuError' || e.name === 'QmpError') && typeof (e as QemuError).code === 'string';
}

export function isQmpError(e: unknown): e is QmpError {
  return e instanceof Error && e.name === 'QmpError';
}
