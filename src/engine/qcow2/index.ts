// The engine's disk layer: qcow2 images (and raw backing files), read and written natively.
export * from './errors';
export type { Disk, Extent, ExtentKind, ChainExtent, OperationOptions } from './disk';
export { Qcow2Image } from './image';
export type { OpenOptions } from './image';
export { DEFAULT_CLUSTER_SIZE } from './create';
export type { CreateOptions } from './create';
export type { InternalSnapshot } from './snapshot-table';
export { RawDisk } from './raw';
export { openDisk, chainMap, layersOf, probeFormat, storedBackingName } from './chain';
export { check, checkExitStatus } from './check';
export type { CheckResult } from './check';
