// One virsh process fed on its standard input, round after round: reads whose later commands depend on earlier
// answers (a domain's snapshot names, then each snapshot's XML) cost one connection, one SSH login, instead of one
// per round. virsh answers each command read this way a little slower (~1 ms) than on its command line, so locally a
// second process costs less. The process lives only as long as the read: nothing outlives the caller.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { SourceError } from '../sources';
import { quote, virshError, type Virsh } from './virsh';

/**
 * A round of read-only commands: each result is its command's output, or null when that command failed. Rounds run
 * one after the other (await each before the next).
 */
export type Round = (commands: readonly (readonly string[])[]) => Promise<(string | null)[]>;

/**
 * Runs `read` with one virsh process (`virsh -q -c URI` reading commands from a pipe), then ends it. The whole read
 * has one time-out, after which virsh and its children (ssh) are killed and the pending round rejects; the
 * connection failing at the start rejects the first round with virsh's error, as a one-line batch does.
 */
export async function inOneVirsh<T>(virsh: Virsh, read: (round: Round) => Promise<T>, options: { timeoutMs?: number } = {}): Promise<T> {
  const timeoutMs = options.timeoutMs ?? virsh.timeoutMs;
  // virsh keeps the lines it reads as the user's history (in XDG_CACHE_HOME): ours go to a folder of their own.
  const cache = await mkdtemp(join(tmpdir(), 'vmsnap-virsh-'));
  // detached: a new session without a terminal, so an SSH transport can never stop to ask for a password.
  const child = spawn(virsh.virsh, ['-q', '-c', virsh.uri], { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: { ...process.env, LC_ALL: 'C', XDG_CACHE_HOME: cache } });
  const decoder = new StringDecoder('utf8');
  let stdout = '';
  let stderr = '';
  /** A time-out or a failure to run virsh; otherwise virsh's exit is told by its stderr. */
  let ended: SourceError | null = null;
  let exited = false;
  let wake: () => void = () => {};
  const kill = (): void => {
    try {
      process.kill(-(child.pid ?? 0), 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  };
  const timer = setTimeout(() => {
    ended = new SourceError('TIMEOUT', `libvirt at ${virsh.uri} did not answer within ${Math.round(timeoutMs / 1000)} s.`);
    kill();
    wake();
  }, timeoutMs);
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  child.stdout.on('data', (b: Buffer) => {
    stdout += decoder.write(b);
    wake();
  });
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
  // virsh gone (a refused connection ends it at once): the next write fails, the close says why.
  child.stdin.on('error', () => {});
  child.on('error', (e: NodeJS.ErrnoException) => {
    ended ??=
      e.code === 'ENOENT'
        ? new SourceError('TOOL_MISSING', `virsh is not installed, so libvirt connections cannot be read: install Debian's libvirt-clients (apt-get install libvirt-clients).`)
        : new SourceError('FAILED', `virsh could not be run: ${e.message}.`, { cause: e });
    wake();
  });
  void closed.then(() => {
    exited = true;
    wake();
  });

  const marker = `@@vmsnap-${randomBytes(6).toString('hex')}@@`;
  let rounds = 0;
  const round: Round = async (commands) => {
    if (commands.length === 0) return [];
    const r = rounds++;
    // virsh echoes each line it reads after its prompt: `echo "M" "r.i"` prints `M r.i`, which its echo does not contain.
    const echo = (i: number | 'end'): string => `echo ${quote(marker)} ${quote(`${r}.${i}`)}`;
    const printed = (i: number | 'end'): string => `${marker} ${r}.${i}`;
    const lines = commands.map((c, i) => `${echo(i)}\n${c.map(quote).join(' ')}\n`).join('') + `${echo('end')}\n`;
    child.stdin.write(lines);
    while (!stdout.includes(printed('end'))) {
      if (ended !== null) throw ended;
      if (exited) throw virshError(virsh.uri, commands[0] ?? [], stderr === '' ? 'virsh ended before answering' : stderr);
      await new Promise<void>((resolve) => (wake = resolve));
    }
    return commands.map((_, i) => {
      const at = stdout.indexOf(printed(i));
      // The output starts after virsh's echo of the command (one line), and ends at its prompt before the next echo.
      const start = stdout.indexOf('\n', at) + 1;
      const end = stdout.indexOf(echo(i + 1 < commands.length ? i + 1 : 'end'), start);
      if (at < 0 || end < 0) return null;
      const text = stdout.slice(start, end).replace(/virsh [#$] $/, '');
      // A failed command prints nothing on stdout (its error goes to stderr, which virsh does not tie to it).
      return text.trim() === '' ? null : text;
    });
  };
  try {
    return await read(round);
  } finally {
    child.stdin.end('quit\n');
    // virsh quits at once; the time-out (or this) kills it if it does not.
    const quit = setTimeout(kill, 2000);
    await closed;
    clearTimeout(quit);
    clearTimeout(timer);
    await rm(cache, { recursive: true, force: true });
  }
}

/** Whether a command can go on one line of virsh's input (a word with a line break cannot). */
export function fitsOneLine(commands: readonly (readonly string[])[]): boolean {
  return commands.every((c) => c.every((w) => !/[\r\n]/.test(w)));
}
