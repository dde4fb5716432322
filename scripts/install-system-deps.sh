#!/usr/bin/env bash
# Debian packages mdtrace's tests use: bcc (python3-bpfcc), bpftool, kernel headers for bcc
# compile tests, prometheus/promtool, tmux, qemu + mmdebstrap for the real-kernel guest.
# Installs only what is missing; needs root (CI runs as root).  No-op elsewhere, with a note.
set -euo pipefail
HEADERS_PKG=${MDTRACE_HEADERS_PKG:-linux-headers-6.12.117+deb12-amd64}
want=(python3-bpfcc bpfcc-tools libbpfcc bpftool prometheus tmux qemu-system-x86 qemu-utils
      mmdebstrap "$HEADERS_PKG")
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
if [[ $(id -u) != 0 ]]; then
    echo "install-system-deps: not root; missing ${missing[*]} (tests needing them will skip)" >&2
    exit 0
fi
echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
