#!/usr/bin/env bash
# Installs what building and testing tula needs on Debian. Idempotent: apt runs
# only when a package is missing.
set -euo pipefail
packages=(clang-19 libbpf-dev linux-libc-dev iproute2 ethtool nftables curl make chromium chromium-driver bird2 etcd-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # The lab runs its own BIRDs and etcd in namespaces; system-wide ones just installed are not wanted.
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    [[ " ${missing[*]} " == *" bird2 "* ]] && { systemctl disable --now bird >/dev/null 2>&1 || true; }
    [[ " ${missing[*]} " == *" etcd-server "* ]] && { systemctl disable --now etcd >/dev/null 2>&1 || true; }
  fi
fi
# Pinned BPF objects live in bpffs.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
