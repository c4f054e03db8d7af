#!/usr/bin/env bash
# Install what callplane needs on a fresh Debian machine: system packages, then a virtual
# environment with the locked Python dependencies. Safe to run again; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium and chromium-driver: the console's browser tests (tests/console) drive Debian's own browser.
SYSTEM_PACKAGES=(ffmpeg espeak-ng flite sox sip-tester openssh-server chromium chromium-driver)
# kamailio: the SIP front door of the media nodes (`callplane sip-front`, deploy/kamailio; tests/scale).
SYSTEM_PACKAGES+=(kamailio)
# npm: the console's browser libraries (console/package.json) are installed from the npm registry here, once.
command -v npm >/dev/null 2>&1 || SYSTEM_PACKAGES+=(npm)
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
# Debian starts kamailio's own service with its sample config on 5060 (the media engine's default SIP port):
# callplane runs Kamailio itself (`callplane sip-front`), so that service stays off.
if [[ " ${missing[*]} " == *" kamailio "* ]] && command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now kamailio >/dev/null 2>&1 || true
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

# The web console's browser libraries, pinned in console/package-lock.json: installed here and copied into the
# console's static assets, so nothing is fetched at run time. Skipped when the copy matches the lock.
VENDOR=src/callplane/surfaces/console/static/vendor
if ! cmp -s console/package-lock.json "$VENDOR/package-lock.json"; then
  (cd console && npm ci --no-audit --no-fund --loglevel=error)
  mkdir -p "$VENDOR"
  cp console/node_modules/wavesurfer.js/dist/wavesurfer.min.js \
    console/node_modules/wavesurfer.js/dist/plugins/regions.min.js \
    console/node_modules/chart.js/dist/chart.umd.min.js "$VENDOR/"
  cp console/node_modules/wavesurfer.js/LICENSE "$VENDOR/wavesurfer.LICENSE"
  cp console/node_modules/chart.js/LICENSE.md "$VENDOR/chart.js.LICENSE.md"
  cp console/package-lock.json "$VENDOR/package-lock.json"
fi

# Azurite (Microsoft's Azure Storage emulator, pinned in tools/azurite/package-lock.json): tests/storage fetch
# Invoca recordings from it. Skipped when already installed at the locked version.
if ! cmp -s tools/azurite/package-lock.json tools/azurite/node_modules/.installed-lock.json 2>/dev/null; then
  (cd tools/azurite && npm ci --no-audit --no-fund --loglevel=error)
  cp tools/azurite/package-lock.json tools/azurite/node_modules/.installed-lock.json
fi
