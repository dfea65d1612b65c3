// Where a command's results go: lines for people, or exactly one JSON document for programs, and a progress line.
import type { OperationOptions } from '../engine/qcow2';

// Control characters (newline and tab kept) and text-direction overrides: a name from a hand-edited file must not
// drive the terminal (ESC sequences) or reorder what is shown.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/gu;

/** Text with every unprintable character shown as a \u escape (newline and tab kept). */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export interface TextSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

export interface CliIo {
  stdout: TextSink;
  stderr: TextSink;
  env: Readonly<Record<string, string | undefined>>;
}

/** Progress of one long operation: a percentage redrawn on stderr when it is a terminal, nothing otherwise. */
export interface Progress {
  update(done: number, total: number): void;
  /** Clears the line; call before printing anything else. */
  finish(): void;
}

export class Output {
  private jsonWritten = false;
  private progressShown = false;

  constructor(
    readonly io: CliIo,
    readonly json: boolean,
  ) {}

  /** Human-readable lines on stdout; ignored under --json, where the document says it all. */
  print(text: string): void {
    if (this.json) return;
    this.clearProgress();
    const safe = printable(text);
    this.io.stdout.write(safe.endsWith('\n') ? safe : `${safe}\n`);
  }

  /** The JSON document; only under --json, and only once. */
  document(value: unknown): void {
    if (!this.json) return;
    if (this.jsonWritten) throw new Error('A command tried to print a second JSON document.');
    this.jsonWritten = true;
    this.io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  get wroteDocument(): boolean {
    return this.jsonWritten;
  }

  /** One readable sentence on stderr (errors, warnings, cancellation). */
  error(sentence: string): void {
    this.clearProgress();
    this.io.stderr.write(`${printable(sentence)}\n`);
  }

  progress(label: string): Progress {
    if (!this.io.stderr.isTTY && this.io.env.VMSNAP_PROGRESS !== '1') return { update: () => {}, finish: () => {} };
    let lastPercent = -1;
    return {
      update: (done, total) => {
        const percent = total > 0 ? Math.floor((done / total) * 100) : 100;
        if (percent === lastPercent) return;
        lastPercent = percent;
        this.progressShown = true;
        this.io.stderr.write(`\r${label}: ${percent}%`);
      },
      finish: () => this.clearProgress(),
    };
  }

  private clearProgress(): void {
    if (!this.progressShown) return;
    this.progressShown = false;
    // Erase the progress line so the next output starts clean.
    this.io.stderr.write(this.io.stderr.isTTY ? '\r\x1b[K' : '\n');
  }
}

/** What every command receives besides its arguments. */
export interface CliContext {
  out: Output;
  /** Aborted on Ctrl-C; long operations pass it to the engine, which then stops cleanly. */
  signal: AbortSignal;
}

/** Prints a result: the JSON document under --json, the human text otherwise. */
export function emit(ctx: CliContext, document: unknown, human: () => string): void {
  if (ctx.out.json) ctx.out.document(document);
  else ctx.out.print(human());
}

/**
 * Runs a long engine operation with a progress line (on a terminal) and Ctrl-C wired to its AbortSignal.
 * A cancellation surfaces as the engine's ABORTED error, which the caller lets through (exit 130).
 */
export async function longOperation<T>(ctx: CliContext, label: string, run: (options: OperationOptions) => Promise<T>): Promise<T> {
  const progress = ctx.out.progress(label);
  try {
    return await run({ onProgress: (done, total) => progress.update(done, total), signal: ctx.signal });
  } finally {
    progress.finish();
  }
}
