// The host side of a display tab's byte stream: a connection to the machine's VNC unix socket relayed to a webview
// through messages, with flow control both ways so that a fast server or a stalled webview never makes the
// extension host buffer without bound. No vscode import: the relay is tested against real sockets.
import type { Socket } from 'node:net';

export interface RelayLimits {
  /** Bytes posted to the webview and not yet acknowledged, plus bytes waiting to be posted: at this, reading stops. */
  maxBuffered: number;
  /** Reading goes on once the webview has acknowledged down to this. */
  resumeBelow: number;
  /** The largest message posted to the webview. */
  maxMessage: number;
  /** Input for the server (keys, pointer) waiting in the socket: past this the client is misbehaving; the relay ends. */
  maxToServer: number;
}

export const RELAY_LIMITS: RelayLimits = {
  maxBuffered: 4 * 1024 * 1024,
  resumeBelow: 1024 * 1024,
  maxMessage: 256 * 1024,
  maxToServer: 1024 * 1024,
};

/** Relays one VNC connection: server bytes out through `post`, webview bytes in through `toServer`. */
export class RfbRelay {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private inFlight = 0;
  private flushQueued = false;
  private paused = false;
  private closed = false;
  /** The most bytes held at once (pending + unacknowledged), for tests and the report of a slow webview. */
  peakBuffered = 0;

  constructor(
    private readonly socket: Socket,
    private readonly post: (bytes: Uint8Array) => void,
    private readonly onClose: (reason: string | null) => void,
    private readonly limits: RelayLimits = RELAY_LIMITS,
  ) {
    socket.on('data', (chunk: Buffer) => this.fromServer(chunk));
    socket.on('error', (e) => this.end(e.message));
    socket.on('close', () => this.end(null));
  }

  /** Bytes held for the webview now: waiting to be posted plus posted and not yet acknowledged. */
  get buffered(): number {
    return this.pendingBytes + this.inFlight;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  private fromServer(chunk: Buffer): void {
    if (this.closed) return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.peakBuffered = Math.max(this.peakBuffered, this.buffered);
    if (this.buffered >= this.limits.maxBuffered && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    // Chunks that arrive together go out as one message (fewer, larger messages cost the host less).
    if (this.pendingBytes >= this.limits.maxMessage) this.flush();
    else if (!this.flushQueued) {
      this.flushQueued = true;
      setImmediate(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    while (this.pendingBytes > 0 && !this.closed) {
      let size = 0;
      let n = 0;
      while (n < this.pending.length && size + this.pending[n]!.length <= this.limits.maxMessage) size += this.pending[n++]!.length;
      let message: Buffer;
      if (n === 0) {
        // One chunk larger than a message: post its first part, keep the rest.
        const first = this.pending[0]!;
        message = first.subarray(0, this.limits.maxMessage);
        this.pending[0] = first.subarray(this.limits.maxMessage);
      } else {
        message = n === 1 ? this.pending[0]! : Buffer.concat(this.pending.slice(0, n), size);
        this.pending.splice(0, n);
      }
      this.pendingBytes -= message.length;
      this.inFlight += message.length;
      // A copy that owns its memory: a Buffer may be a view into Node's shared pool.
      this.post(new Uint8Array(message));
    }
  }

  /** The webview consumed `bytes`: read on once few enough are outstanding. */
  ack(bytes: number): void {
    if (!Number.isFinite(bytes) || bytes <= 0) return;
    this.inFlight = Math.max(0, this.inFlight - bytes);
    if (this.paused && this.buffered <= this.limits.resumeBelow && !this.closed) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** Keys and pointer events for the server; a client whose input piles up unread is cut off. */
  toServer(bytes: Uint8Array): void {
    if (this.closed) return;
    if (this.socket.writableLength + bytes.length > this.limits.maxToServer) {
      this.end('the machine\'s display did not take the input');
      return;
    }
    this.socket.write(bytes);
  }

  close(): void {
    this.end(null);
  }

  private end(reason: string | null): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.socket.destroy();
    this.onClose(reason);
  }
}
