#!/usr/bin/env bash
# Install what is needed, then run callplane on its embedded defaults: SQLite and files under
# ./callplane-data (or $CALLPLANE_DATA_DIR), in-process workers, on http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/callplane serve "$@"
