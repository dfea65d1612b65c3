// The library of machines: manifests, snapshot trees, clone lineage, locks and crash recovery (no vscode).
export { Library, type LibraryScan } from './library';
export { MachineError, isMachineError, type MachineErrorCode } from './errors';
export { defaultLibraryDir } from './libraryDir';
export { formatSnapshotTree } from './format';
export { MAX_NAME_LENGTH, folderSlug, validateName } from './names';
export type * from './types';
export type { BrokenMachine } from './store';
