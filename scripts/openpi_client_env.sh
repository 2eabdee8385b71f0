#!/usr/bin/env bash
# Build a virtual environment holding the real openpi client (openpi-client 0.1.2 from PyPI), for the
# interoperability test in tests/serving/test_openpi.py and for trying a `jrobot.serve` server by hand.
# It is separate from .venv/ because openpi-client pins numpy<2 while jrobot runs on numpy 2; it also
# imports typing_extensions without declaring it, so that is installed explicitly.
#
#   scripts/openpi_client_env.sh [VENV]      # default: .venvs/openpi (in the repository)
#   export JROBOT_OPENPI_PYTHON=.../bin/python  # the line printed at the end; then run the tests
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$repo/.venvs/openpi}"
mkdir -p "$(dirname "$venv")"
venv="$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")"

python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null; then
  echo "openpi_client_env: $python not found (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "openpi_client_env: need Python 3.11, $python is $("$python" --version 2>&1)" >&2
  exit 1
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "openpi-client==0.1.2" typing_extensions
"$venv/bin/python" -c 'import numpy, openpi_client.websocket_client_policy; print("openpi_client_env: openpi-client 0.1.2 with numpy", numpy.__version__)'

echo "export JROBOT_OPENPI_PYTHON=$venv/bin/python"
