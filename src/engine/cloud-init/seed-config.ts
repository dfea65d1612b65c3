/**
 * What the NoCloud seed says: meta-data (instance-id, hostname) and the cloud-config that makes a cloud image a
 * dev machine (a sudo user with the SSH key, password login off, known SSH host key, a fresh machine-id per
 * instance, the guest agent). Inputs come from users, so each is validated, and the YAML is emitted as JSON
 * (JSON is YAML, and JSON.stringify quotes every string), so no name or key can change the document's structure.
 *
 * Checked against cloud-init 22.4 (Debian 12's package, cloudinit/sources/DataSourceNoCloud.py, helpers.py, stages.py):
 * - NoCloud reads `vendor-data` and `network-config` from the seed as optional files beside the required
 *   `user-data` and `meta-data`; meta-data is parsed as YAML (our JSON is fine).
 * - vendor-data is consumed after user-data and only while `vendor_data: {enabled: true}` (the default; user-data
 *   can turn it off). When configs are merged (ConfigMerger), the user's cloud-config comes before the vendor's and
 *   the default merger is "no_replace": for each top-level key the user-data value wins, dicts are merged key by
 *   key, lists are not appended (a user `bootcmd` or `runcmd` replaces ours entirely).
 * - `bootcmd` runs on every boot in the init stage (cloud-init.service: Before=sysinit.target, so before dbus
 *   and logind start, but after journald); `cloud-init-per instance NAME …` keeps a semaphore under
 *   /var/lib/cloud/instance/sem, so it runs once per instance-id: once on the first boot, once more in a clone.
 * - `ssh_keys` writes the given host keys after deleting the old ones (`ssh_deletekeys`) and then generates no
 *   other types, so the guest presents exactly the ed25519 key the host already knows.
 */
import { SeedError } from './errors';
import { checkHostKeys, type HostKeys } from './host-keys';
import type { SeedFile } from './seed-image';

export interface SeedOptions {
  /** cloud-init's instance-id: the machine's id, so a clone (new id) is a new instance. */
  instanceId: string;
  /** RFC 1123 label, e.g. the machine's name made into a hostname (see hostnameFromMachineName). */
  hostname: string;
  /** The guest user to create (useradd rules: `[a-z_][a-z0-9_-]*`, at most 32 characters). */
  user: string;
  /** authorized_keys lines for that user, one key per entry. */
  authorizedKeys: readonly string[];
  /** The guest's SSH host key, generated on the host (generateHostKeys) so it is known before first contact. */
  hostKeys: HostKeys;
  /**
   * The caller's own user-data (`#cloud-config`, a script, a MIME archive…), used verbatim. Our configuration then
   * goes to vendor-data, which cloud-init applies under it: every key the user-data sets wins.
   */
  userData?: string;
}

export interface SeedConfig {
  metaData: string;
  userData: string;
  /** Present when the caller gave its own user-data. */
  vendorData?: string;
}

export const DEFAULT_GUEST_USER = 'dev';
export const USER_NAME_PATTERN = /^[a-z_][a-z0-9_-]{0,31}$/;
export const HOSTNAME_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
/** Ends up in guest paths (/var/lib/cloud/instances/ID), so no slashes or dot names. */
export const INSTANCE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Accounts of a Debian/Ubuntu base system: cloud-init would add our key and sudo rights to an existing account of
 * that name instead of making a new user.
 */
const SYSTEM_ACCOUNTS = new Set([
  'root', 'daemon', 'bin', 'sys', 'sync', 'games', 'man', 'lp', 'mail', 'news', 'uucp', 'proxy', 'www-data',
  'backup', 'list', 'irc', 'gnats', 'nobody', 'nogroup', '_apt', 'messagebus', 'sshd', 'polkitd', 'syslog',
  'uuidd', 'tcpdump', 'tss', 'dnsmasq', 'landscape', 'pollinate', 'lxd', 'usbmux', 'avahi', 'colord',
]);

/**
 * Runs once per instance from bootcmd. A clone boots a disk whose /etc/machine-id its source already set, and
 * cloud-init does not renew it. When /etc/machine-id is a mount point, systemd made it transient on this very
 * first boot, so it is already new and is left alone. /var/lib/dbus/machine-id goes too, or
 * systemd-machine-id-setup would copy the old id back from it; the new id comes from the SMBIOS UUID under
 * KVM/QEMU (the machine's own, per clone) or at random. dbus and logind start after this (sysinit.target),
 * journald before: it is restarted (without waiting) so this boot's journal is filed under the new id and
 * `journalctl` shows it. PID 1 keeps the old id in memory until the next boot; nothing we rely on reads it there.
 */
