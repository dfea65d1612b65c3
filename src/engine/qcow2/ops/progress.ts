import type { OperationOptions } from '../disk';
import { throwIfAborted } from '../errors';

/**
 * Progress and cancellation of one operation: `step` is called between chunks (each at most a few MiB), so the
 * caller hears about progress and an abort is noticed within one chunk.
 */
export class Progress {
  private done = 0;

  constructor(
    private readonly what: string,
    readonly total: number,
    private readonly options: OperationOptions,
  ) {
    this.checkAborted();
    options.onProgress?.(0, total);
  }

  checkAborted(): void {
    throwIfAborted(this.options.signal, this.what);
  }

  /** Counts `bytes` as done, reports, and throws ABORTED if the caller cancelled. */
  step(bytes: number): void {
    this.done = Math.min(this.total, this.done + bytes);
    this.options.onProgress?.(this.done, this.total);
    this.checkAborted();
  }

  finish(): void {
    if (this.done < this.total) this.options.onProgress?.(this.total, this.total);
    this.done = this.total;
  }
}
