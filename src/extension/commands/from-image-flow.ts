// New Machine from Image: a cloud image (a file, or a URL downloaded into the library's image cache) becomes a
// machine whose disk is an overlay on it; cloud-init lets the guest user in with an SSH key. The questions: where
// the image is, the name, the disk size, the key; then the download or copy under a cancellable notification.
import * as vscode from 'vscode';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { validateName, type CreateFromImageResult } from '../../engine/machine';
import { findUserPublicKey } from '../../engine/ssh';
import { formatBytes } from '../format';
import type { CommandContext } from './context';
import { parseGiB } from './library-commands';
import { nameValidator, uniqueName } from './names';

/** Shown as the example in the URL box: Debian's own generic cloud image. */
const EXAMPLE_URL = 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2';

export interface NewFromImageArgs {
  /** A path or an http(s) URL of a qcow2 or raw image. */
  source?: string;
  name?: string;
  /** Bytes (default 16 GiB, at least the image's size). */
  diskSize?: number;
  /** A public key file the guest lets in (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub, else the library's key). */
  sshKey?: string;
  sha256?: string;
  /** Default 2 vCPUs, 2048 MiB. */
  cpus?: number;
  memoryMiB?: number;
}

export async function newMachineFromImage(ctx: CommandContext, args: NewFromImageArgs = {}): Promise<CreateFromImageResult | undefined> {
  const title = vscode.l10n.t('New Machine from Image');
  const source = args.source ?? (await askSource(ctx, title));
  if (source === undefined) return undefined;
  const lib = await ctx.library();
  const taken = (await lib.list()).map((m) => m.name);
  const asking = args.name === undefined;
  const name =
    args.name ??
    (await ctx.ask.input({
      title: vscode.l10n.t('{0}: {1}', title, shortSource(source)),
      prompt: vscode.l10n.t('Name of the machine (also the guest’s host name)'),
      value: uniqueName('dev-vm', taken),
      validateInput: nameValidator((n) => validateName(n, 'machine name'), taken),
    }));
  if (name === undefined) return undefined;
  let diskSize = args.diskSize;
  if (diskSize === undefined && asking) {
    const size = await ctx.ask.input({
      title: vscode.l10n.t('New Machine “{0}”', name),
      prompt: vscode.l10n.t('Size of its disk in GiB (sparse; at least the image’s size; cloud-init grows the root file system into it)'),
      value: '16',
      validateInput: (v) => (parseGiB(v) === undefined ? vscode.l10n.t('Give a number of GiB from 1 to 65536, e.g. 16 or 0.5.') : undefined),
    });
    if (size === undefined) return undefined;
    diskSize = parseGiB(size);
  }
  let sshKey = args.sshKey;
  if (sshKey === undefined && asking) {
    const key = await askKey(ctx, name, lib.dir);
    if (key === undefined) return undefined;
    sshKey = key ?? undefined;
  }
  const options = {
    ...(diskSize === undefined ? {} : { diskSize }),
    ...(sshKey === undefined ? {} : { sshKey }),
    ...(args.sha256 === undefined ? {} : { sha256: args.sha256 }),
    ...(args.cpus === undefined ? {} : { cpus: args.cpus }),
    ...(args.memoryMiB === undefined ? {} : { memoryMiB: args.memoryMiB }),
  };
  const result = await withDownload(vscode.l10n.t('Creating “{0}” from {1}', name, shortSource(source)), (p) => lib.createFromImage(name, source, { ...options, ...p }));
  const m = result.machine;
  const user = m.guest?.user ?? '?';
  const key = result.key.generated
    ? vscode.l10n.t('a key pair made just now for this library ({0}); ssh and Remote-SSH use it', tilde(result.key.path))
    : vscode.l10n.t('the key {0}', tilde(result.key.path));
  ctx.inform(
    vscode.l10n.t('“{0}” is ready ({1} image{2}). Its user “{3}” logs in over SSH with {4}.', m.name, result.image.format, result.image.fromCache ? vscode.l10n.t(', from the cache') : '', user, key),
    [{ title: vscode.l10n.t('Connect with Remote-SSH'), run: () => vscode.commands.executeCommand('vmsnap.connectRemoteSsh', m.id) }],
  );
  await ctx.revealMachine(m.id);
  return result;
}

