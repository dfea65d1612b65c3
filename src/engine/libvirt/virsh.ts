// Running libvirt's own client, `virsh -c URI`, with argument arrays (never a shell), a time-out, and its
// failures turned into SourceErrors of one sentence: an unreachable host, a refused key, a stopped daemon.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SourceError, type SourceErrorCode } from '../sources';

export interface VirshOptions {
  /** The virsh executable (default: $VMSNAP_VIRSH, else virsh on PATH). */
  virsh?: string;
  /** Time-out of one call in ms (default 60 s; listing calls use less). */
  timeoutMs?: number;
}

const DOCUMENT_TIMEOUT_MS = 300_000;

/** The client of one libvirt connection. */
export class Virsh {
  readonly virsh: string;
  readonly timeoutMs: number;

  constructor(
    readonly uri: string,
    options: VirshOptions = {},
  ) {
    this.virsh = options.virsh ?? process.env.VMSNAP_VIRSH ?? 'virsh';
    this.timeoutMs = options.timeoutMs ?? 60000;
  }

  /** Runs one virsh command; resolves with its stdout, rejects with a SourceError. */
  async run(args: readonly string[], options: { timeoutMs?: number } = {}): Promise<string> {
    const r = await this.spawn(['-q', '-c', this.uri, ...args], options);
    if (r.code !== 0) throw virshError(this.uri, args, r.stderr);
    return r.stdout;
  }

  /** Whether a lookup (domuuid NAME, domname UUID, ...) finds its object; a failing connection still rejects. */
  async exists(args: readonly string[]): Promise<boolean> {
    try {
      await this.run(args);
      return true;
    } catch (e) {
      if (e instanceof SourceError && e.code === 'NOT_FOUND') return false;
      throw e;
    }
  }

  /**
   * Runs a command that reads an XML document from a file (define, snapshot-create --redefine): the document goes
   * into a private temporary file, which virsh reads itself (also for a remote connection). Node's child pipes are
   * sockets, which /dev/stdin cannot be opened on.
   */
  async runWithDocument(args: (file: string) => readonly string[], document: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'vmsnap-virsh-'));
    try {
      const file = join(dir, 'document.xml');
      await writeFile(file, document, { mode: 0o600 });
      // libvirt checks a document against QEMU's capabilities, which it may probe first: on a slow host that
      // alone takes minutes, so these calls wait longer than the others.
      return await this.run(args(file), { timeoutMs: Math.max(this.timeoutMs, DOCUMENT_TIMEOUT_MS) });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Runs many read-only commands in one virsh process (one connection), as virsh's own `cmd1; cmd2` line.
   * Each result is its command's output, or null when that command failed (e.g. the domain went away meanwhile).
   * The connection itself failing rejects the whole batch.
   */
  async batch(commands: readonly (readonly string[])[], options: { timeoutMs?: number } = {}): Promise<(string | null)[]> {
    if (commands.length === 0) return [];
    const { marker, r } = await this.script(commands, options);
    if (!r.stdout.includes(`${marker}0`)) throw virshError(this.uri, commands[0] ?? [], r.stderr);
    const results: (string | null)[] = [];
    for (let i = 0; i < commands.length; i++) {
      const start = r.stdout.indexOf(`${marker}${i}`);
      const next = r.stdout.indexOf(marker, start + marker.length + String(i).length);
      if (start < 0 || next < 0) {
        results.push(null);
        continue;
      }
      const text = r.stdout.slice(start + marker.length + String(i).length, next);
      // A failed command prints nothing on stdout (its error goes to stderr, which virsh does not tie to it).
      results.push(text.trim() === '' ? null : text.replace(/^\n/, ''));
    }
    return results;
  }

  /**
   * Runs commands one after the other in one virsh process (one connection: what a single command costs), e.g. a
   * change and the read of its result. virsh goes on after a failed command, so any error on stderr rejects the
   * whole sequence with that error; otherwise each command's output.
   */
  async sequence(commands: readonly (readonly string[])[], options: { timeoutMs?: number } = {}): Promise<string[]> {
    const { marker, r } = await this.script(commands, options);
    if (r.code !== 0 || /^error:/m.test(r.stderr)) throw virshError(this.uri, commands[0] ?? [], r.stderr);
    return commands.map((_, i) => {
      const start = r.stdout.indexOf(`${marker}${i}`) + marker.length + String(i).length;
      const end = r.stdout.indexOf(marker, start);
      return r.stdout.slice(start, end < 0 ? undefined : end).replace(/^\n/, '');
    });
  }

  /** Runs commands as one virsh line, a marker before each and after the last: between two markers is one command's output. */
  private async script(commands: readonly (readonly string[])[], options: { timeoutMs?: number }): Promise<{ marker: string; r: { code: number; stdout: string; stderr: string } }> {
    const marker = `@@vmsnap-${process.pid}-${Date.now()}@@`;
    const line = commands.map((c, i) => `echo ${marker}${i}; ${c.map(quote).join(' ')}`).join('; ') + `; echo ${marker}end`;
    return { marker, r: await this.spawn(['-q', '-c', this.uri, line], options) };
  }

  private spawn(args: readonly string[], options: { timeoutMs?: number }): Promise<{ code: number; stdout: string; stderr: string }> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    return new Promise((resolve, reject) => {
      // detached: a new session without a terminal, so an SSH transport can never stop to ask for a password.
      const child = spawn(this.virsh, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, LC_ALL: 'C' } });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          process.kill(-(child.pid ?? 0), 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }, timeoutMs);
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (e.code === 'ENOENT') {
          reject(new SourceError('TOOL_MISSING', `virsh is not installed, so libvirt connections cannot be read: install Debian's libvirt-clients (apt-get install libvirt-clients).`));
        } else reject(new SourceError('FAILED', `virsh could not be run: ${e.message}.`, { cause: e }));
      });
      child.on('close', (code) => {
        clearTimeout(timer);
        if (timedOut) {
          reject(new SourceError('TIMEOUT', `libvirt at ${this.uri} did not answer within ${Math.round(timeoutMs / 1000)} s (virsh ${args[3] ?? ''}).`));
          return;
        }
        resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
      });
    });
  }
}

