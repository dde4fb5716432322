#!/usr/bin/env bash
# Create .venv with mdtrace (editable) and its test tools; expose Debian's bcc to it if present.
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.mdtrace-installed"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
# reinstall when the project metadata or setup.py (man pages, completion) changes
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" || setup.py -nt "$stamp" ]]; then
    "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp"
fi
# bcc is pure Python over libbcc.so; Debian installs it for the system python only.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [[ -d /usr/lib/python3/dist-packages/bcc && ! -e "$site/bcc" ]]; then
    ln -s /usr/lib/python3/dist-packages/bcc "$site/bcc"
fi
