// The libvirt daemons for the libvirt tests, started here in the background (CI has no systemd), and test domains
// running the counting boot-sector guest on TCG with user-mode networking.
//
// The tests use `qemu:///system` as root: it is what a qemu+ssh://root@host/system connection reaches on the other
// side (virt-ssh-helper talks to the system socket), and a privileged libvirtd keeps its driver state in fixed
// folders (/run/libvirt, /var/lib/libvirt), so a second private one could not run beside a host's own. So: when a
// daemon already answers it is used as it is; otherwise virtlogd and libvirtd are started with -d and stopped
// after, that libvirtd with a qemu.conf of the tests' own (see testQemuConf). Test domains carry a random prefix and
// are removed (with their snapshots' metadata) afterwards.
//
// Each helper that runs a tool has an asynchronous form: the extension-host tests must never block their process
// (defining a domain takes minutes on a slow host while libvirt probes QEMU, and a blocked extension host hangs).
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeCountingGuest } from './counting-guest';

export const SYSTEM_URI = 'qemu:///system';

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool} || test -x /usr/sbin/${tool}`]).status === 0;
}

/** Fails (VMSNAP_REQUIRE_TOOLS=1, as in CI) or skips when virsh, libvirtd or virtlogd is missing, or when not root. */
export function requireLibvirt(ctx: Mocha.Context): void {
  const missing = ['virsh', 'libvirtd', 'virtlogd', 'qemu-img', 'qemu-system-x86_64'].filter((t) => !has(t));
  const reason =
    missing.length > 0
      ? `${missing.join(', ')} not installed: install Debian's libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils (scripts/setup.sh does).`
      : process.getuid?.() !== 0
        ? 'The libvirt tests run as root (they use qemu:///system and start its daemons).'
        : null;
  if (reason === null) return;
  if (process.env.VMSNAP_REQUIRE_TOOLS === '1') throw new Error(reason);
  ctx.skip();
}

export function virsh(uri: string, ...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

interface ToolResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool without blocking this process, killed after `timeoutMs`: its status (-1 when killed) and output. */
export function runTool(file: string, args: readonly string[], timeoutMs = 300_000): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(file, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ status: code, stdout, stderr: error !== null && stderr === '' ? error.message : stderr });
    });
  });
}

export function virshAsync(uri: string, ...args: string[]): Promise<ToolResult> {
  return runTool('virsh', ['-q', '-c', uri, ...args]);
}

