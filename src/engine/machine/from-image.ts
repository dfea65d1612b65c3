// A machine launched from a cloud image: the image comes into the library's image cache once (downloaded or
// copied, checked) and stays read-only there; the machine's disk is an overlay on it, and a cloud-init seed gives
// the guest a user with the SSH key, a hostname and a host key known here before first contact.
import { readFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { defaultGuestUser } from '../cloud-init';
import { fetchImage, isImageFetchError, type CachedImage } from '../images';
import type { OperationOptions } from '../operation';
import { findUserPublicKey, libraryKeyPair } from '../ssh';
import { MachineError } from './errors';
import { machineFolderPath, makeMachineFolder } from './folders';
import { writeGuestAccess as guestAccess } from './guest-access';
import { newId } from './identity';
import { createLayer, newLayerName } from './layer-files';
import type { LibraryContext } from './library-context';
import { details } from './machine-info';
import { newManifest } from './machines';
import { validateName } from './names';
import { refuseMachineIdLikeName } from './resolve-ref';
import { DEFAULT_DISK_SIZE, validateDiskSize, validateSettings } from './settings';
import { step } from './steps';
import type { CreateFromImageOptions, CreateFromImageResult } from './types';

/** The library's image cache: a dot-folder, so it is never taken for a machine. */
export const IMAGE_CACHE = '.images';

export async function createFromImage(ctx: LibraryContext, name: string, source: string, options: CreateFromImageOptions & OperationOptions): Promise<CreateFromImageResult> {
  const displayName = validateName(name, 'machine name');
  validateSettings(options);
  // A key file named by the user is checked before any download; the library's own pair is made only after it.
  const named = options.sshKey === undefined ? null : await namedKey(options.sshKey);
  const user = options.user ?? defaultGuestUser(hostUser());
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(user)) {
    throw new MachineError('INVALID_ARGUMENT', `"${user}" is not a user name a Linux guest accepts: use lower-case letters, digits, "_" and "-" (at most 32), starting with a letter.`);
  }
  const image = await fetchImage(source, {
    cacheDir: join(ctx.store.dir, IMAGE_CACHE),
    sha256: options.sha256,
    onProgress: options.onProgress === undefined ? undefined : (done, total) => options.onProgress!(done, total ?? 0),
    signal: options.signal,
  }).catch((e: unknown) => {
    throw fromFetchError(e);
  });
  const size = validateDiskSize(Math.max(options.diskSize ?? DEFAULT_DISK_SIZE, image.virtualSize));
  const key = named ?? (await defaultKey(ctx.store.dir));
  const all = await ctx.entries();
  refuseMachineIdLikeName(displayName, all);
  const id = newId();
  const top = newLayerName(0);
  const manifest = newManifest(id, displayName, all, options, [{ virtualSize: size, top }]);
  manifest.baseImage = { sha256: image.sha256, format: image.format, layer: `../${IMAGE_CACHE}/${image.sha256}.${image.format}`, source: image.source };
  const folder = await makeMachineFolder(ctx.store, machineFolderPath(ctx.store, displayName, id, undefined), async (staging) => {
    await createLayer(join(staging, top), size, image.path, image.format);
    step('create from image: disk created');
    manifest.guest = await guestAccess(staging, manifest, {
      user,
      authorizedKeys: [key.publicKey],
      identityFile: key.privateKeyPath,
      ...(options.userData === undefined ? {} : { userData: options.userData }),
    });
    return manifest;
  });
  return { machine: await details({ folder, manifest }, await ctx.entries()), image: imageFacts(image), key: { path: key.publicKeyPath, generated: key.generated } };
}

interface GuestKey {
  publicKey: string;
  publicKeyPath: string;
  privateKeyPath: string;
  generated: boolean;
}

/** A public key file the user named (FILE.pub, or FILE with FILE.pub beside it). */
async function namedKey(named: string): Promise<GuestKey> {
  const publicKeyPath = named.endsWith('.pub') ? named : `${named}.pub`;
  const text = await readFile(publicKeyPath, 'utf8').catch((e: Error) => {
    throw new MachineError('NOT_FOUND', `The SSH key ${publicKeyPath} cannot be read (${e.message}); name a public key file (.pub).`);
  });
  const line = text.split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
  if (!/^(ssh-|ecdsa-|sk-)/.test(line)) throw new MachineError('INVALID_ARGUMENT', `${publicKeyPath} is not an SSH public key (it should start with ssh-ed25519, ssh-rsa or ecdsa-).`);
  return { publicKey: line, publicKeyPath, privateKeyPath: publicKeyPath.slice(0, -4), generated: false };
}

/** The user's own key (~/.ssh: id_ed25519, id_ecdsa, id_rsa), else the library's pair, made once. */
async function defaultKey(libraryDir: string): Promise<GuestKey> {
  const own = await findUserPublicKey(homedir());
  if (own !== null) return { ...own, generated: false };
  return libraryKeyPair(libraryDir);
}

/** The image cache's refusals as the library's errors (its message already names the problem and the way out). */
function fromFetchError(e: unknown): unknown {
  if (!isImageFetchError(e)) return e;
  const code = e.code === 'CANCELLED' ? 'ABORTED' : e.code === 'NO_SPACE' ? 'NO_SPACE' : 'FETCH_FAILED';
  return new MachineError(code, e.message, [], { cause: e });
}

function hostUser(): string {
  try {
    return userInfo().username;
  } catch {
    return '';
  }
}

function imageFacts(image: CachedImage): CreateFromImageResult['image'] {
  return { sha256: image.sha256, format: image.format, virtualSize: image.virtualSize, fromCache: image.fromCache, source: image.source };
}