/**
 * Turns password login off before sshd first starts (bootcmd runs in cloud-init.service, which systemd orders
 * before ssh.service), in sshd_config and, where sshd_config includes sshd_config.d, in the drop-in cloud-init
 * itself writes (50-cloud-init.conf). ssh_pwauth alone does it later, in the config stage, and then restarts
 * sshd, which resets the connection of whoever logged in right after boot; with the setting already in place,
 * cloud-init finds nothing to change and leaves sshd alone.
 */
export const PASSWORD_LOGIN_OFF_SCRIPT = [
  'd=/etc/ssh/sshd_config.d; f=/etc/ssh/sshd_config; [ -f "$f" ] || exit 0',
  'off() { grep -qE "^PasswordAuthentication[[:space:]]+no" "$1" 2>/dev/null; }',
  'if ! off "$f"; then',
  '  sed -i -E "s/^#?[[:space:]]*PasswordAuthentication[[:space:]].*/PasswordAuthentication no/" "$f"',
  '  off "$f" || echo "PasswordAuthentication no" >> "$f"',
  'fi',
  'if [ -d "$d" ] && grep -qE "^Include[[:space:]]+$d/" "$f" && ! off "$d/50-cloud-init.conf"; then',
  '  echo "PasswordAuthentication no" >> "$d/50-cloud-init.conf"; chmod 600 "$d/50-cloud-init.conf"',
  'fi',
].join('\n');

export const MACHINE_ID_SCRIPT = [
  'if mountpoint -q /etc/machine-id 2>/dev/null; then exit 0; fi',
  'rm -f /etc/machine-id /var/lib/dbus/machine-id',
  'if command -v systemd-machine-id-setup >/dev/null 2>&1; then systemd-machine-id-setup >/dev/null;',
  "else tr -d '-' < /proc/sys/kernel/random/uuid > /etc/machine-id; fi",
  'if [ -d /var/lib/dbus ]; then ln -sf /etc/machine-id /var/lib/dbus/machine-id; fi',
  'systemctl restart --no-block systemd-journald 2>/dev/null || true',
].join('\n');

/**
 * Debian's qemu-guest-agent unit is started by udev when the agent's virtio port exists; when the package is
 * installed by cloud-init after udev saw the port, it is started here. `--no-block` because the unit binds to
 * that device: without the port, a blocking start would wait 90 s for it.
 */
export const GUEST_AGENT_SCRIPT =
  'systemctl enable qemu-guest-agent >/dev/null 2>&1; ' +
  'if [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ]; then systemctl start --no-block qemu-guest-agent; fi; true';

/** Builds the seed's documents; throws a SeedError naming the first invalid input. */
export function buildSeed(options: SeedOptions): SeedConfig {
  const user = checkUserName(options.user);
  const hostname = checkHostname(options.hostname);
  const instanceId = checkInstanceId(options.instanceId);
  const authorizedKeys = checkAuthorizedKeys(options.authorizedKeys);
  const hostKeys = checkHostKeys(options.hostKeys);

  const metaData = yamlDocument({ 'instance-id': instanceId, 'local-hostname': hostname });
  const config = '#cloud-config\n' + yamlDocument(cloudConfig({ user, hostname, authorizedKeys, hostKeys }));
  if (options.userData === undefined) return { metaData, userData: config };
  if (typeof options.userData !== 'string' || options.userData.trim() === '') {
    throw new SeedError('INVALID_USER_DATA', 'The user-data is empty: give a #cloud-config document or leave it out.');
  }
  return { metaData, userData: options.userData, vendorData: config };
}

/** The files of a NoCloud seed, ready for writeSeedImage. */
export function seedFiles(seed: SeedConfig): SeedFile[] {
  const files: SeedFile[] = [
    { name: 'meta-data', data: seed.metaData },
    { name: 'user-data', data: seed.userData },
  ];
  if (seed.vendorData !== undefined) files.push({ name: 'vendor-data', data: seed.vendorData });
  return files;
}

function cloudConfig(o: { user: string; hostname: string; authorizedKeys: string[]; hostKeys: HostKeys }): Record<string, unknown> {
  return {
    hostname: o.hostname,
    fqdn: o.hostname,
    preserve_hostname: false,
    // A 127.0.1.1 line for the hostname, so sudo can resolve it; the rest of /etc/hosts is left as it is.
    manage_etc_hosts: 'localhost',
    users: [
      {
        name: o.user,
        groups: 'sudo',
        sudo: 'ALL=(ALL) NOPASSWD:ALL',
        shell: '/bin/bash',
        lock_passwd: true,
        ssh_authorized_keys: o.authorizedKeys,
      },
    ],
    // Debian's sshd accepts passwords unless told otherwise.
    ssh_pwauth: false,
    ssh_deletekeys: true,
    ssh_keys: {
      ed25519_private: o.hostKeys.ed25519.privateKey,
      // cloud-init writes the line as given: end it, as ssh-keygen does, so the .pub file reads like one.
      ed25519_public: `${o.hostKeys.ed25519.publicKey}\n`,
    },
    bootcmd: [
      ['cloud-init-per', 'instance', 'vmsnap-machine-id', 'sh', '-c', MACHINE_ID_SCRIPT],
      ['sh', '-c', PASSWORD_LOGIN_OFF_SCRIPT],
    ],
    packages: ['qemu-guest-agent'],
    runcmd: [['sh', '-c', GUEST_AGENT_SCRIPT]],
  };
}

