#!/usr/bin/env bash
# `make dev`: the local AWS world (with the sample `reviews` table) plus `dagster dev` on the local
# profile, supervised by `ddb-assets dev` (see ddb_assets/local/dev.py): UI on http://127.0.0.1:3000,
# runs and lake in var/ (shared with `make demo`). Ctrl-C or SIGTERM stops everything; a second
# `make dev` on the same Dagster home, or on a busy port, refuses and names the process in the way.
set -euo pipefail
cd "$(dirname "$0")/.."

# exec: `make` sends its SIGTERM to this process, which must be the supervisor itself.
exec .venv/bin/ddb-assets dev \
  --port "${DAGSTER_PORT:-3000}" \
  --emulator-port "${EMULATOR_PORT:-4566}" \
  --sample-items "${SAMPLE_ITEMS:-3000}"
