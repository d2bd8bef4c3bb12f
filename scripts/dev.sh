#!/usr/bin/env bash
# `make dev`: the local AWS world (with the sample `reviews` table) plus `dagster dev` on the local
# profile. UI on http://127.0.0.1:3000. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

EMULATOR_PORT="${EMULATOR_PORT:-4566}"
DAGSTER_PORT="${DAGSTER_PORT:-3000}"
SAMPLE_ITEMS="${SAMPLE_ITEMS:-3000}"

export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/var/dagster}"
mkdir -p "$DAGSTER_HOME"
touch "$DAGSTER_HOME/dagster.yaml"
export DDB_ASSETS_ENDPOINT_URL="http://127.0.0.1:${EMULATOR_PORT}"
export DDB_ASSETS_LAKE_ROOT="${DDB_ASSETS_LAKE_ROOT:-$PWD/var/lake}"

.venv/bin/ddb-assets emulator --port "$EMULATOR_PORT" --sample-items "$SAMPLE_ITEMS" &
emulator=$!
trap 'kill "$emulator" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 120); do
  if .venv/bin/python -c "import socket,sys; socket.create_connection(('127.0.0.1', $EMULATOR_PORT), 1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$emulator" 2>/dev/null; then echo "the local AWS world did not start" >&2; exit 1; fi
  sleep 0.5
done

echo "local AWS world: $DDB_ASSETS_ENDPOINT_URL   Dagster UI: http://127.0.0.1:${DAGSTER_PORT}"
echo "start an export from another shell:  AWS_ENDPOINT_URL=$DDB_ASSETS_ENDPOINT_URL AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing .venv/bin/ddb-assets export reviews"
.venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "$DAGSTER_PORT"
