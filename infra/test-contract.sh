#!/usr/bin/env bash
# The contract subset of the integration suite (tests marked `contract`) on the other two
# emulators, moto and LocalStack (host mode), side by side: `make test` runs the whole suite on
# the default (DynamoDB Local) first, then this. LocalStack is installed into the virtualenv
# first (python -m ripple_local.tools install-localstack); on a machine without its
# prerequisites (Python 3.13, Node.js) its run is skipped with the reason, never silently.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
logs=.local/test-logs
mkdir -p "$logs"

backends=(moto)
$PY -m ripple_local.tools install-localstack
case $? in
  0) backends+=(localstack) ;;
  3) echo "contract: LocalStack cannot be installed on this machine (above); its contract run is skipped" ;;
  *) echo "contract: installing LocalStack failed" >&2; exit 1 ;;
esac

declare -A pids
for backend in "${backends[@]}"; do
  $PY -m pytest tests/integration -m contract --backend "$backend" -q -p no:cacheprovider \
    >"$logs/contract-$backend.log" 2>&1 &
  pids[$backend]=$!
done
status=0
for backend in "${backends[@]}"; do
  if wait "${pids[$backend]}"; then
    echo "contract on $backend: $(tail -n 1 "$logs/contract-$backend.log")"
  else
    status=1
    echo "contract on $backend FAILED (log: $logs/contract-$backend.log):" >&2
    tail -n 60 "$logs/contract-$backend.log" >&2
  fi
done
exit $status
