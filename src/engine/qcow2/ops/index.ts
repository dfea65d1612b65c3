// Whole-disk operations on qcow2 chains: each streams, skips what is unallocated or zero, reports progress and
// can be cancelled.
export { flatten, type FlattenOptions, type FlattenResult } from './flatten';
export { commit, rollBackInterruptedCommit, type CommitOptions, type CommitResult } from './commit';
export { rebase, rollBackInterruptedRebase, type RebaseOptions, type RebaseResult } from './rebase';
export { compare, type CompareResult } from './compare';
export { changedRanges, type ChangedRanges, type ChangedRangesOptions } from './changed-ranges';
export { alignRanges, mergeRanges, type ByteRange } from './ranges';
export type { DiskSource } from './layers';