/** virsh that must succeed, without blocking this process: its stdout. */
export async function virshOkAsync(uri: string, ...args: string[]): Promise<string> {
  const r = await virshAsync(uri, ...args);
  if (r.status !== 0) throw new Error(`virsh ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

/** virsh that must succeed: its stdout. */
export function virshOk(uri: string, ...args: string[]): string {
  const r = virsh(uri, ...args);
  if (r.status !== 0) throw new Error(`virsh ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

function pidFromFile(file: string): number | null {
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** The daemons this process started (and so stops), or none when a running daemon answered already. */
export interface Daemons {
  started: boolean;
  /** Stops libvirtd (keeps virtlogd): a "stopped daemon" for the error tests. No-op when the daemons were the host's. */
  stopLibvirtd(): Promise<void>;
  /** Starts libvirtd again after stopLibvirtd. */
  startLibvirtd(): Promise<void>;
  stop(): Promise<void>;
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`${what} within ${timeoutMs / 1000} s.`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The qemu.conf the tests' libvirtd reads: the machine's own, with QEMU run as root. Why: where /dev/kvm is 0600
 * root (no udev, as on these hosts), libvirt 9.0 probes QEMU's capabilities with CAP_DAC_OVERRIDE (so it finds KVM)
 * and then finds /dev/kvm unusable for its QEMU user, throws its capabilities cache away ("KVM was enabled when
 * probing ... but it is not available now") and probes QEMU again, about 4 s per emulator, before every define,
 * start or snapshot: 50-110 s for one define on a loaded host instead of 40 ms. On a usual host (/dev/kvm 0660
 * root:kvm, libvirt-qemu in the kvm group) the cache holds, as it does with this file.
 */
function testQemuConf(dir: string): string {
  const file = join(dir, 'qemu.conf');
  const own = existsSync('/etc/libvirt/qemu.conf') ? readFileSync('/etc/libvirt/qemu.conf', 'utf8') : '';
  writeFileSync(file, `${own}\n# vmsnap tests: see test/support/libvirt.ts\nuser = "root"\ngroup = "root"\n`);
  return file;
}

/**
 * Runs a daemon's command in the background (-d) with no file descriptors but stdin/out/err: it must not keep what
 * it would inherit, such as the lock of `flock /tmp/vmsnap-heavy.lock` around a test run. With `qemuConf`, in a
 * private mount namespace where that file is bound over /etc/libvirt/qemu.conf: only this daemon sees it, the
 * machine's own file is unchanged.
 */
function daemonize(command: string[], qemuConf: string | null): Promise<ToolResult> {
  const closeFds = 'for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null;';
  if (qemuConf === null) return runTool('bash', ['-c', `${closeFds} exec "$@"`, 'bash', ...command], 60_000);
  return runTool('unshare', ['-m', '--propagation', 'private', 'bash', '-c', `${closeFds} mount --bind "$1" /etc/libvirt/qemu.conf && shift && exec "$@"`, 'bash', qemuConf, ...command], 60_000);
}

export async function startDaemons(): Promise<Daemons> {
  const answers = async (): Promise<boolean> => (await virshAsync(SYSTEM_URI, 'version')).status === 0;
  if (await answers()) return { started: false, stopLibvirtd: async () => {}, startLibvirtd: async () => {}, stop: async () => {} };
  // Without systemd nothing creates the runtime folder; the daemons fork into the background (-d) and write pidfiles.
  const logd = await daemonize(['virtlogd', '-d'], null);
  if (logd.status !== 0 && !/already running|pid file/.test(logd.stderr)) throw new Error(`virtlogd did not start: ${logd.stderr}`);
  const confDir = mkdtempSync(join(tmpdir(), 'vmsnap-libvirtd-'));
  // Without a mount namespace (a container without CAP_SYS_ADMIN) the daemon reads the machine's qemu.conf: slower.
  const qemuConf = (await runTool('unshare', ['-m', 'true'], 10_000)).status === 0 ? testQemuConf(confDir) : null;
  const startLibvirtd = async (): Promise<void> => {
    const d = await daemonize(['libvirtd', '-d'], qemuConf);
    if (d.status !== 0) throw new Error(`libvirtd did not start: ${d.stderr}`);
    await waitFor(answers, 'libvirtd did not answer');
  };
  await startLibvirtd();
  const kill = async (pidFile: string): Promise<void> => {
    const pid = pidFromFile(pidFile);
    if (pid === null) return;
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      return;
    }
    await waitFor(() => !existsSync(`/proc/${pid}`), `pid ${pid} did not exit`).catch(() => process.kill(pid, 'SIGKILL'));
  };
  return {
    started: true,
    stopLibvirtd: () => kill('/run/libvirtd.pid'),
    startLibvirtd,
    stop: async () => {
      await kill('/run/libvirtd.pid');
      await kill('/run/virtlogd.pid');
      rmSync(confDir, { recursive: true, force: true });
    },
  };
}

/** A prefix for this run's domain names, so that removing them never touches anyone else's. */
export function testPrefix(): string {
  return `vmsnap-test-${randomBytes(3).toString('hex')}-`;
}

/** The scratch folder made readable for libvirt's QEMU user (libvirt-qemu), which must reach the disks in it. */
export function shareWithQemu(dir: string): void {
  chmodSync(dir, 0o755);
}

/** The disk and XML of a domain running the counting guest from a qcow2 disk in `dir`. */
function countingDomainFiles(dir: string, name: string): { raw: string; disk: string; serialLog: string; xmlFile: string; xml: string } {
  const disk = `${dir}/${name}.qcow2`;
  const serialLog = `${dir}/${name}-serial.log`;
  writeCountingGuest(`${dir}/${name}.raw`);
  const xml = `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='${disk}'/><target dev='vda' bus='virtio'/></disk>
    <interface type='user'><model type='virtio'/></interface>
    <serial type='file'><source path='${serialLog}' append='on'/><target port='0'/></serial>
  </devices>
</domain>`;
  const xmlFile = `${dir}/${name}.xml`;
  writeFileSync(xmlFile, xml);
  return { raw: `${dir}/${name}.raw`, disk, serialLog, xmlFile, xml };
}

/** Defines (not starts) a domain running the counting guest from a qcow2 disk in `dir`; returns the serial log path. */
export function defineCountingDomain(uri: string, dir: string, name: string): { disk: string; serialLog: string } {
  const { raw, disk, serialLog, xmlFile } = countingDomainFiles(dir, name);
  const r = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const def = spawnSync('virsh', ['-q', '-c', uri, 'define', xmlFile], { encoding: 'utf8' });
  if (def.status !== 0) throw new Error(`define ${name}: ${def.stderr}`);
  return { disk, serialLog };
}

/** defineCountingDomain without blocking this process (libvirt may take minutes to define on a slow host). */
export async function defineCountingDomainAsync(uri: string, dir: string, name: string, timeoutMs = 300_000): Promise<{ disk: string; serialLog: string }> {
  const { raw, disk, serialLog, xmlFile } = countingDomainFiles(dir, name);
  const r = await runTool('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, disk], 60_000);
  if (r.status !== 0) throw new Error(r.stderr);
  const def = await runTool('virsh', ['-q', '-c', uri, 'define', xmlFile], timeoutMs);
  if (def.status !== 0) throw new Error(`define ${name}: ${def.stderr}`);
  return { disk, serialLog };
}

/** Removes every domain of this run: destroyed, then undefined with its snapshots' metadata. */
export function removeTestDomains(uri: string, prefix: string): void {
  const names = virsh(uri, 'list', '--all', '--name').stdout.split('\n').map((l) => l.trim()).filter((n) => n.startsWith(prefix));
  for (const n of names) {
    virsh(uri, 'destroy', n);
    virsh(uri, 'undefine', n, '--snapshots-metadata');
  }
}

/** removeTestDomains without blocking this process. */
export async function removeTestDomainsAsync(uri: string, prefix: string): Promise<void> {
  const names = (await virshAsync(uri, 'list', '--all', '--name')).stdout.split('\n').map((l) => l.trim()).filter((n) => n.startsWith(prefix));
  for (const n of names) {
    await virshAsync(uri, 'destroy', n);
    await virshAsync(uri, 'undefine', n, '--snapshots-metadata');
  }
}

/**
 * Makes a full clone of the domain with `disk` take seconds, so that it can be cancelled midway: 256 MiB of data
 * written into the disk (grown to 1 GiB), and a qemu-img in `dir` whose conversions run at qemu-img's own rate limit
 * (`convert -r 32M`: about 8 s), for VMSNAP_QEMU_IMG. Returns that qemu-img's path.
 */
export async function slowToCopy(disk: string, dir: string): Promise<string> {
  for (const [file, args] of [
    ['qemu-img', ['resize', '-q', disk, '1G']],
    ['qemu-io', ['-f', 'qcow2', '-c', 'write -q -P 0x5a 512M 256M', disk]],
  ] as const) {
    const r = await runTool(file, args, 60_000);
    if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: ${r.stderr}`);
  }
  const throttled = join(dir, 'qemu-img');
  writeFileSync(throttled, '#!/bin/sh\nif [ "$1" = convert ]; then shift; exec qemu-img convert -r 32M "$@"; fi\nexec qemu-img "$@"\n', { mode: 0o755 });
  return throttled;
}
