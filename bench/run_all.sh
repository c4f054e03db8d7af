#!/usr/bin/env bash
# Every bench script, one after the other, each beside its floor, into one dated folder (issue 14: the summary
# table in docs/benchmarks.md is written from one such run on a quiet machine).
#
#   bash bench/run_all.sh [OUT_DIR]        # default: bench-results/<UTC date-time>
#   ONLY="ingest process" bash bench/run_all.sh   # a subset, by name
#
# Each script's output goes to OUT_DIR/<name>.txt with the load average and UTC time before and after; a script
# that fails or runs past its limit is noted in OUT_DIR/summary.txt and the run goes on. Needs what
# scripts/install.sh installs, plus wrk (apt-get install -y wrk) and PostgreSQL on 127.0.0.1:5432.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
py=.venv/bin/python
pg="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

# name | limit in seconds | command (the arguments of the quiet runs in docs/benchmarks.md)
runs=(
  "ingest|600|$py bench/ingest.py"
  "process|900|$py bench/process.py --backend postgresql"
  "recordings|600|$py bench/recordings.py --full"
  "asr|600|$py bench/asr.py"
  "transcribe|1500|$py bench/transcribe.py"
  "signals|300|$py bench/signals.py"
  "webhooks|600|$py bench/webhooks.py --count 1000"
  "voice_api|1500|$py bench/voice.py --api --database-url $pg --levels 100,200,300 --hold 8"
  "media|900|$py bench/media.py"
  "dialog_media|600|$py bench/dialog_media.py"
  "conference|900|$py bench/conference.py --realtime"
  "streaming|600|$py bench/streaming.py"
  "live_transcription|900|$py bench/live_transcription.py --levels 1,2 --seconds 30"
  "relay|600|$py bench/relay.py"
  "contact_center|600|$py bench/contact_center.py"
  "live_calls|900|$py bench/live_calls.py"
  "search|1200|$py bench/search.py --calls 100000 --runs 100 --like-runs 3 --backends postgresql"
  "console|1200|$py bench/console.py"
  "scale|900|$py bench/scale.py --calls 400 --rate 100 --call-seconds 4"
)

{
  echo "run started $(date -u +%FT%TZ) on $(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
} | tee "$out/summary.txt"
for entry in "${runs[@]}"; do
  IFS='|' read -r name limit command <<<"$entry"
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then continue; fi
  started=$(date +%s)
  {
    echo "\$ $command"
    echo "start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$out/$name.txt"
  timeout --kill-after=30 "$limit" $command >>"$out/$name.txt" 2>&1
  rc=$?
  echo "end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) rc $rc" >>"$out/$name.txt"
  printf '%-20s rc %-3s %5d s  %s\n' "$name" "$rc" "$(($(date +%s) - started))" "$(date -u +%TZ)" | tee -a "$out/summary.txt"
done
echo "run ended $(date -u +%FT%TZ)" | tee -a "$out/summary.txt"
