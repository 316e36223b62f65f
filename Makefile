# The two commands the README opens with. Both create the shared venv when missing
# (scripts/venv.sh), install the package into it, then run.
.PHONY: demo lint test venv
SHELL := /bin/bash

venv:
	@scripts/venv.sh >/dev/null

# The main job on the built-in default: digits -> train -> fuse -> convert (fp32+int8, 4 targets) -> calibrate -> eval -> bench -> report.
demo: venv
	.venv/bin/vanillanet-edge run --out runs/demo

# The whole test suite, after the linters: ruff, the import contracts in pyproject.toml
# (layers, device-side code free of torch/model/converters, no cycles), and mypy on the modules
# that write and read the JSON records (records.py's TypedDicts; [tool.mypy] in pyproject.toml).
test: lint
	.venv/bin/python -m pytest -q

lint: venv
	.venv/bin/python -m ruff check src tests
	.venv/bin/python -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())'
	.venv/bin/python -m mypy
