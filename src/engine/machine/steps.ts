/**
 * The crash-test hook. Every durable step of a mutating operation calls `step()`; with VMSNAP_CRASH_AFTER_STEP=N
 * the process kills itself (SIGKILL, no cleanup, like a power cut without the page-cache loss) right after the
 * Nth step, so tests can interrupt an operation at every point and check what Library.open recovers.
 */
let done = 0;

export function step(what: string): void {
  done++;
  if (process.env['VMSNAP_TRACE_STEPS']) process.stderr.write(`vmsnap step ${done}: ${what}\n`);
  const limit = Number(process.env['VMSNAP_CRASH_AFTER_STEP'] ?? '');
  if (Number.isInteger(limit) && limit > 0 && done >= limit) process.kill(process.pid, 'SIGKILL');
}

/** Steps counted so far in this process (tests use it to know an operation's length). */
export function stepsDone(): number {
  return done;
}
