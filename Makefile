# The two commands the README opens with. Both create the shared venv when missing
# (scripts/venv.sh), install the package into it, then run.
.PHONY: demo test venv
SHELL := /bin/bash

venv:
	@scripts/venv.sh >/dev/null

# The main job on the built-in default: digits data -> train a tiny VanillaNet -> fuse -> verify.
demo: venv
	.venv/bin/vanillanet-edge demo --out runs/demo

# The whole test suite.
test: venv
	.venv/bin/python -m pytest -q
