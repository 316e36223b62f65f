#!/usr/bin/env bash
# Create (once) the shared dependency venv, and (per clone) a light .venv that uses it.
#
# The dependencies are ~7 GB and take minutes to install, so they live outside the clone in a
# venv keyed by a hash of constraints.txt: every fresh clone with the same pins reuses it.
# Each clone gets its own small .venv (seconds) whose site-packages points at the shared one
# through a .pth file, with this clone's package installed editable in it: two clones never
# run each other's code.
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
shared="$cache/deps-$key"
mkdir -p "$cache"

pin() { grep -E "^$1==" constraints.txt; }
(
  flock 9   # two clones building the same shared venv at once would corrupt it
  if [ ! -f "$shared/.complete" ]; then
    rm -rf "$shared"
    echo ">> building $shared (first time for these pins: several minutes, ~7 GB)" >&2
    "$python_bin" -m venv "$shared"
    "$shared/bin/python" -m pip install -q --upgrade pip >&2
    "$shared/bin/python" -m pip install -q "$(pin setuptools)" "$(pin wheel)" >&2
    "$shared/bin/python" -m pip install -q "$(pin torch)" "$(pin torchvision)" >&2
    # the dependencies of every extra, then the package itself out again: clones bring their own
    "$shared/bin/python" -m pip install -q -c constraints.txt ".[dev]" --no-build-isolation >&2
    "$shared/bin/python" -m pip uninstall -q -y vanillanet-edge >&2
    # pnnx (the ncnn converter) requires an open "torch": --no-deps keeps the pinned one
    "$shared/bin/python" -m pip install -q --no-deps "$(pin pnnx)" >&2
    "$shared/bin/python" -m pip check >&2
    touch "$shared/.complete"
  fi
) 9>"$cache/.lock-$key"

site=$("$shared/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
stamp=$(printf '%s\n%s\n' "$shared" "$(sha256sum pyproject.toml | cut -c1-16)")
if [ -L .venv ] || [ "$(cat .venv/.vne-stamp 2>/dev/null)" != "$stamp" ]; then
  rm -rf .venv
  # no pip/setuptools of its own: the shared ones (pinned) come through the .pth below
  "$shared/bin/python" -m venv --without-pip .venv
  local_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import site; site.addsitedir('$site')" > "$local_site/_vanillanet_edge_shared_deps.pth"
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . >&2
  printf '%s\n' "$stamp" > .venv/.vne-stamp
fi
echo "$root/.venv"
