// The library of machines: manifests, snapshot trees, clone lineage, locks and crash recovery (no vscode).
export { Library, type LibraryScan } from './library';
export { MachineError, isMachineError, type MachineErrorCode, type MachineErrorDetail } from './errors';
export { MIN_ID_PREFIX, refuseIdLikeName, resolveRef, type RefMatch } from './resolve-ref';
export { defaultLibraryDir } from './library-dir';
export { MAX_NAME_LENGTH, folderSlug, validateName } from './names';
export type * from './types';
export type { BrokenMachine } from './store';
export type { SshHostBlock } from './ssh-config';
export { systemClock, formatInterval, type AutoCheckpointOptions, type AutoCheckpointOutcome, type AutoCheckpointResult, type Clock } from './auto-checkpoints';
export type { AutoTrigger } from './auto-policy';
export { AutoScheduler, type AutoSchedulePort, type AutoSchedulerOptions } from './auto-scheduler';
export type { ClockOutcome, GuestAddress, GuestInfo, QuiesceOutcome } from '../runtime';
export type { Screenshot } from './screen';
export type { LibvirtExportRecord } from './libvirt-exports';
