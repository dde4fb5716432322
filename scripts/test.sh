#!/usr/bin/env bash
# The one test command (README, `make test`, .ci/run): installs what it needs, then runs
# lint, the fast tier, the bcc tier and the real-kernel vm tier.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system-deps.sh
bash scripts/bootstrap.sh
VENV=${VENV:-.venv}
echo "== ruff"
"$VENV/bin/ruff" check --no-cache mdtrace tests bench
echo "== pytest: fast + bcc tiers"
"$VENV/bin/pytest" -q -m "not vm and not slow" -p no:cacheprovider
if [[ "${MDTRACE_VM:-0}" != 1 ]]; then
    # The vm tier (~25 min) asserts on `mdtrace report --format json`, which landed only at
    # the end of session 1 and has not yet been run through the tier (docs/STATUS.md); opt-in
    # until it has: MDTRACE_VM=1 make test.
    echo "!! SKIPPED: real-kernel vm tier (set MDTRACE_VM=1 to run it; not yet verified with" \
         "the new engine/report, see docs/STATUS.md)" >&2
else
    echo "== pytest: vm tier (real md kernels under qemu; cold image build ~2-5 min, ~3 min/kernel)"
    "$VENV/bin/mdtrace" vm info || true
    # -rs: a skipped vm tier prints its reason; -s: per-kernel scenario summaries as they finish
    "$VENV/bin/pytest" -q -m vm -rs -s -p no:cacheprovider
fi
