#!/bin/bash
# Time the README's first command from a fresh clone of this repository: venv + pip install, then
# `python app.py` until http://127.0.0.1:7860/ answers (fresh TWOTOWERS_CACHE: the demo index is built).
#   bash bench/startup.sh "--no-compile"                  # the README's command
#   bash bench/startup.sh "--no-compile --no-cache-dir"   # as on a machine whose pip has never built hnswlib
set -u
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone" && cd "$work/clone"
export TWOTOWERS_CACHE="$work/cache" HF_HUB_OFFLINE=1
t0=$(date +%s.%N)
python3 -m venv .venv && HNSWLIB_NO_NATIVE=1 .venv/bin/pip install -q ${1:-} -r requirements.txt
t1=$(date +%s.%N)
.venv/bin/python app.py > "$work/app.log" 2>&1 &
pid=$!
until curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7860/ 2>/dev/null | grep -q 200; do
  sleep 0.5
  if ! kill -0 $pid 2>/dev/null; then echo "the app exited:"; tail -5 "$work/app.log"; exit 1; fi
done
t2=$(date +%s.%N)
kill $pid; wait $pid 2>/dev/null
python3 -c "print(f'| pip flags: {\"${1:-}\" or \"(none)\"} | install {$t1-$t0:.1f} s | app to serving {$t2-$t1:.1f} s | total {$t2-$t0:.1f} s |')"
