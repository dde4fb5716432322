#!/usr/bin/env bash
# Set up live tracing for mdtrace on Debian/Ubuntu: bcc (python3-bpfcc, bpfcc-tools, libbpfcc),
# bpftool, and the headers of the running kernel (bcc compiles the BPF C against them), then
# make the project venv see Debian's bcc (scripts/bootstrap.sh adds the symlink).
#   usage: sudo scripts/setup-bcc.sh [KERNEL_RELEASE]   (default: uname -r)
# Idempotent; installs only what is missing.  Afterwards: `.venv/bin/mdtrace doctor`.
set -euo pipefail
cd "$(dirname "$0")/.."
rel=${1:-$(uname -r)}
want=(python3-bpfcc bpfcc-tools libbpfcc bpftool "linux-headers-$rel")
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "setup-bcc: missing ${missing[*]}; re-run as root" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        echo "setup-bcc: apt-get could not install ${missing[*]}." >&2
        echo "  (no linux-headers-$rel package? custom kernels need their own headers; bcc" >&2
        echo "   also accepts BCC_KERNEL_SOURCE=/path/to/headers)" >&2
        exit 2
    fi
fi
# the venv (created if needed) gets a symlink to /usr/lib/python3/dist-packages/bcc
bash scripts/bootstrap.sh
.venv/bin/python -c 'import bcc; print("setup-bcc: bcc", getattr(bcc, "__version__", "?"), "importable from .venv")'
echo "setup-bcc: done; check with: .venv/bin/mdtrace doctor"
