#!/usr/bin/env bash
# Installs what building and testing need, once: Debian packages (as root on Debian) and npm packages.
# Stops with one sentence naming what is missing when it cannot install it.
set -euo pipefail
cd "$(dirname "$0")/.."

need_debs=()
command -v qemu-img >/dev/null 2>&1 || need_debs+=(qemu-utils)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_debs+=(qemu-system-x86)
# The VS Code test host: Debian's Chromium drives code-server; code-server's kerberos module builds against libkrb5.
command -v chromium >/dev/null 2>&1 || need_debs+=(chromium)
dpkg -s libkrb5-dev >/dev/null 2>&1 || need_debs+=(libkrb5-dev)
# Oracles of the dev-machine suites: OpenSSH (ssh, ssh-keygen, a throwaway sshd), ISO 9660 readers (isoinfo,
# genisoimage), PyYAML (what cloud-init parses user-data with).
command -v ssh >/dev/null 2>&1 || need_debs+=(openssh-client)
[ -x /usr/sbin/sshd ] || need_debs+=(openssh-server)
command -v isoinfo >/dev/null 2>&1 || need_debs+=(genisoimage)
dpkg -s python3-yaml >/dev/null 2>&1 || need_debs+=(python3-yaml)
# libvirt, the second machine source: its client (virsh) and daemons (libvirtd, virtlogd), which the libvirt tests
# start themselves (CI has no systemd). No recommends: no dnsmasq, firewall or polkit.
command -v virsh >/dev/null 2>&1 || need_debs+=(libvirt-clients)
[ -x /usr/sbin/libvirtd ] || need_debs+=(libvirt-daemon-system)
# The Debian test guest (scripts/guest/build-debian-image.sh): a root file system and a boot disk without loop mounts.
for deb in mmdebstrap syslinux syslinux-common mtools dosfstools e2fsprogs; do
  dpkg -s "$deb" >/dev/null 2>&1 || need_debs+=("$deb")
done

if [ ${#need_debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian packages: ${need_debs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${need_debs[@]}" >/dev/null
  else
    echo "Missing: ${need_debs[*]} (Debian packages). Install them, e.g. sudo apt-get install ${need_debs[*]}, and run again." >&2
    exit 1
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "Installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi
