#!/usr/bin/env bash
# Builds a Debian 12 (bookworm) cloud-style guest disk from Debian's own packages, for the end-to-end tests and the
# bench: what a cloud image ships (cloud-init with NoCloud, growpart, qemu-guest-agent, sshd without host keys, an
# empty machine-id, no users), nothing downloaded from elsewhere and no loop devices or mounts.
#
#   build-debian-image.sh OUT.qcow2        (as root; mmdebstrap, syslinux, mtools, dosfstools, e2fsprogs, qemu-img)
#
# Disk (2 GiB virtual, qcow2 with zlib-compressed clusters): MBR with syslinux's mbr.bin, partition 1 a bootable
# FAT16 holding syslinux, the kernel, the initrd and syslinux.cfg; partition 2 the ext4 root, last so that
# cloud-init's growpart can grow it to the machine's disk size. The root file system is made from the mmdebstrap
# folder with `mke2fs -d`, the FAT one with mtools, both written at their offsets inside the disk file.
# The image is built in a temporary folder next to OUT and renamed into place, so a failed build leaves no OUT.
set -euo pipefail

out=${1:?usage: build-debian-image.sh OUT.qcow2}
[ "$(id -u)" = 0 ] || { echo "Building the Debian guest image needs root (mmdebstrap, and file ownership in the root file system)." >&2; exit 1; }
for tool in mmdebstrap syslinux mcopy mkfs.vfat mke2fs qemu-img; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is missing: apt-get install mmdebstrap syslinux syslinux-common mtools dosfstools e2fsprogs qemu-utils" >&2; exit 1; }
done
mbr_bin=/usr/lib/syslinux/mbr/mbr.bin
[ -f "$mbr_bin" ] || { echo "$mbr_bin is missing: apt-get install syslinux-common" >&2; exit 1; }

# The packages of a cloud-style image. fdisk gives growpart its sfdisk; dbus lets logind act on the ACPI power
# button; ifupdown + isc-dhcp-client are what cloud-init's fallback network config (DHCP on eth0) renders to.
packages=(
  linux-image-amd64 initramfs-tools zstd kmod udev systemd-sysv libpam-systemd dbus
  ifupdown isc-dhcp-client iproute2 netbase openssh-server
  cloud-init cloud-guest-utils fdisk e2fsprogs qemu-guest-agent
  sudo ca-certificates procps less
)
kernel_cmdline='root=/dev/vda2 console=ttyS0,115200 rw net.ifnames=0'

