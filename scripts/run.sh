#!/usr/bin/env bash
# Install what is needed, then run callplane on its embedded defaults: SQLite and files under
# ./callplane-data (or $CALLPLANE_DATA_DIR), in-process workers, the built-in SIP/media engine (SIP on
# 127.0.0.1:5060 UDP; CALLPLANE_VOICE_ENABLED=false turns it off), on http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export CALLPLANE_VOICE_ENABLED="${CALLPLANE_VOICE_ENABLED:-true}"
exec .venv/bin/callplane serve "$@"
