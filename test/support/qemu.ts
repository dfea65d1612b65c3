// QEMU's own tools are the oracle for every image test. In CI a missing tool fails the run; it is never skipped.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function requireTool(name: string): void {
  const r = spawnSync('sh', ['-c', `command -v ${name}`]);
  if (r.status !== 0) {
    throw new Error(`${name} is not installed: install Debian's qemu-utils (apt-get install -y qemu-utils).`);
  }
}

/** Runs a tool and returns its stdout; throws with its stderr when it exits non-zero. */
export function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
  }
  return r.stdout;
}

/** Runs a tool and returns its exit status and output, without throwing. */
export function runStatus(cmd: string, args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function qemuImg(...args: string[]): string {
  return run('qemu-img', args);
}

/** qemu-io on an image with one or more `-c` commands; `-f` given explicitly so probing never guesses. */
export function qemuIo(file: string, commands: string[], format = 'qcow2'): string {
  const args = ['-f', format];
  for (const c of commands) args.push('-c', c);
  args.push(file);
  const out = run('qemu-io', args);
  // qemu-io reports a failed command on stdout and may still exit 0.
  if (/Pattern verification failed|error|failed/i.test(out)) throw new Error(`qemu-io ${commands.join('; ')}: ${out}`);
  return out;
}

export interface QemuCheck {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  status: number;
  raw: string;
}

/** `qemu-img check --output=json`; status 0 clean, 2 corruptions, 3 leaks. */
export function qemuCheck(file: string): QemuCheck {
  const r = runStatus('qemu-img', ['check', '--output=json', file]);
  let parsed: { corruptions?: number; leaks?: number; 'check-errors'?: number } = {};
  try {
    parsed = JSON.parse(r.stdout) as typeof parsed;
  } catch {
    throw new Error(`qemu-img check ${file} printed no JSON (status ${r.status}): ${r.stderr}`);
  }
  return {
    corruptions: parsed.corruptions ?? 0,
    leaks: parsed.leaks ?? 0,
    checkErrors: parsed['check-errors'] ?? 0,
    status: r.status,
    raw: r.stdout,
  };
}

export interface QemuInfo {
  'virtual-size': number;
  'cluster-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  'dirty-flag'?: boolean;
  format: string;
  'format-specific'?: { data?: { compat?: string; corrupt?: boolean; 'extended-l2'?: boolean } };
  snapshots?: { id: string; name: string; 'vm-state-size': number }[];
}

export function qemuInfo(file: string): QemuInfo {
  return JSON.parse(run('qemu-img', ['info', '-U', '--output=json', file])) as QemuInfo;
}

/** `qemu-img compare`: true when both read the same (sizes may differ if the extra part is zeros). */
export function qemuSame(a: string, b: string): boolean {
  const r = runStatus('qemu-img', ['compare', '-U', a, b]);
  if (r.status > 1) throw new Error(`qemu-img compare failed: ${r.stderr}`);
  return r.status === 0;
}

export function sha256File(file: string): string {
  return execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0]!;
}

/** A scratch folder removed after the suite. */
export interface Scratch {
  dir: string;
  path: (name: string) => string;
  cleanup: () => void;
}

export function scratchDir(prefix = 'vmsnap-test-'): Scratch {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
