// Runs the CLI in-process (runCli) with captured output, and commands that fail on purpose for the outcome tests.
import type { Command, Registry } from '../../src/cli/args';
import type { CliContext, CliIo } from '../../src/cli/output';
import { runCli } from '../../src/cli/run';

export interface Captured {
  status: number;
  stdout: string;
  stderr: string;
}

/** `vmsnap ARGV` through runCli, with the real verbs or `registry`, and what it printed. */
export async function runCaptured(argv: string[], options: { env?: Record<string, string>; registry?: Registry<CliContext> } = {}): Promise<Captured> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: options.env ?? {} };
  const status = await runCli(argv, io, new AbortController().signal, options.registry);
  return { status, stdout, stderr };
}

/** A command that throws `error`, to see how the CLI reports it. */
export const failing = (name: string, error: unknown): Command<CliContext> => ({
  name,
  summary: `fails with ${name}`,
  args: [],
  flags: [],
  run: async () => {
    throw error;
  },
});
