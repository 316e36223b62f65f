#!/usr/bin/env bash
# Create (once) and print the path of the shared virtual environment for this checkout.
#
# The venv is ~7 GB and takes minutes to build, so it lives outside the clone, keyed by a
# hash of constraints.txt: every fresh clone with the same pins reuses it. The package itself
# is installed editable and re-pointed at the current clone whenever pyproject.toml or the
# clone path changes (a few seconds).
#
# torch goes in FIRST, alone, from its pin: pip then never resolves an open torch requirement
# to another multi-GB build. Every later pip call passes -c constraints.txt.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python_bin=${PYTHON:-}
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin=$candidate; break; fi
  done
fi
[ -n "$python_bin" ] || { echo "venv.sh: no python3 found; set PYTHON=/path/to/python3.11" >&2; exit 1; }

key=$(sha256sum constraints.txt | cut -c1-16)
cache=${VNE_VENV_CACHE:-$HOME/.cache/vanillanet-edge}
venv="$cache/venv-$key"
mkdir -p "$cache"

exec 9>"$cache/.lock-$key"
flock 9   # two clones building the same venv at once would corrupt it

pin() { grep -E "^$1==" constraints.txt; }
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  echo ">> building $venv (first time for these pins: several minutes, ~7 GB)" >&2
  "$python_bin" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q "$(pin setuptools)" "$(pin wheel)" >&2
  "$venv/bin/python" -m pip install -q "$(pin torch)" "$(pin torchvision)" >&2
  "$venv/bin/python" -m pip install -q -c constraints.txt -e ".[dev]" --no-build-isolation >&2
  "$venv/bin/python" -m pip check >&2
  echo "$root" > "$venv/.installed-from"
  sha256sum pyproject.toml | cut -c1-16 >> "$venv/.installed-from"
  touch "$venv/.complete"
fi

stamp=$(printf '%s\n%s\n' "$root" "$(sha256sum pyproject.toml | cut -c1-16)")
if [ "$(cat "$venv/.installed-from" 2>/dev/null)" != "$stamp" ]; then
  "$venv/bin/python" -m pip install -q -c constraints.txt -e ".[dev]" --no-build-isolation >&2
  printf '%s\n' "$stamp" > "$venv/.installed-from"
fi
ln -sfn "$venv" .venv
echo "$venv"
