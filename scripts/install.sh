#!/usr/bin/env bash
# Install what callplane needs on a fresh Debian machine: system packages, then a virtual
# environment with the locked Python dependencies. Safe to run again; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(ffmpeg espeak-ng flite sox sip-tester openssh-server)
missing=()
for package in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import uv" 2>/dev/null; then
  .venv/bin/python -m pip install -q --disable-pip-version-check uv
fi
# The lock pins every package; installing it again is a quick no-op when nothing changed.
.venv/bin/python -m uv pip install -q --python .venv/bin/python -r requirements.lock
.venv/bin/python -m uv pip install -q --python .venv/bin/python --no-deps -e .
