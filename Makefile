# The two entry points: `make demo` and `make test`. Each installs what it needs.
.PHONY: demo test lint bootstrap bench bench-quick clean

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	@.venv/bin/python -m isolation.demo

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# Two workers (the CI machine has 2 cores); the few tests that count processes machine-wide
# run alone afterwards.
PYTEST_WORKERS ?= 2

test: bootstrap lint
	scripts/podman-images --setup "$${ISOLATION_TEST_CACHE:-$$HOME/.cache/isolation-tests}"
	.venv/bin/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS)
	.venv/bin/python -m pytest -m serial $(PYTEST_ARGS)
	.venv/bin/python fuzz/run_all.py --seconds $${FUZZ_SECONDS:-20}
	$(MAKE) --no-print-directory bench-quick

# Short benchmark runs: they print their figures and ratios; targets are reported, not asserted.
bench-quick: bootstrap
	.venv/bin/python bench/envelope.py --quick
	.venv/bin/python bench/runtime.py --quick
	.venv/bin/python bench/overhead.py --quick
	.venv/bin/python bench/kubernetes.py --quick

bench: bootstrap
	.venv/bin/python bench/envelope.py
	.venv/bin/python bench/runtime.py
	.venv/bin/python bench/overhead.py
	.venv/bin/python bench/kubernetes.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