/** A file (open dialog) or a URL (input box), chosen in a quick pick. */
async function askSource(ctx: CommandContext, title: string): Promise<string | undefined> {
  const where = await ctx.ask.pick(
    [
      { label: vscode.l10n.t('$(file) Image File…'), description: vscode.l10n.t('qcow2 or raw, e.g. a cloud image you downloaded'), value: 'file' as const },
      { label: vscode.l10n.t('$(globe) Download from a URL…'), description: vscode.l10n.t('kept in the library’s image cache: a second machine costs nothing'), value: 'url' as const },
    ],
    { title, placeHolder: vscode.l10n.t('Where is the cloud image (with cloud-init)?') },
  );
  if (!where) return undefined;
  if (where.value === 'file') {
    return (await ctx.ask.file(vscode.l10n.t('Choose a cloud image'), { [vscode.l10n.t('Disk images')]: ['qcow2', 'img', 'raw'], [vscode.l10n.t('All files')]: ['*'] }))?.fsPath;
  }
  const url = await ctx.ask.input({
    title,
    prompt: vscode.l10n.t('URL of a qcow2 or raw cloud image'),
    placeHolder: EXAMPLE_URL,
    validateInput: (v) => (isHttpUrl(v.trim()) ? undefined : vscode.l10n.t('Give an http:// or https:// URL, e.g. {0}', EXAMPLE_URL)),
  });
  return url?.trim();
}

/** The key question: the one the engine would choose first, or another public key file. Null: the default. */
async function askKey(ctx: CommandContext, name: string, libraryDir: string): Promise<string | null | undefined> {
  const own = await findUserPublicKey(homedir());
  const libraryKey = join(libraryDir, '.ssh', 'id_ed25519.pub');
  const first = own
    ? { label: `$(key) ${tilde(own.publicKeyPath)}`, description: vscode.l10n.t('your SSH key'), value: null }
    : existsSync(libraryKey)
      ? { label: `$(key) ${tilde(libraryKey)}`, description: vscode.l10n.t('the library’s own key (there is none in ~/.ssh)'), value: null }
      : { label: vscode.l10n.t('$(key) A new key pair for this library'), description: vscode.l10n.t('there is no key in ~/.ssh: vmsnap makes one, once'), value: null };
  const picked = await ctx.ask.pick<string | null>([first, { label: vscode.l10n.t('$(folder-opened) Another Public Key (.pub)…'), description: '', value: 'other' }], {
    title: vscode.l10n.t('New Machine “{0}”', name),
    placeHolder: vscode.l10n.t('Which SSH key may log in to the guest?'),
  });
  if (!picked) return undefined;
  if (picked.value === null) return null;
  return (await ctx.ask.file(vscode.l10n.t('Public key the guest lets in'), { [vscode.l10n.t('SSH public keys')]: ['pub'], [vscode.l10n.t('All files')]: ['*'] }))?.fsPath;
}

/** A cancellable notification with bytes done (of the whole, when the server says how much). */
function withDownload<T>(title: string, run: (options: { signal: AbortSignal; onProgress: (done: number, total: number) => void }) => Promise<T>): Promise<T> {
  return Promise.resolve(
    vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title, cancellable: true }, async (progress, token) => {
      const abort = new AbortController();
      const cancelled = token.onCancellationRequested(() => abort.abort());
      let percent = 0;
      let shownAt = 0;
      try {
        return await run({
          signal: abort.signal,
          onProgress: (done, total) => {
            const now = Date.now();
            const p = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 0;
            if (p === percent && now - shownAt < 250) return;
            shownAt = now;
            progress.report({
              increment: p - percent,
              message: total > 0 ? vscode.l10n.t('{0} of {1} ({2}%)', formatBytes(done), formatBytes(total), p) : formatBytes(done),
            });
            percent = p;
          },
        });
      } finally {
        cancelled.dispose();
      }
    }),
  );
}

function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** A URL's last path segment or a file's name: what the titles show. */
function shortSource(source: string): string {
  if (isHttpUrl(source)) return basename(new URL(source).pathname) || source;
  return basename(source);
}

function tilde(path: string): string {
  const home = homedir();
  return path.startsWith(`${home}/`) ? `~${path.slice(home.length)}` : path;
}
