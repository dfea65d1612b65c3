// Runs the built `vmsnap` binary the way a user does: bin/vmsnap -> dist/cli.js.
import { spawn, spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

export const ROOT = resolve(__dirname, '../..');
const BIN = join(ROOT, 'bin/vmsnap');

/** Bundles the CLI with scripts/build.mjs (only this entry, so the tests need nothing else built). */
export async function buildCli(): Promise<void> {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), 'cli'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`Building the CLI failed: ${r.stderr}`);
}

export interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

export function vmsnap(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Result {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, VMSNAP_DEBUG: '', VMSNAP_PROGRESS: '', ...options.env },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs vmsnap and parses its one JSON document. */
export function vmsnapJson<T = unknown>(args: string[], options: { cwd?: string } = {}): { status: number; doc: T; stderr: string } {
  const r = vmsnap([...args, '--json'], options);
  let doc: T;
  try {
    doc = JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`vmsnap ${args.join(' ')} --json printed no single JSON document (status ${r.status}): ${r.stdout}${r.stderr}`);
  }
  return { status: r.status, doc, stderr: r.stderr };
}

/**
 * Starts vmsnap, waits until its stderr shows `ready`, sends SIGINT, and resolves with how it ended.
 * Used to prove Ctrl-C stops a long operation cleanly.
 */
export function interruptWhen(args: string[], ready: RegExp, env: Record<string, string> = {}): Promise<Result & { interrupted: boolean }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, VMSNAP_DEBUG: '', ...env } });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
      if (!interrupted && ready.test(stderr)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ status: code ?? -1, stdout, stderr, interrupted }));
  });
}

/** One readable line: no stack trace, no second line. */
export function isOneSentence(text: string): boolean {
  const lines = text.trimEnd().split('\n');
  return lines.length === 1 && !/\bat .+:\d+:\d+/.test(text) && lines[0]!.length > 0;
}
