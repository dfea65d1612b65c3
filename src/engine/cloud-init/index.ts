// cloud-init NoCloud seeds: the documents (meta-data, user-data, vendor-data), the guest's SSH host key, and the
// read-only `cidata` ISO 9660 volume that carries them, all written natively (no genisoimage on the host).
export { SeedError, isSeedError, type SeedErrorCode } from './errors';
export { generateHostKeys, checkHostKeys, type HostKeyPair, type HostKeys } from './host-keys';
export {
  buildSeed,
  seedFiles,
  defaultGuestUser,
  hostnameFromMachineName,
  DEFAULT_GUEST_USER,
  type SeedConfig,
  type SeedOptions,
} from './seed-config';
export { writeSeedImage, SEED_LABEL, type SeedFile, type SeedImageOptions } from './seed-image';