# The mirror apt on this machine uses when it is a Debian archive, else Debian's own redirector.
mirror=${VMSNAP_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -hoE '(https?)://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 | tr -d ' ' || true)
  mirror=${mirror%/}
  mirror=${mirror:-http://deb.debian.org/debian}
fi
security_mirror=${VMSNAP_DEBIAN_SECURITY_MIRROR:-${mirror}-security}

disk_mib=2048
boot_start_mib=1
boot_mib=128
root_start_mib=$((boot_start_mib + boot_mib))
root_mib=$((disk_mib - root_start_mib))

out_dir=$(cd "$(dirname "$out")" && pwd)
work=$(mktemp -d "$out_dir/.debian-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/root"
started=$(date +%s)
echo "Building the Debian 12 guest image from $mirror"

# The initramfs config goes in before the kernel is installed: only the drivers a root disk needs (virtio, SCSI,
# SATA/IDE, NVMe) instead of "most", 6.7 MB instead of 30 MB, which TCG unpacks faster at every boot; udev loads the
# rest from the root file system. A hook adds them (not /etc/initramfs-tools/modules: that is the
# package's conffile, and dpkg would stop to ask about it).
export ROOT_DRIVERS_HOOK="$work/vmsnap-root-drivers"
cat >"$ROOT_DRIVERS_HOOK" <<'HOOK'
#!/bin/sh
case $1 in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
for module in virtio_pci virtio_blk virtio_scsi sd_mod sr_mod ahci ata_piix nvme ext4 crc32c_generic; do
  manual_add_modules "$module"
done
HOOK
chmod 755 "$ROOT_DRIVERS_HOOK"

# mmdebstrap (hooks run with the root folder as $1 and /proc, /dev mounted in it). The host's hostname and
# resolv.conf that mmdebstrap copies in are replaced below.
mmdebstrap --variant=minbase \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo MODULES=list >"$1/etc/initramfs-tools/conf.d/vmsnap.conf"' \
  --essential-hook='mkdir -p "$1/etc/initramfs-tools/hooks" && cp "$ROOT_DRIVERS_HOOK" "$1/etc/initramfs-tools/hooks/vmsnap-root-drivers"' \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --customize-hook='chroot "$1" systemctl enable serial-getty@ttyS0.service' \
  --customize-hook='chroot "$1" systemctl disable apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service 2>/dev/null || true' \
  --customize-hook='chroot "$1" passwd -l root >/dev/null' \
  bookworm "$root" \
  "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" \
  "deb $security_mirror bookworm-security main"

# What makes it a cloud image: per-instance identity comes from first boot, not from the build.
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
echo localhost >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
# QEMU's pc machine has a floppy controller without a disk: blkid probing it (cloud-init's ds-identify) logs I/O errors.
echo 'blacklist floppy' >"$root/etc/modprobe.d/vmsnap-no-floppy.conf"
echo LANG=C.UTF-8 >"$root/etc/default/locale" # no locales package: C.UTF-8 needs no generation
rm -f "$root/etc/resolv.conf" && : >"$root/etc/resolv.conf"
printf '/dev/vda2\t/\text4\trw,errors=remount-ro\t0\t1\n' >"$root/etc/fstab"
# 99-: read after the package's 90_dpkg.cfg, whose list this replaces.
cat >"$root/etc/cloud/cloud.cfg.d/99-vmsnap.cfg" <<'CFG'
# vmsnap test image: seeds come from a NoCloud volume labelled cidata. No "None" fallback: with it, a boot
# without the seed is a new instance to cloud-init (new SSH host keys, a "debian" user); without it, ds-identify
# finds nothing and turns cloud-init off for that boot, and the first boot's network config stays. Two entries:
# with a single one, ds-identify takes it without looking and adds None itself.
datasource_list: [ NoCloud, ConfigDrive ]
# /etc/hosts names the instance's hostname (sudo looks it up), as Debian's cloud images do.
manage_etc_hosts: true
locale: C.UTF-8
# Host keys are made at first boot under TCG: RSA and DSA key generation took 13 s of it.
ssh_genkeytypes: [ed25519, ecdsa]
# Debian's module lists without the ones for other clouds and tools this image does not have (snap, grub, byobu,
# puppet, chef, ...): every module costs Python time before SSH is up under TCG.
cloud_init_modules: [migrator, seed_random, bootcmd, write-files, growpart, resizefs, disk_setup, mounts,
  set_hostname, update_hostname, update_etc_hosts, ca-certs, users-groups, ssh]
cloud_config_modules: [locale, set-passwords, apt-configure, ntp, timezone, runcmd]
cloud_final_modules: [package-update-upgrade-install, write-files-deferred, scripts-vendor, scripts-per-once,
  scripts-per-boot, scripts-per-instance, scripts-user, ssh-authkey-fingerprints, keys-to-console, final-message,
  power-state-change]
CFG
# eth0 by DHCP comes from cloud-init's fallback network config, written to /etc/network/interfaces.d at first boot.
grep -q 'source /etc/network/interfaces.d' "$root/etc/network/interfaces" 2>/dev/null ||
  printf 'source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n' >"$root/etc/network/interfaces"
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log \
  "$root"/tmp/* "$root"/var/tmp/*

# The boot partition's contents: the kernel and initrd the packages installed.
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
cat >"$work/syslinux.cfg" <<CFG
SERIAL 0 115200
DEFAULT debian
PROMPT 0
TIMEOUT 0
LABEL debian
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND $kernel_cmdline
CFG

# The raw disk: file systems written at their partition offsets, then the MBR.
raw="$work/disk.raw"
truncate -s "${disk_mib}M" "$raw"
boot_offset=$((boot_start_mib * 1024 * 1024))
root_offset=$((root_start_mib * 1024 * 1024))
mkfs.vfat -F 16 -n VMSNAPBOOT --offset $((boot_offset / 512)) "$raw" $((boot_mib * 1024)) >/dev/null
mcopy -i "$raw@@$boot_offset" "$kernel" ::vmlinuz
mcopy -i "$raw@@$boot_offset" "$initrd" ::initrd.img
mcopy -i "$raw@@$boot_offset" "$work/syslinux.cfg" ::syslinux.cfg
syslinux --offset "$boot_offset" --install "$raw"
chmod 755 "$root"
mke2fs -q -t ext4 -L debian-root -d "$root" -E offset=$root_offset "$raw" "$((root_mib * 1024))k"

# MBR: syslinux's boot code, then two primary partitions (LBA; CHS fields set to the "beyond 8 GiB" marker).
le32() { local v=$1; printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((v & 255)) $(((v >> 8) & 255)) $(((v >> 16) & 255)) $(((v >> 24) & 255)); }
entry() { # bootflag type start_sector sector_count
  printf "\\x$1\\xfe\\xff\\xff\\x$2\\xfe\\xff\\xff$(le32 "$3")$(le32 "$4")"
}
dd if="$mbr_bin" of="$raw" bs=440 count=1 conv=notrunc status=none
{
  printf '\x76\x6d\x73\x6e\x00\x00' # disk signature "vmsn", then 2 reserved bytes
  entry 80 0e $((boot_offset / 512)) $((boot_mib * 2048))
  entry 00 83 $((root_offset / 512)) $((root_mib * 2048))
  printf '%032d' 0 | tr 0 '\0'
  printf '\x55\xaa'
} | dd of="$raw" bs=1 seek=440 conv=notrunc status=none

qemu-img convert -c -O qcow2 "$raw" "$work/image.qcow2"
mv -f "$work/image.qcow2" "$out"
echo "Built $out ($(du -h "$out" | cut -f1), $(($(date +%s) - started)) s)"
