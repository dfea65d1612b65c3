// The serial console of a running machine: its serial port as a unix socket (`vm console`, the extension's
// terminal). QEMU serves one console client at a time; a second one waits until the first leaves.
import { open } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { QemuError } from './errors';
import { machineStatus } from './qemu';

/** Ctrl-] leaves the console, as in telnet and virsh. */
export const CONSOLE_ESCAPE = 0x1d;

/**
 * The last whole lines (at most `lines`, from the last `bytes`) of a serial log: what the guest printed while
 * nobody was connected, a login prompt say. '' when there is none. A console connects first and reads this
 * after, so a line printed in between may show twice, but none goes missing.
 */
export async function serialLogTail(path: string, lines = 40, bytes = 8 * 1024): Promise<string> {
  try {
    const fh = await open(path, 'r');
    try {
      const size = (await fh.stat()).size;
      const start = Math.max(0, size - bytes);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      let text = buf.toString('utf8');
      if (start > 0) text = text.slice(text.indexOf('\n') + 1);
      return text.split('\n').slice(-lines - 1).join('\n');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

/** Connects to the machine's serial port; bytes read are the guest's output, bytes written its input. */
export async function openConsole(folder: string, timeoutMs = 5000): Promise<Socket> {
  const status = await machineStatus(folder);
  if (status.powerState === 'off' || status.consoleSocket === null) {
    throw new QemuError('NOT_RUNNING', `The machine in ${folder} is not running: start it, then open its console.`);
  }
  const path = status.consoleSocket;
  return new Promise<Socket>((resolve, reject) => {
    const sock = connect({ path });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new QemuError('TIMEOUT', `The console socket ${path} did not answer within ${timeoutMs} ms.`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (e) => {
      clearTimeout(timer);
      reject(new QemuError('QMP_UNAVAILABLE', `Cannot open the console ${path}: ${e.message}`, { cause: e }));
    });
  });
}

export interface ConsoleStreams {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
}

/** After the input ends, the console stays until the guest has been quiet this long (its answer to the last line). */
export const CONSOLE_EOF_QUIET_MS = 500;
/** ... but no longer than this after the input ended. */
export const CONSOLE_EOF_MAX_MS = 10000;

/**
 * Joins a terminal to the console until the escape byte (Ctrl-]) is typed, the input ends (piped input: the
 * console leaves once the guest has answered, see CONSOLE_EOF_QUIET_MS) or the machine ends. The caller puts the
 * terminal in raw mode first (so Ctrl-C goes to the guest) and restores it afterwards. Resolves with why it ended.
 */
export function attachConsole(sock: Socket, streams: ConsoleStreams, escape = CONSOLE_ESCAPE): Promise<'escape' | 'closed' | 'eof'> {
  return new Promise((resolve) => {
    let quiet: NodeJS.Timeout | null = null;
    let limit: NodeJS.Timeout | null = null;
    const leaveWhenQuiet = (): void => {
      if (quiet !== null) clearTimeout(quiet);
      quiet = setTimeout(() => finish('eof'), CONSOLE_EOF_QUIET_MS);
    };
    const onEnd = (): void => {
      limit = setTimeout(() => finish('eof'), CONSOLE_EOF_MAX_MS);
      leaveWhenQuiet();
    };
    const onInput = (chunk: Buffer | string): void => {
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      const at = bytes.indexOf(escape);
      if (at >= 0) {
        if (at > 0) sock.write(bytes.subarray(0, at));
        finish('escape');
        return;
      }
      sock.write(bytes);
    };
    const onOutput = (chunk: Buffer): void => {
      streams.output.write(chunk);
      if (limit !== null) leaveWhenQuiet();
    };
    const onClose = (): void => finish('closed');
    let done = false;
    const finish = (why: 'escape' | 'closed' | 'eof'): void => {
      if (done) return;
      done = true;
      if (quiet !== null) clearTimeout(quiet);
      if (limit !== null) clearTimeout(limit);
      streams.input.removeListener('data', onInput);
      streams.input.removeListener('end', onEnd);
      sock.removeListener('data', onOutput);
      sock.removeListener('close', onClose);
      sock.destroy();
      resolve(why);
    };
    streams.input.on('data', onInput);
    streams.input.on('end', onEnd);
    sock.on('data', onOutput);
    sock.on('close', onClose);
    sock.on('error', () => {}); // 'close' follows
  });
}