/**
 * JSON as a YAML document (flow style). JSON leaves some characters raw that YAML 1.1 (PyYAML, what cloud-init
 * parses with) refuses (DEL, C1 controls, U+FFFE/U+FFFF) or reads as line breaks inside a quoted string, changing
 * the value (NEL, U+2028, U+2029); those are escaped too, and the result is still valid JSON.
 */
function yamlDocument(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/[\u007f-\u009f\u2028\u2029\ufffe\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) + '\n';
}

// ---------------------------------------------------------------------------------------------------------------
// Validation

function checkUserName(name: string): string {
  if (typeof name !== 'string' || !USER_NAME_PATTERN.test(name)) {
    throw new SeedError(
      'INVALID_USER',
      `The guest user name "${shown(name)}" is not allowed: use up to 32 lower-case letters, digits, "_" or "-", starting with a letter or "_".`,
    );
  }
  if (isSystemAccount(name)) {
    throw new SeedError('INVALID_USER', `The guest user name "${name}" is a system account in the guest: choose another name.`);
  }
  return name;
}

function checkHostname(hostname: string): string {
  if (typeof hostname !== 'string' || !HOSTNAME_PATTERN.test(hostname)) {
    throw new SeedError(
      'INVALID_HOSTNAME',
      `The hostname "${shown(hostname)}" is not allowed: use up to 63 letters, digits and "-", not starting or ending with "-".`,
    );
  }
  return hostname.toLowerCase();
}

function checkInstanceId(id: string): string {
  if (typeof id !== 'string' || !INSTANCE_ID_PATTERN.test(id)) {
    throw new SeedError('INVALID_INSTANCE_ID', `The instance-id "${shown(id)}" is not allowed: use up to 128 letters, digits, ".", "_" or "-".`);
  }
  return id;
}

// A key type token followed by its base64 blob, anywhere in the line (options such as from="…" may precede it).
const AUTHORIZED_KEY = /(?:^|\s)(?:ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9-]+@openssh\.com|ssh-[a-z0-9-]+-cert-v01@openssh\.com) +AAAA[A-Za-z0-9+/]+={0,3}(?: |$)/;

function checkAuthorizedKeys(keys: readonly string[]): string[] {
  if (!Array.isArray(keys) || keys.length === 0) {
    throw new SeedError('INVALID_KEY', 'The guest user needs at least one SSH public key, or nobody could log in.');
  }
  return keys.map((raw, i) => {
    const key = typeof raw === 'string' ? raw.trim() : '';
    const wellFormed = Buffer.from(key, 'utf8').toString('utf8') === key; // no lone UTF-16 surrogates
    // eslint-disable-next-line no-control-regex
    if (!wellFormed || /[\x00-\x1f\x7f]/.test(key) || !AUTHORIZED_KEY.test(key)) {
      throw new SeedError('INVALID_KEY', `SSH public key ${i + 1} is not one line "TYPE AAAA… [comment]" (as in a .pub file): "${shown(key)}".`);
    }
    return key;
  });
}

function isSystemAccount(name: string): boolean {
  return SYSTEM_ACCOUNTS.has(name) || name.startsWith('systemd-');
}

function shown(v: unknown): string {
  const s = typeof v === 'string' ? v : String(v);
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 60) + (s.length > 60 ? '…' : '');
}

// ---------------------------------------------------------------------------------------------------------------
// Defaults

/**
 * The guest user when none is given: the host user's name, lower-cased, when it is a valid Linux user name and
 * not root or another system account (sudo as root, or a Windows name such as "John Smith", would not do);
 * otherwise `dev`. The caller says which it picked.
 */
export function defaultGuestUser(hostUser: string): string {
  const name = (hostUser ?? '').trim().toLowerCase();
  return USER_NAME_PATTERN.test(name) && !isSystemAccount(name) ? name : DEFAULT_GUEST_USER;
}

/**
 * A hostname from a machine name ("My Dev VM" → "my-dev-vm"): accents dropped, other characters turned into
 * hyphens, at most 63 characters; `vm` when nothing usable is left.
 */
export function hostnameFromMachineName(name: string): string {
  const label = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return label === '' ? 'vm' : label;
}
