#!/usr/bin/env bash
# Boots the Debian test guest image once under TCG the way a dev machine is launched (overlay of 8 GiB on the
# image, NoCloud seed on a CD-ROM, -uuid, SSH forwarded from 127.0.0.1, guest agent channel, QMP) and checks what
# the end-to-end tests rely on: key login as the seed's user, hostname, password login refused, growpart, SMBIOS
# UUID, machine-id, guest agent, ACPI power-off. Prints the timings. Needs genisoimage (verification only) and
# node (QMP and guest agent requests).
#
#   verify-debian-image.sh IMAGE.qcow2 [PORT]
set -euo pipefail
image=$(realpath -e "${1:?usage: verify-debian-image.sh IMAGE.qcow2 [PORT]}")
port=${2:-22322}
uuid=5a1c3e0e-7d2b-4f6e-9a10-1c2d3e4f5a6b
work=$(mktemp -d)
qemu_pid=
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

ssh-keygen -q -t ed25519 -N '' -f key
printf 'instance-id: i-verify-%s\nlocal-hostname: dev\n' "$(date +%s)" >meta-data
cat >user-data <<CFG
#cloud-config
hostname: dev
ssh_pwauth: false
users:
  - name: dev
    sudo: ALL=(ALL) NOPASSWD:ALL
    shell: /bin/bash
    lock_passwd: true
    ssh_authorized_keys:
      - $(cat key.pub)
CFG
genisoimage -quiet -output seed.iso -volid cidata -joliet -rock user-data meta-data
qemu-img create -q -f qcow2 -b "$image" -F qcow2 top.qcow2 8G

# A QMP command (or a guest agent request) over a unix socket, by node.
request() { # socket json [qmp]
  node -e '
    const [path, json, qmp] = process.argv.slice(1);
    const s = require("net").connect(path);
    let buf = "", sent = false;
    s.setTimeout(15000, () => { console.error("no answer on " + path); process.exit(1); });
    s.on("data", (d) => {
      buf += d;
      const lines = buf.split("\n"); buf = lines.pop();
      for (const line of lines) {
        const m = JSON.parse(line);
        if (m.QMP) { s.write("{\"execute\":\"qmp_capabilities\"}\n"); continue; }
        if (qmp && !sent) { sent = true; s.write(json + "\n"); continue; }
        if ("return" in m || "error" in m) { console.log(JSON.stringify(m)); s.end(); process.exit(0); }
      }
    });
    if (!qmp) s.write(json + "\n");' "$1" "$2" "${3:-}"
}

fail=0
check() { # description expected actual
  if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: expected '$2', got '$3'"; fail=1; fi
}

# QEMU as a dev machine runs (the seed CD-ROM only when asked), then SSH polled until it answers.
boot() { # with-seed|without-seed
  local seed=()
  [ "$1" = with-seed ] && seed=(-drive file=seed.iso,format=raw,media=cdrom,readonly=on)
  started=$(date +%s.%N)
  qemu-system-x86_64 -accel tcg -m 2048 -smp 2 -nographic -monitor none -serial "file:serial-$1.log" \
    -uuid "$uuid" \
    -drive file=top.qcow2,format=qcow2,if=virtio \
    "${seed[@]}" \
    -netdev "user,id=n,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n \
    -device virtio-serial -chardev socket,path=ga.sock,server=on,wait=off,id=ga \
    -device virtserialport,chardev=ga,name=org.qemu.guest_agent.0 \
    -qmp unix:qmp.sock,server=on,wait=off </dev/null >qemu.out 2>&1 &
  qemu_pid=$!
  hostname=
  local deadline=$((SECONDS + 400))
  while [ $SECONDS -lt $deadline ]; do
    hostname=$(timeout 15 "${ssh_cmd[@]}" cat /etc/hostname 2>ssh.err) && break
    kill -0 "$qemu_pid" 2>/dev/null || { echo "QEMU exited:"; cat qemu.out; tail -20 "serial-$1.log"; exit 1; }
    sleep 0.5
  done
  echo "SSH answered $(echo "$(date +%s.%N) - $started" | bc) s after QEMU started ($1); hostname: ${hostname:-none}"
  # A changed host key shows here (ssh's own message), not as a time-out.
  [ "$hostname" = dev ] || { tail -30 "serial-$1.log"; echo "ssh: $(tail -5 ssh.err)"; exit 1; }
}

power_off() {
  local powerdown
  powerdown=$(date +%s.%N)
  request qmp.sock '{"execute":"system_powerdown"}' qmp >/dev/null
  for _ in $(seq 1 300); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$qemu_pid" 2>/dev/null; then check "ACPI power-off within 30 s" off running; else
    echo "ok   ACPI power-off took $(echo "$(date +%s.%N) - $powerdown" | bc) s"
    qemu_pid=
  fi
  check "overlay clean after power-off" 0 "$(qemu-img check top.qcow2 >/dev/null 2>&1; echo $?)"
}

ssh_cmd=(ssh -n -p "$port" -i key -o UserKnownHostsFile=known -o StrictHostKeyChecking=accept-new -o ConnectTimeout=5 -o BatchMode=yes dev@127.0.0.1)
ssh_in() { "${ssh_cmd[@]}" "$@"; }

boot with-seed
check "boot finished" running "$(ssh_in systemctl is-system-running --wait)"
check "SMBIOS UUID is -uuid" "$uuid" "$(ssh_in sudo cat /sys/class/dmi/id/product_uuid)"
check "machine-id is set" 33 "$(ssh_in 'wc -c </etc/machine-id')"
check "growpart grew the root past 7 GiB" yes "$(ssh_in 'df -BG --output=size / | tail -n 1 | tr -dc 0-9 | { read -r g; [ "$g" -ge 7 ] && echo yes || echo "no ($g G)"; }')"
check "guest agent active" active "$(ssh_in systemctl is-active qemu-guest-agent)"
check "guest agent answers" '{"return":{"host-name":"dev"}}' "$(request ga.sock '{"execute":"guest-get-host-name"}')"
check "no failed units" "" "$(ssh_in systemctl --failed --no-legend --plain)"
check "no file system errors" "" "$(ssh_in 'sudo dmesg | grep -iE "EXT4-fs (error|warning)" || true')"
# The methods the server offers once public keys are off: publickey alone means password login is refused.
check "password login refused" "Permission denied (publickey)" \
  "$(ssh -n -p "$port" -o UserKnownHostsFile=known -o BatchMode=yes -o PubkeyAuthentication=no dev@127.0.0.1 true 2>&1 | grep -o 'Permission denied ([^)]*)')"
echo "boot: $(ssh_in systemd-analyze | head -n 1)"

power_off

# A cold boot without the seed: the same instance to the guest (same host key, no new users), and faster.
ssh_cmd=(ssh -n -p "$port" -i key -o UserKnownHostsFile=known -o StrictHostKeyChecking=yes -o ConnectTimeout=5 -o BatchMode=yes dev@127.0.0.1)
boot without-seed
check "boot finished" running "$(ssh_in systemctl is-system-running --wait)"
check "no user made by a fallback data source" "" "$(ssh_in 'getent passwd debian || true')"
check "still one cloud-init instance" i-verify "$(ssh_in 'ls /var/lib/cloud/instances' | sed 's/-[0-9]*$//')"
echo "boot: $(ssh_in systemd-analyze | head -n 1)"
power_off
exit $fail
