// Serial consoles of running machines as VS Code terminals, one per machine.
import * as vscode from 'vscode';
import type { Socket } from 'node:net';
import { serialLogTail } from '../../engine/runtime';

/** How much of a console's output is kept for `transcript` (tests, and a look back after the terminal closed). */
const TRANSCRIPT_CHARS = 64 * 1024;
/** The line between the replayed log and the live output. */
const LIVE_MARK = vscode.l10n.t('── Live ──');

/**
 * A terminal joined to a machine's serial port: the guest's output is written to the terminal, what is typed goes
 * to the guest. Closing the terminal disconnects; the machine stopping (the socket closing) says so and closes it.
 * Works wherever the extension host runs (desktop, or remote as in code-server): only the socket is local to it.
 */
export class ConsolePty implements vscode.Pseudoterminal {
  private readonly written = new vscode.EventEmitter<string>();
  private readonly closed = new vscode.EventEmitter<number | void>();
  readonly onDidWrite = this.written.event;
  readonly onDidClose = this.closed.event;
  private readonly ended = new vscode.EventEmitter<'machine' | 'user'>();
  /** Fires once when the connection ends: the machine stopped, or the user closed the terminal. */
  readonly onDidEnd = this.ended.event;
  private readonly decoder = new TextDecoder('utf-8');
  private afterCR = false;
  private done = false;
  private text = '';

  constructor(
    readonly machineId: string,
    readonly machineName: string,
    private readonly socket: Socket,
    /** What the guest printed before this connection (the end of its serial log), shown first. */
    private readonly history = '',
    /** How long the closing line stays visible before the terminal closes. */
    private readonly closeDelayMs = 2000,
  ) {
    // Nothing is read before the terminal opens: VS Code drops what a Pseudoterminal writes before open().
    socket.pause();
    socket.on('data', (chunk: Buffer) => this.write(this.toTerminal(chunk)));
    socket.on('error', () => {}); // 'close' follows
    socket.on('close', () => this.machineGone());
  }

  /** The terminal's text so far (the last 64 KiB), line ends as the terminal got them. */
  get transcript(): string {
    return this.text;
  }

  get isOpen(): boolean {
    return !this.done;
  }

  open(): void {
    this.write(`\x1b[2m${vscode.l10n.t('Serial console of “{0}”. Close the terminal to disconnect; the machine keeps running.', this.machineName)}\x1b[0m\r\n`);
    if (this.history.trim() !== '') {
      this.write(`\x1b[2m${vscode.l10n.t('── Earlier output (serial.log) ──')}\x1b[0m\r\n`);
      this.write(this.toTerminal(Buffer.from(this.history.endsWith('\n') ? this.history : `${this.history}\n`)));
      this.write(`\x1b[2m${LIVE_MARK}\x1b[0m\r\n`);
    }
    this.socket.resume();
  }

  handleInput(data: string): void {
    if (!this.done) this.socket.write(data);
  }

  /** The user closed the terminal: only the connection ends. */
  close(): void {
    if (this.done) return;
    this.done = true;
    this.socket.destroy();
    this.ended.fire('user');
  }

  /** The guest's bytes as terminal text: a bare LF (what most guests send on a serial line) becomes CR LF. */
  private toTerminal(chunk: Buffer): string {
    const s = this.decoder.decode(chunk, { stream: true });
    let out = '';
    for (const c of s) {
      if (c === '\n' && !this.afterCR) out += '\r';
      out += c;
      this.afterCR = c === '\r';
    }
    return out;
  }

  private write(s: string): void {
    if (s === '') return;
    this.text = (this.text + s).slice(-TRANSCRIPT_CHARS);
    this.written.fire(s);
  }

  private machineGone(): void {
    if (this.done) return;
    this.done = true;
    this.write(`\r\n\x1b[2m${vscode.l10n.t('[The machine stopped: the console is closed.]')}\x1b[0m\r\n`);
    this.ended.fire('machine');
    setTimeout(() => this.closed.fire(), this.closeDelayMs);
  }

  dispose(): void {
    this.socket.destroy();
    this.written.dispose();
    this.closed.dispose();
    this.ended.dispose();
  }
}

/** The open console terminals, one per machine (QEMU serves one console client at a time). */
export class ConsoleTerminals implements vscode.Disposable {
  private readonly open = new Map<string, { terminal: vscode.Terminal; pty: ConsolePty }>();
  private readonly subscription = vscode.window.onDidCloseTerminal((t) => {
    for (const [id, c] of this.open) {
      if (c.terminal === t) {
        this.open.delete(id);
        c.pty.dispose();
      }
    }
  });

  /** The console of a machine, if its terminal is open. */
  get(machineId: string): { terminal: vscode.Terminal; pty: ConsolePty } | undefined {
    return this.open.get(machineId);
  }

  /**
   * Shows the machine's console, connecting with `connect` when no live one is open; it starts with the end of the
   * serial log at `serialLog`.
   */
  async show(machineId: string, machineName: string, connect: () => Promise<Socket>, serialLog?: string): Promise<{ terminal: vscode.Terminal; pty: ConsolePty }> {
    const existing = this.open.get(machineId);
    if (existing && existing.pty.isOpen) {
      existing.terminal.show();
      return existing;
    }
    const socket = await connect();
    const pty = new ConsolePty(machineId, machineName, socket, serialLog === undefined ? '' : await serialLogTail(serialLog));
    const terminal = vscode.window.createTerminal({
      name: vscode.l10n.t('Console: {0}', machineName),
      pty,
      iconPath: new vscode.ThemeIcon('terminal'),
    });
    const entry = { terminal, pty };
    this.open.set(machineId, entry);
    terminal.show();
    return entry;
  }

  dispose(): void {
    this.subscription.dispose();
    for (const c of this.open.values()) {
      c.pty.dispose();
      c.terminal.dispose();
    }
    this.open.clear();
  }
}
