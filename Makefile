# The README's two commands: `make demo` (the main job) and `make test` (what .ci/run calls).
# Each does its own set-up first (idempotent, seconds when already done).
.PHONY: setup demo test test-slow bench-smoke
setup:
	@bash scripts/setup.sh
demo: setup
	.venv/bin/zipper demo
test: setup
	.venv/bin/python -m pytest -q
test-slow: setup
	.venv/bin/python -m pytest -q -m slow
bench-smoke: setup
	for b in train_step decode scaling flops rtf soak; do .venv/bin/python -m benchmarks.$$b --smoke --out runs/bench-smoke || exit 1; done
