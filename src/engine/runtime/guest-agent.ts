// A client for the QEMU guest agent (qemu-guest-agent, QGA) over the machine's virtio-serial channel socket:
// resync with guest-sync-delimited, then one command at a time, each with a short time-out. A guest without an
// agent, or with a hung one, must never hang us: every failure is a GuestAgentError, quickly.
import { randomInt } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type { QmpClient } from './qmp';

/** The chardev id the agent's channel has on QEMU's command line (qemu.ts). */
export const AGENT_CHARDEV = 'agent0';

export type GuestAgentErrorCode =
  | 'NO_CHANNEL' // the machine runs without the agent's channel (a state saved before machines had it)
  | 'NOT_CONNECTED' // nothing in the guest opened the channel: no agent installed, or not started yet
  | 'UNAVAILABLE' // the channel's socket could not be reached, or closed
  | 'TIMEOUT' // the agent did not answer in time (hung, busy, or the guest is paused)
  | 'AGENT_ERROR'; // the agent answered with an error

export class GuestAgentError extends Error {
  override readonly name = 'GuestAgentError';
  constructor(
    readonly code: GuestAgentErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
  }
}

export function isGuestAgentError(e: unknown): e is GuestAgentError {
  return e instanceof Error && e.name === 'GuestAgentError' && typeof (e as GuestAgentError).code === 'string';
}

export interface GuestAgentOptions {
  /** Connecting plus the resync (default 2000 ms: a TCG guest polls its channel every 100 ms). */
  syncTimeoutMs?: number;
  /** Default time-out of each command (default 3000 ms). */
  commandTimeoutMs?: number;
}

/** 0xFF is never valid in JSON: it resets the agent's parser, and the agent puts one before its sync reply. */
const DELIMITER = 0xff;

interface Waiting {
  accept: (message: Record<string, unknown>) => boolean;
  resolve: (message: Record<string, unknown>) => void;
  reject: (e: Error) => void;
}

export class GuestAgent {
  private buffer: Buffer = Buffer.alloc(0);
  /** Until the agent's 0xFF arrives, bytes are stale replies to someone else's requests: skipped. */
  private synced = false;
  private waiting: Waiting | null = null;
  private failure: GuestAgentError | null = null;

  private constructor(
    private readonly socket: Socket,
    private readonly commandTimeoutMs: number,
  ) {}

