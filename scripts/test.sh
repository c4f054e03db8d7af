#!/usr/bin/env bash
# Install what is needed, then run every check: lint, types, layering, and the whole test suite
# against real components (SQLite and PostgreSQL, loopback HTTP, real audio, sipp).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh

# PostgreSQL: the suite runs every API test on it too. Start the local cluster if it is down.
if command -v pg_lsclusters >/dev/null 2>&1; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    version=$(ls /etc/postgresql | head -n 1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/lint-imports

workers="${CALLPLANE_TEST_WORKERS:-2}"
exec .venv/bin/pytest -n "$workers" --dist loadgroup --durations=25 "$@"  # the slowest, to keep CI lean
