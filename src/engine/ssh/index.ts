// Getting a user into a machine over SSH: keys, per-machine known_hosts, ssh arguments and config, waiting for
// the server (no vscode; the system `ssh` is used only to connect).
export { SshError, isSshError, type SshErrorCode } from './errors';
export { generateEd25519KeyPair, ed25519PublicKeyFromPrivate, parsePublicKey, publicKeyFingerprint, type KeyPair, type PublicKey } from './openssh-key';
export { findUserPublicKey, libraryKeyPair, type UserKey, type LibraryKey } from './user-keys';
export { hostKeyAlias, knownHostsLine, writeKnownHosts, readKnownHosts } from './known-hosts';
export { sshArgs, sshConfigBlock, sshHostName, type SshTarget, type SshArgsOptions } from './client-config';
export { waitForSsh, freeLocalPort, type WaitForSshOptions, type SshAnswer } from './wait';
