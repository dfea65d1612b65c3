// The Debian 12 guest image the end-to-end tests and the bench launch dev machines from: built once per machine
// from Debian's own packages by scripts/guest/build-debian-image.sh (as root, a few minutes) and cached under a
// name that hashes the build script, so a change to the script or its package list builds a new one.
//
// Also a CLI, so CI and `npm run bench` can build it ahead of time:
//   npx tsx test/support/debian-image.ts            prints the image's path, building it first when missing
//
// Verified by hand on this project's CI kind of machine (2 cores, nested KVM unusable, so TCG) with
// scripts/guest/verify-debian-image.sh, which boots the image with a NoCloud seed and checks SSH, hostname,
// growpart, SMBIOS UUID, machine-id, the guest agent and ACPI power-off; results in scripts/guest/README.md.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const SCRIPT_RELATIVE = join('scripts', 'guest', 'build-debian-image.sh');
const TOOLS = ['mmdebstrap', 'syslinux', 'mcopy', 'mkfs.vfat', 'mke2fs', 'qemu-img'] as const;
const DEBIAN_PACKAGES = 'mmdebstrap syslinux syslinux-common mtools dosfstools e2fsprogs qemu-utils';
/** How long a second caller waits for another process's build before giving up. */
const WAIT_FOR_OTHER_BUILD_MS = 30 * 60_000;

/** The build script, found from this file's folder upwards (this file also runs bundled into dist/bench.js). */
export function debianImageScript(): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    const candidate = join(dir, SCRIPT_RELATIVE);
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) throw new Error(`${SCRIPT_RELATIVE} was not found above ${__dirname}.`);
  }
}

/** `$VMSNAP_GUEST_CACHE`, else /var/cache/vmsnap-test for root, else ~/.cache/vmsnap-test. */
export function debianImageCacheDir(): string {
  const configured = process.env['VMSNAP_GUEST_CACHE'];
  if (configured) return resolve(configured);
  return process.getuid?.() === 0 ? '/var/cache/vmsnap-test' : join(homedir(), '.cache', 'vmsnap-test');
}

/** Where the image for the current build script lives (whether or not it is built yet). */
export function debianImagePath(): string {
  const hash = createHash('sha256').update(readFileSync(debianImageScript())).digest('hex').slice(0, 16);
  return join(debianImageCacheDir(), `debian-12-${hash}.qcow2`);
}

/** Why this machine cannot build the image, in one sentence; undefined when it can. */
export function debianImageBuildBlocker(): string | undefined {
  const missing = TOOLS.filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  if (missing.length > 0) {
    return `Building the Debian test guest needs ${missing.join(', ')}: install Debian's ${DEBIAN_PACKAGES} (bash scripts/setup.sh does, as root).`;
  }
  if (process.getuid?.() !== 0) {
    return `Building the Debian test guest needs root (mmdebstrap): run "sudo VMSNAP_GUEST_CACHE=${debianImageCacheDir()} npx tsx test/support/debian-image.ts" once.`;
  }
  return undefined;
}

export interface DebianImageOptions {
  /** Progress lines (building, waiting for another build); the build's own output goes to a log file. */
  log?: (line: string) => void;
}

/**
 * The cached Debian 12 guest image (qcow2, 2 GiB virtual, cloud-init NoCloud), built first when missing. Throws
 * with one sentence when it cannot be built here (tools missing, not root): the tests that need a real guest
 * fail then, they are never skipped.
 */
export async function debianImage(options: DebianImageOptions = {}): Promise<string> {
  const log = options.log ?? ((line: string) => console.error(line));
  const image = debianImagePath();
  if (existsSync(image)) return image;
  mkdirSync(dirname(image), { recursive: true });
  const lock = `${image}.lock`;
  const deadline = Date.now() + WAIT_FOR_OTHER_BUILD_MS;
  let announcedWait = false;
  for (;;) {
    if (existsSync(image)) return image;
    if (takeLock(lock)) break;
    // Another process builds it: wait for its rename (or for its lock to go away when it failed).
    if (!announcedWait) {
      log(`Waiting for another process to build the Debian test guest (${lock}).`);
      announcedWait = true;
    }
    if (Date.now() > deadline) throw new Error(`Gave up waiting for the Debian test guest build that holds ${lock}.`);
    await new Promise((done) => setTimeout(done, 2000));
  }
  try {
    if (existsSync(image)) return image; // finished by another process between our check and our lock
    const blocker = debianImageBuildBlocker();
    if (blocker) throw new Error(blocker);
    await build(image, log);
    return image;
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Creates the lock file with our pid; a lock whose process is gone is taken over. */
function takeLock(lock: string): boolean {
  try {
    const fd = openSync(lock, 'wx');
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const holder = Number.parseInt(readFileSyncOrEmpty(lock), 10);
  if (Number.isInteger(holder) && holder > 0 && processAlive(holder)) return false;
  rmSync(lock, { force: true }); // left by a build that died; the next round takes it
  return false;
}

function readFileSyncOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function build(image: string, log: (line: string) => void): Promise<void> {
  const logFile = image.replace(/\.qcow2$/, '.build.log');
  log(`Building the Debian 12 test guest once for this machine (2-5 minutes; log: ${logFile}).`);
  const started = Date.now();
  const out = openSync(logFile, 'w');
  try {
    const status = await new Promise<number | null>((done, fail) => {
      const child = spawn('bash', [debianImageScript(), image], { stdio: ['ignore', out, out] });
      child.on('error', fail);
      child.on('exit', (code) => done(code));
    });
    if (status !== 0 || !existsSync(image)) {
      const tail = readFileSyncOrEmpty(logFile).trimEnd().split('\n').slice(-15).join('\n');
      throw new Error(`Building the Debian test guest failed (exit ${status}; log: ${logFile}):\n${tail}`);
    }
  } finally {
    closeSync(out);
  }
  log(`Built ${image} in ${Math.round((Date.now() - started) / 1000)} s.`);
}

// Run as a script (not when bundled into the bench, where `require.main === module` holds for the bundle).
if (require.main === module && /debian-image\.[cm]?[jt]s$/.test(process.argv[1] ?? '')) {
  debianImage().then(
    (path) => console.log(path),
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : String(e));
      process.exit(1);
    },
  );
}
