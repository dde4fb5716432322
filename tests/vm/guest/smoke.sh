#!/bin/bash
# Guest smoke test: kernel, modules, md, bcc import, mdtrace import from the share.
set -euo pipefail
echo "kernel $(uname -r) cpus $(nproc) cwd $(pwd)"
modprobe raid456; modprobe dm-raid
ls /dev/vd*
mdadm --create /dev/md0 --run --level=5 --raid-devices=3 /dev/vdb /dev/vdc /dev/vdd --assume-clean
cat /proc/mdstat
mdadm --stop /dev/md0
python3 -c 'import bcc; print("bcc", bcc.__version__ if hasattr(bcc, "__version__") else "ok")'
mdtrace --version
echo hello > "$MDTRACE_OUT/hello.txt"
