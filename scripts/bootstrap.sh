#!/usr/bin/env bash
# Set up everything jrobot needs on a fresh Debian/Ubuntu machine with Python 3.11+:
# system libraries for offscreen MuJoCo rendering, then a virtual environment in .venv/ with the
# package and its test extras installed at the versions pinned in constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(libosmesa6 libgl1 libegl1 libglib2.0-0)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo"
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    # Another apt (a fresh machine's unattended upgrades, a second setup script) may hold apt's lock
    # for a while: wait for it rather than go on without offscreen rendering.
    installed=0
    for _ in $(seq 60); do
      if err=$({ $sudo apt-get -o DPkg::Lock::Timeout=10 update -qq \
        && DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=10 install -y -qq "${missing[@]}" >/dev/null; } 2>&1); then
        installed=1
        break
      fi
      case "$err" in
        *lock*) echo "bootstrap: apt's lock is held by another process; retrying in 5 s" >&2 && sleep 5 ;;
        *) echo "$err" >&2 && break ;;
      esac
    done
    if [ "$installed" -ne 1 ]; then
      echo "bootstrap: could not install ${missing[*]}: offscreen MuJoCo rendering (cameras, the demo, their tests) will fail until they are installed" >&2
    fi
  else
    echo "bootstrap: please install ${missing[*]} (needed for offscreen MuJoCo rendering)" >&2
  fi
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: jrobot needs Python >= 3.11 ($python is $("$python" --version 2>&1))" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[test]" ruff
touch .venv/.installed
echo "bootstrap: .venv ready ($(.venv/bin/python --version))"