  /** Connects to the channel's socket and resyncs (guest-sync-delimited with a random id). */
  static async connect(path: string, options: GuestAgentOptions = {}): Promise<GuestAgent> {
    const syncTimeoutMs = options.syncTimeoutMs ?? 2000;
    const deadline = Date.now() + syncTimeoutMs;
    const socket = connect({ path });
    const agent = new GuestAgent(socket, options.commandTimeoutMs ?? 3000);
    socket.on('data', (chunk: Buffer) => agent.onData(chunk));
    socket.on('error', (e: NodeJS.ErrnoException) => agent.fail(new GuestAgentError('UNAVAILABLE', `Cannot reach the guest agent's channel ${path} (${e.code ?? e.message}).`, { cause: e })));
    socket.on('close', () => agent.fail(new GuestAgentError('UNAVAILABLE', "The guest agent's channel closed.")));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new GuestAgentError('TIMEOUT', `The guest agent's channel ${path} did not accept a connection within ${syncTimeoutMs} ms.`)), syncTimeoutMs);
        socket.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.once('error', (e) => {
          clearTimeout(timer);
          reject(agent.failure ?? e);
        });
      });
      const id = randomInt(1, 2 ** 31);
      socket.write(Buffer.concat([Buffer.from([DELIMITER]), Buffer.from(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`)]));
      await agent.reply('guest-sync-delimited', Math.max(1, deadline - Date.now()), (m) => m['return'] === id);
    } catch (e) {
      agent.close();
      if (isGuestAgentError(e) && e.code === 'TIMEOUT') throw new GuestAgentError('TIMEOUT', `The guest agent did not answer within ${syncTimeoutMs} ms: it is not running in the guest, hung, or the guest is paused.`, { cause: e });
      throw e;
    }
    return agent;
  }

  /** Runs a command; resolves with its `return` value. A time-out closes the connection (a late reply must not answer the next command). */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = this.commandTimeoutMs): Promise<T> {
    this.write(command, args);
    const reply = await this.reply(command, timeoutMs, () => true);
    if ('error' in reply) {
      const err = reply['error'] as { class?: string; desc?: string } | undefined;
      throw new GuestAgentError('AGENT_ERROR', `The guest agent refused ${command}: ${err?.desc ?? err?.class ?? 'unknown error'}`);
    }
    return reply['return'] as T;
  }

  /**
   * A command the agent does not answer when it works (guest-shutdown): an error reply within `graceMs` still
   * throws; silence means it was carried out.
   */
  async executeNoReply(command: string, args: Record<string, unknown> | undefined, graceMs: number): Promise<void> {
    try {
      await this.execute(command, args, graceMs);
    } catch (e) {
      if (isGuestAgentError(e) && (e.code === 'TIMEOUT' || e.code === 'UNAVAILABLE')) return;
      throw e;
    }
  }

  close(): void {
    this.fail(new GuestAgentError('UNAVAILABLE', "The guest agent's connection was closed."));
    this.socket.destroy();
  }

  private write(command: string, args?: Record<string, unknown>): void {
    if (this.failure) throw this.failure;
    // Nanosecond times do not fit a double: bigints are written as plain JSON integers.
    const text = JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args }, (_, v: unknown) => (typeof v === 'bigint' ? `\u0000${v}` : v));
    this.socket.write(`${text.replace(/"\\u0000(\d+)"/g, '$1')}\n`);
  }

  private reply(command: string, timeoutMs: number, accept: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new GuestAgentError('TIMEOUT', `The guest agent did not answer ${command} within ${timeoutMs} ms.`));
        this.close();
      }, timeoutMs);
      this.waiting = {
        accept,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.onData(Buffer.alloc(0));
    });
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    if (!this.synced) {
      const at = this.buffer.lastIndexOf(DELIMITER);
      if (at < 0) {
        this.buffer = Buffer.alloc(0);
        return;
      }
      this.synced = true;
      this.buffer = this.buffer.subarray(at + 1);
    }
    let nl: number;
    while (this.waiting !== null && (nl = this.buffer.indexOf(0x0a)) >= 0) {
      const raw = this.buffer.subarray(0, nl);
      // A stale sync reply may have put an earlier 0xFF before ours: what follows the last one is the line.
      const line = raw.subarray(raw.lastIndexOf(DELIMITER) + 1).toString('utf8').trim();
      this.buffer = this.buffer.subarray(nl + 1);
      let message: unknown;
      try {
        message = JSON.parse(line);
      } catch {
        continue; // not JSON: skip rather than break the connection
      }
      if (typeof message !== 'object' || message === null || !this.waiting.accept(message as Record<string, unknown>)) continue;
      const w = this.waiting;
      this.waiting = null;
      w.resolve(message as Record<string, unknown>);
    }
  }

  private fail(error: GuestAgentError): void {
    if (this.failure) return;
    this.failure = error;
    const w = this.waiting;
    this.waiting = null;
    w?.reject(error);
  }
}

/**
 * Whether the guest has the agent's channel open, from QEMU's view (query-chardev's frontend-open): false means
 * no agent listens, so nothing needs to wait for one. Null when the machine runs without the channel.
 */
async function agentChannelOpen(qmp: QmpClient): Promise<boolean | null> {
  const chardevs = await qmp.execute<{ label: string; 'frontend-open': boolean }[]>('query-chardev');
  const agent = chardevs.find((c) => c.label === AGENT_CHARDEV);
  return agent === undefined ? null : agent['frontend-open'];
}

/**
 * Connects to the agent of a running machine when one can answer: NO_CHANNEL or NOT_CONNECTED at once (from
 * QEMU's view of the channel), else a connection resynced within the time-out.
 */
export async function connectGuestAgent(qmp: QmpClient, agentSocket: string | undefined, options: GuestAgentOptions = {}): Promise<GuestAgent> {
  if (agentSocket === undefined) throw new GuestAgentError('NO_CHANNEL', 'The machine runs without the guest agent channel (it was resumed from a state saved before machines had one); power it off and on to add it.');
  const open = await agentChannelOpen(qmp);
  if (open === null) throw new GuestAgentError('NO_CHANNEL', 'QEMU has no guest agent channel for this machine.');
  if (!open) throw new GuestAgentError('NOT_CONNECTED', 'No guest agent listens in the guest (qemu-guest-agent is not installed or not running).');
  return GuestAgent.connect(agentSocket, options);
}

/** Runs `fn` with a connected agent and always closes it. */
export async function withGuestAgent<T>(qmp: QmpClient, agentSocket: string | undefined, fn: (agent: GuestAgent) => Promise<T>, options: GuestAgentOptions = {}): Promise<T> {
  const agent = await connectGuestAgent(qmp, agentSocket, options);
  try {
    return await fn(agent);
  } finally {
    agent.close();
  }
}

/** The host's time in nanoseconds since the epoch, as guest-set-time takes it (beyond 2^53: a bigint). */
export function hostTimeNs(): bigint {
  const ms = performance.timeOrigin + performance.now();
  return BigInt(Math.floor(ms)) * 1_000_000n + BigInt(Math.floor((ms % 1) * 1_000_000));
}
