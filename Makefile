# The two commands the README opens with. Both create the shared venv when missing
# (scripts/venv.sh), install the package into it, then run.
.PHONY: demo test venv
SHELL := /bin/bash

venv:
	@scripts/venv.sh >/dev/null

# The main job on the built-in default: digits -> train -> fuse -> convert (fp32+int8, 4 targets) -> calibrate -> eval -> bench -> report.
demo: venv
	.venv/bin/vanillanet-edge run --out runs/demo

# The whole test suite.
test: venv
	.venv/bin/python -m pytest -q
