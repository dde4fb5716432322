# mdtrace: the two commands a fresh machine needs are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast vm vm-all vm-zoo vm-zoo-list lint bench clean

demo:            ## set up and run the main job: report on the bundled example trace
	@bash scripts/bootstrap.sh
	@$(VENV)/bin/mdtrace report

test:            ## everything CI runs: lint, fast tier, bcc tier, real-kernel vm tier
	@bash scripts/test.sh

test-fast:       ## fast unit/scenario tier only
	@bash scripts/bootstrap.sh
	@$(VENV)/bin/ruff check mdtrace vmtest tests bench
	@$(VENV)/bin/pytest -q

vm:              ## real-kernel tier: build the guest image (cached) and run all scenarios on 6.1 + 6.12
	@bash scripts/bootstrap.sh
	@$(VENV)/bin/python -m vmtest scenarios

vm-all:          ## the vm tier on every kernel: 5.10 (bullseye), 6.1 + 6.12 (bookworm), 7.2 (sid)
	@bash scripts/bootstrap.sh
	@MDTRACE_VM_KERNELS=all $(VENV)/bin/pytest -q -m vm -rs -s -p no:cacheprovider

vm-zoo-list:     ## the kernel zoo: each 6.12 variant (one seed fix reverted) and its diff
	@PYTHONPATH=. $(PY) -m vmtest.zoo list

vm-zoo:          ## build the zoo (cached) and run stock + every variant on 6.12, one boot each
	@bash scripts/bootstrap.sh
	@PYTHONPATH=. $(PY) -m vmtest.zoo build
	@MDTRACE_ZOO=all $(VENV)/bin/pytest -q -m vm -rs -s -p no:cacheprovider tests/vm/test_zoo.py

lint:
	@$(VENV)/bin/ruff check mdtrace vmtest tests bench

bench:
	@bash scripts/bootstrap.sh
	@$(PY) bench/bench_report.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
