// A small client for QEMU's machine protocol (QMP): newline-delimited JSON over a unix socket. One command at a
// time is enough for us, but replies are matched by id so a late reply can never answer the wrong command.
import { connect, type Socket } from 'node:net';
import { QemuError, QmpError } from './errors';

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpOptions {
  /** Time-out for connecting plus the greeting and capabilities negotiation (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Default time-out of each command (default 30000 ms). */
  commandTimeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface EventWaiter {
  name: string;
  resolve: (e: QmpEvent) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** Parsed QMP greeting: QEMU's version. */
export interface QmpGreeting {
  version: { major: number; minor: number; micro: number };
  package: string;
}

export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly waiters = new Set<EventWaiter>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private closedError: QemuError | null = null;
  private greetingResolve: ((g: QmpGreeting) => void) | null = null;
  /** QEMU's version, from the greeting. */
  greeting: QmpGreeting = { version: { major: 0, minor: 0, micro: 0 }, package: '' };

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
    private readonly commandTimeoutMs: number,
  ) {}

  /** Connects, reads the greeting and leaves negotiation mode; QEMU's version is in `greeting`. */
  static async connect(path: string, options: QmpOptions = {}): Promise<QmpClient> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    const socket = connect({ path });
    const client = new QmpClient(socket, path, options.commandTimeoutMs ?? 30000);
    const greeting = new Promise<QmpGreeting>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new QemuError('TIMEOUT', `QEMU's control socket ${path} did not greet within ${connectTimeoutMs} ms: another program may hold it; close it and try again.`));
      }, connectTimeoutMs);
      client.greetingResolve = (g) => {
        clearTimeout(timer);
        resolve(g);
      };
      socket.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new QemuError('QMP_UNAVAILABLE', `Cannot reach QEMU's control socket ${path} (${e.code ?? e.message}): the machine is not running or its files are stale.`, { cause: e }));
      });
      socket.once('close', () => {
        clearTimeout(timer);
        reject(new QemuError('QMP_UNAVAILABLE', `QEMU closed its control socket ${path} before greeting.`));
      });
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => client.onData(chunk));
    socket.on('error', (e) => client.fail(new QemuError('QMP_UNAVAILABLE', `QEMU's control socket failed: ${e.message}`, { cause: e })));
    socket.on('close', () => client.fail(new QemuError('QMP_UNAVAILABLE', 'QEMU closed its control socket (the process ended).')));
    try {
      client.greeting = await greeting;
      await client.execute('qmp_capabilities');
    } catch (e) {
      socket.destroy();
      throw e;
    }
    return client;
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  /** Runs a command; resolves with its `return` value, rejects with QmpError on QEMU's error reply. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = this.commandTimeoutMs): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = `vmsnap-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QemuError('TIMEOUT', `QEMU did not answer ${command} within ${timeoutMs} ms.`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** An HMP command line through QMP; HMP reports its errors in the text, so a reply starting with "Error" throws. */
  async hmp(commandLine: string): Promise<string> {
    const out = await this.execute<string>('human-monitor-command', { 'command-line': commandLine });
    if (/^\s*Error\b/i.test(out)) throw new QmpError(`human-monitor-command "${commandLine}"`, 'GenericError', out.trim());
    return out;
  }

  /** Resolves on the next event of that name. Register before running the command that causes it. */
  nextEvent(name: string, timeoutMs = this.commandTimeoutMs): Promise<QmpEvent> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise<QmpEvent>((resolve, reject) => {
      const waiter: EventWaiter = {
        name,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(new QemuError('TIMEOUT', `QEMU sent no ${name} event within ${timeoutMs} ms.`));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /** Every event, as it arrives; returns a function that removes the listener. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves once QEMU has closed the connection (e.g. after `quit`), or after the time-out. */
  async waitClosed(timeoutMs: number): Promise<boolean> {
    if (this.closed) return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  close(): void {
    this.fail(new QemuError('QMP_UNAVAILABLE', 'The QMP connection was closed.'));
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // not JSON: ignore rather than break the connection
    }
    if ('QMP' in msg) {
      const qmp = msg['QMP'] as { version?: { qemu?: QmpGreeting['version']; package?: string } };
      this.greetingResolve?.({ version: qmp.version?.qemu ?? { major: 0, minor: 0, micro: 0 }, package: qmp.version?.package ?? '' });
      this.greetingResolve = null;
      return;
    }
    if (typeof msg['event'] === 'string') {
      const event: QmpEvent = {
        event: msg['event'],
        data: (msg['data'] as Record<string, unknown> | undefined) ?? {},
        timestamp: (msg['timestamp'] as QmpEvent['timestamp'] | undefined) ?? { seconds: 0, microseconds: 0 },
      };
      for (const w of [...this.waiters]) {
        if (w.name !== event.event) continue;
        this.waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve(event);
      }
      for (const l of this.listeners) l(event);
      return;
    }
    const id = typeof msg['id'] === 'string' ? msg['id'] : null;
    const p = id === null ? undefined : this.pending.get(id);
    if (!p || id === null) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ('error' in msg) {
      const err = msg['error'] as { class?: string; desc?: string };
      p.reject(new QmpError(p.command, err.class ?? 'GenericError', err.desc ?? 'unknown error'));
    } else {
      p.resolve(msg['return']);
    }
  }

  private fail(error: QemuError): void {
    if (this.closedError) return;
    this.closedError = error;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(error);
    }
    this.pending.clear();
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(error);
    }
    this.waiters.clear();
  }
}

/** Connects, runs `fn`, and always closes: QEMU serves one QMP client at a time, so connections stay short. */
export async function withQmp<T>(path: string, fn: (qmp: QmpClient) => Promise<T>, options: QmpOptions = {}): Promise<T> {
  const qmp = await QmpClient.connect(path, options);
  try {
    return await fn(qmp);
  } finally {
    qmp.close();
  }
}