/** A word for virsh's own command-line parser: double quotes, with `"` and `\` escaped. */
export function quote(word: string): string {
  return `"${word.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** virsh's stderr in one sentence and the code a caller can switch on. */
export function virshError(uri: string, args: readonly string[], stderr: string): SourceError {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/^error:\s*/, '').trim())
    .filter((l) => l !== '' && l !== 'failed to connect to the hypervisor');
  const text = lines.join(' ');
  const classified = classify(uri, text);
  if (classified !== null) return new SourceError(classified.code, classified.message);
  const what = args[0] ?? 'virsh';
  return new SourceError('FAILED', `libvirt refused ${what}: ${text === '' ? 'no reason given' : text.replace(/\.$/, '')}.`);
}

function classify(uri: string, text: string): { code: SourceErrorCode; message: string } | null {
  const ssh = /^qemu\+ssh:|^[a-z]+\+ssh:/.test(uri);
  if (/Permission denied \(|Host key verification failed|Too many authentication failures/.test(text)) {
    return { code: 'AUTH_FAILED', message: `SSH refused the login for ${uri} (${sshDetail(text)}): check the user and the key (keyfile=) in the URI.` };
  }
  if (ssh && /ssh: connect to host|Could not resolve hostname|No route to host|Connection timed out|Network is unreachable|Name or service not known/.test(text)) {
    return { code: 'UNREACHABLE', message: `The host of ${uri} cannot be reached over SSH (${sshDetail(text)}).` };
  }
  if (/Failed to connect socket to|libvirt-sock|virtqemud-sock|Connection refused/.test(text)) {
    // Over SSH the login worked and the socket on the other host did not answer: say which host to go to.
    const host = ssh ? /^[a-z0-9+]+:\/\/(?:[^@/]+@)?(\[[^\]]+\]|[^/:?]+)/i.exec(uri)?.[1] : undefined;
    return host === undefined
      ? { code: 'UNREACHABLE', message: `The libvirt daemon of ${uri} is not running (its socket does not answer): start libvirtd (or virtqemud) there.` }
      : { code: 'UNREACHABLE', message: `The libvirt daemon on ${host} (${uri}) is not running: SSH logged in, but its socket there does not answer; start libvirtd (or virtqemud) on that host.` };
  }
  if (/no connection driver available|invalid argument: could not parse|Unable to find|unsupported configuration: .*transport/.test(text)) {
    return { code: 'UNREACHABLE', message: `"${uri}" is not a libvirt connection this computer can open (${text.replace(/\.$/, '')}).` };
  }
  if (/failed to get domain|Domain not found/.test(text)) return { code: 'NOT_FOUND', message: `libvirt at ${uri} has no such domain (${text.replace(/\.$/, '')}).` };
  if (/Domain snapshot not found|no domain snapshot/.test(text)) return { code: 'NOT_FOUND', message: `libvirt at ${uri} has no such snapshot (${text.replace(/\.$/, '')}).` };
  if (/already exists/.test(text)) return { code: 'ALREADY_EXISTS', message: `libvirt at ${uri}: ${text.replace(/\.$/, '')}.` };
  return null;
}

/** The line of SSH's own words inside libvirt's error, without libvirt's wrapping. */
function sshDetail(text: string): string {
  const m = /ssh: [^:]*: [^:]+|Permission denied \([^)]*\)|Host key verification failed|Could not resolve hostname [^:]+: [^:]+/.exec(text);
  return (m?.[0] ?? text).replace(/\.$/, '');
}
