// Which programs on this host write to a disk image: QEMU (and qemu-img, qemu-nbd) take open-file-description locks on
// the bytes of an image that stand for the permissions they hold, and the kernel lists every lock in /proc/locks.
import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import { resolve } from 'node:path';

/** QEMU's lock byte for "holds the write permission" (100 + BLK_PERM_WRITE's bit number, block/file-posix.c). */
const WRITE_PERMISSION_BYTE = 101;

/** A program with one of the images open for writing: its pid and command line where /proc tells them. */
export interface ImageWriter {
  file: string;
  pid: number | null;
  command: string | null;
}

/**
 * The images of `files` some process holds the write permission of, per QEMU's locks. Where /proc/locks cannot be
 * read (not Linux), none: the check is a guard, QEMU's own locking still refuses a second writer.
 */
export async function imageWriters(files: readonly string[]): Promise<ImageWriter[]> {
  const locks = await readFile('/proc/locks', 'utf8').catch(() => '');
  const locked = writeLockedInodes(locks);
  if (locked.size === 0) return [];
  const found: ImageWriter[] = [];
  for (const file of files) {
    const st = await stat(file, { bigint: true }).catch(() => null);
    if (st === null || !locked.has(inodeKey(st.dev, st.ino))) continue;
    found.push({ file, ...(await openerOf(file)) });
  }
  return found;
}

/** "major:minor:inode" as /proc/locks writes it (device numbers in hex), of each inode with the write byte locked. */
function writeLockedInodes(locks: string): Set<string> {
  const keys = new Set<string>();
  for (const line of locks.split('\n')) {
    // "1: OFDLCK ADVISORY  READ -1 fe:00:2153210 100 101"; a lock another waits for starts with "->" after the number.
    const f = line.trim().split(/\s+/);
    const at = f[1] === '->' ? 2 : 1;
    const [device, start, end] = [f[at + 4], Number(f[at + 5]), f[at + 6] === 'EOF' ? Infinity : Number(f[at + 6])];
    if (device === undefined || !(start <= WRITE_PERMISSION_BYTE && WRITE_PERMISSION_BYTE <= end)) continue;
    const [major, minor, inode] = device.split(':');
    if (major === undefined || minor === undefined || inode === undefined) continue;
    keys.add(`${parseInt(major, 16)}:${parseInt(minor, 16)}:${inode}`);
  }
  return keys;
}

/** glibc's split of a dev_t into major and minor numbers. */
function inodeKey(dev: bigint, ino: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}:${ino}`;
}

/** The process with `file` open (OFD locks carry no pid): a walk over /proc/PID/fd, done only once a lock is seen. */
async function openerOf(file: string): Promise<{ pid: number | null; command: string | null }> {
  const target = resolve(file);
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid);
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) !== target) continue;
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      const command = cmdline.split('\0').filter((a) => a !== '').join(' ');
      return { pid: Number(pid), command: command === '' ? null : command.length > 120 ? `${command.slice(0, 117)}...` : command };
    }
  }
  return { pid: null, command: null };
}
