// The engine's disk layer: qcow2 images (and raw backing files), read and written natively.
export * from './errors';
export type { Disk, Extent, ExtentKind, ChainExtent, OperationOptions } from './disk';
export { Qcow2Image, probeFormat, storedBackingName, DEFAULT_CLUSTER_SIZE } from './image';
export type { OpenOptions, CreateOptions, InternalSnapshot } from './image';
export { RawDisk } from './raw';
export { openDisk, chainMap, layersOf } from './chain';
export { check, checkExitStatus } from './check';
export type { CheckResult } from './check';
