#!/usr/bin/env bash
# Build a virtual environment holding the real openpi client (openpi-client 0.1.2 from PyPI), for the
# interoperability test in tests/serving/test_openpi.py and for trying a `jrobot.serve` server by hand.
# It is separate from .venv/ because openpi-client pins numpy<2 while jrobot runs on numpy 2; it also
# imports typing_extensions without declaring it, so that is installed explicitly. Its dependencies
# are pinned below (the versions it was tested with), so a new release of one cannot break the test.
# `make test` builds it in .venvs/openpi and points the test at it.
#
#   scripts/openpi_client_env.sh [VENV]      # default: .venvs/openpi (in the repository)
#   export JROBOT_OPENPI_PYTHON=.../bin/python  # the line printed at the end; then run the tests
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$repo/.venvs/openpi}"
mkdir -p "$(dirname "$venv")"
venv="$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")"

python=${PYTHON:-}
if [ -z "$python" ]; then
  python=python3.11
  command -v "$python" >/dev/null || python=python3
fi
if ! command -v "$python" >/dev/null; then
  echo "openpi_client_env: $python not found (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
# numpy 1.26 (openpi-client's numpy<2) has wheels for Python 3.9 to 3.12
if ! "$python" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 12))'; then
  echo "openpi_client_env: need Python 3.9 to 3.12 (numpy<2 wheels), $python is $("$python" --version 2>&1)" >&2
  exit 1
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "openpi-client==0.1.2" \
  "numpy==1.26.4" "msgpack==1.2.4" "websockets==17.4" "pillow==13.0.0" "dm-tree==0.1.10" \
  "absl-py==2.5.1" "attrs==26.1.0" "wrapt==2.5.2" "typing_extensions==4.16.0"
"$venv/bin/python" -c 'import numpy, openpi_client.websocket_client_policy; print("openpi_client_env: openpi-client 0.1.2 with numpy", numpy.__version__)'

echo "export JROBOT_OPENPI_PYTHON=$venv/bin/python"
