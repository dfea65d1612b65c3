// Waiting until a machine's SSH server answers, and finding a free local port for the forward to it.
//
// A TCP connect is not an answer: QEMU's user-mode forward accepts on the host before the guest listens, then
// closes the connection. Only the server's identification line (`SSH-2.0-…`, RFC 4253 §4.2) counts.
import { createConnection, createServer, type Socket } from 'node:net';
import { SshError } from './errors';

export interface WaitForSshOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Before each attempt: its number (from 1), the time waited so far, and why the previous one failed. */
  onAttempt?: (attempt: { attempt: number; elapsedMs: number; lastFailure: string | null }) => void;
  /** How long one connection may stay silent before it is dropped and tried again (default 5 s). */
  attemptTimeoutMs?: number;
  /** Pause between attempts (default 250 ms). */
  retryDelayMs?: number;
}

export interface SshAnswer {
  /** The server's identification line, e.g. `SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3`. */
  banner: string;
  attempts: number;
  elapsedMs: number;
}

// RFC 4253 lets a server send other lines first; an identification line is at most 255 bytes.
const MAX_PRE_BANNER_BYTES = 8 * 1024;

/**
 * Resolves once a connection to host:port reads an SSH identification line; retries until `timeoutMs`, then
 * rejects with SshError TIMEOUT (naming what the last attempt saw), or ABORTED when `signal` fires.
 */
export async function waitForSsh(host: string, port: number, options: WaitForSshOptions): Promise<SshAnswer> {
  const { timeoutMs, signal } = options;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SshError('INVALID_ARGUMENT', `${port} is not a TCP port (1-65535).`);
  if (!(timeoutMs >= 0)) throw new SshError('INVALID_ARGUMENT', `The SSH wait needs a time-out in milliseconds, not ${timeoutMs}.`);
  const attemptTimeoutMs = options.attemptTimeoutMs ?? 5000;
  const retryDelayMs = options.retryDelayMs ?? 250;
  const started = Date.now();
  const deadline = started + timeoutMs;
  let lastFailure: string | null = null;
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw aborted(host, port);
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new SshError(
        'TIMEOUT',
        `No SSH server answered on ${host}:${port} within ${Math.round(timeoutMs / 1000)} s (last attempt: ${lastFailure ?? 'none made'}).`,
        lastFailure,
      );
    }
    options.onAttempt?.({ attempt, elapsedMs: Date.now() - started, lastFailure });
    const limit = Math.min(attemptTimeoutMs, remaining);
    const result = await readBanner(host, port, limit, signal);
    if (result.banner !== undefined) return { banner: result.banner, attempts: attempt, elapsedMs: Date.now() - started };
    // An attempt the deadline cut short (maybe before the connection was even made) learned less than a whole one:
    // the time-out names what the last whole attempt saw, e.g. that the port speaks something else than SSH.
    const cutShort = result.silent === true && limit < attemptTimeoutMs;
    if (!(cutShort && lastFailure !== null)) lastFailure = result.failure;
    await delay(Math.min(retryDelayMs, Math.max(0, deadline - Date.now())), signal).catch(() => {});
  }
}

/**
 * One attempt: the banner, or why there was none; `silent` when its time ran out before the server ended it. Never
 * rejects (abort is checked by the caller's loop).
 */
function readBanner(host: string, port: number, timeoutMs: number, signal: AbortSignal | undefined): Promise<{ banner?: string; failure: string; silent?: true }> {
  return new Promise((resolve) => {
    let received = Buffer.alloc(0);
    let settled = false;
    const socket: Socket = createConnection({ host, port });
    const finish = (r: { banner?: string; failure: string; silent?: true }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(r);
    };
    const onAbort = (): void => finish({ failure: 'cancelled' });
    const timer = setTimeout(() => finish({ failure: received.length > 0 ? 'no SSH identification line' : 'connected, but nothing was sent', silent: true }), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      let start = 0;
      for (let nl = received.indexOf(0x0a); nl !== -1; nl = received.indexOf(0x0a, start)) {
        const line = received.subarray(start, nl).toString('latin1').replace(/\r$/, '');
        // SSH-1.99 is a server that speaks protocol 2 as well.
        if (line.startsWith('SSH-2.0-') || line.startsWith('SSH-1.99-')) return finish({ banner: line, failure: '' });
        if (line.startsWith('SSH-')) return finish({ failure: `the server speaks an unsupported protocol (${line.slice(0, 40)})` });
        start = nl + 1;
      }
      if (received.length > MAX_PRE_BANNER_BYTES) finish({ failure: 'something that is not an SSH server answered' });
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      finish({ failure: e.code === 'ECONNREFUSED' ? 'connection refused' : e.code === 'ECONNRESET' ? 'connection reset before a banner' : e.message });
    });
    socket.on('close', () => finish({ failure: received.length > 0 ? 'closed without an SSH identification line' : 'connection closed before a banner' }));
  });
}

/**
 * A TCP port on 127.0.0.1 that is free now: `preferred` when it is, else one the system picks. Another program
 * can take it before it is used, so whoever binds it must still handle "address in use".
 */
export async function freeLocalPort(preferred?: number): Promise<number> {
  if (preferred !== undefined) {
    if (!Number.isInteger(preferred) || preferred < 1 || preferred > 65535) {
      throw new SshError('INVALID_ARGUMENT', `${preferred} is not a TCP port (1-65535).`);
    }
    const port = await tryListen(preferred);
    if (port !== null) return port;
  }
  const port = await tryListen(0);
  if (port === null) throw new SshError('IO_ERROR', 'No free TCP port on 127.0.0.1.');
  return port;
}

function tryListen(port: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE' || e.code === 'EACCES') resolve(null);
      else reject(new SshError('IO_ERROR', `Cannot open a TCP port on 127.0.0.1: ${e.message}`, null, { cause: e }));
    });
    // exclusive: a port shared with a cluster worker is not free.
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : null;
      server.close(() => resolve(bound));
    });
  });
}

function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error('aborted'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function aborted(host: string, port: number): SshError {
  return new SshError('ABORTED', `Stopped waiting for SSH on ${host}:${port}.`);
}
