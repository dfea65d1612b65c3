// The `vmsnap` executable: wires the process (argv, streams, Ctrl-C, exit status) to runCli.
import { EXIT_CANCELLED, runCli } from './run';

const controller = new AbortController();
let interrupts = 0;
const onInterrupt = (signal: NodeJS.Signals): void => {
  interrupts++;
  if (interrupts === 1) {
    // The running operation stops at its next chunk and cleans up; its ABORTED error sets the exit status.
    process.stderr.write(signal === 'SIGINT' ? '\nStopping (press Ctrl-C again to quit at once)...\n' : 'Stopping...\n');
    controller.abort();
    return;
  }
  process.stderr.write('Quit without cleaning up.\n');
  process.exit(EXIT_CANCELLED);
};
process.on('SIGINT', onInterrupt);
process.on('SIGTERM', onInterrupt);

// `vmsnap image map big.qcow2 | head` closes the pipe early; that is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

void runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env }, controller.signal).then(
  (status) => {
    process.off('SIGINT', onInterrupt);
    process.off('SIGTERM', onInterrupt);
    process.exitCode = status;
  },
);
