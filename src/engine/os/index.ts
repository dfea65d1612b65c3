// The operating system as the engine needs it: process liveness, pid-file locks, atomic files, flushing.
export { isProcessAlive, processStart } from './process';
export { createLockFile } from './pid-lock';
export { exists, fsyncDir, fsyncPath, unlinkIfExists } from './files';
export { atomicWrite, atomicWriteJson, temporaryNameFor, writeAtomically, type AtomicWriteOptions } from './atomic-file';
export { imageWriters, type ImageWriter } from './image-writers';
