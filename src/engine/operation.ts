// What every long engine operation takes: progress reports and cancellation.

/** Progress and cancellation for long operations. */
export interface OperationOptions {
  /** Called now and then with bytes done and bytes in all. */
  onProgress?: (done: number, total: number) => void;
  /** Stops the operation cleanly: the destination is removed, or the source is exactly as it was. */
  signal?: AbortSignal;
}
