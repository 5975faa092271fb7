#!/usr/bin/env bash
# Runs Zero's zero-cache as a boardsync benchmark peer (foreground).
#
# Env (required):
#   ZERO_UPSTREAM_DB   postgres URL of a wal_level=logical database
#   PORT               sync port (zero-cache also uses PORT+1 for its
#                      internal change-streamer; keep both free)
#   ZERO_REPLICA_FILE  writable path for zero-cache's SQLite replica
# Env (optional):
#   NODE               node >= 22 binary (default: `node` on PATH, must be 22+)
#   ZERO_NUM_SYNC_WORKERS  view-syncer processes (zero default: nproc-1, min 1)
#   ZERO_LOG_LEVEL     debug|info|warn|error (default here: warn; zero's
#                      own default "info" logs several lines per connection)
#   any other ZERO_* option of zero-cache (see `npx zero-cache --help`)
#
# Ready line: this script prints "zero-cache listening on port PORT" once a
# TCP connect to PORT succeeds (zero-cache opens PORT only after its initial
# sync and all workers are ready). With ZERO_LOG_LEVEL=info zero-cache itself
# also logs "zero-cache ready (<ms> ms)" and "zero-dispatcher listening at
# http://[::]:PORT".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

: "${ZERO_UPSTREAM_DB:?set ZERO_UPSTREAM_DB (postgres URL, wal_level=logical)}"
: "${PORT:?set PORT}"
: "${ZERO_REPLICA_FILE:?set ZERO_REPLICA_FILE (writable sqlite path)}"
NODE="${NODE:-node}"

major="$("$NODE" -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 22 ]; then
  echo "start.sh: $NODE is node $("$NODE" --version); zero-cache needs node >= 22 (set NODE=...)" >&2
  exit 2
fi
if [ ! -d node_modules/@rocicorp/zero ]; then
  echo "start.sh: node_modules missing; run 'npm ci' in $here" >&2
  exit 2
fi
mkdir -p "$(dirname "$ZERO_REPLICA_FILE")"

export ZERO_UPSTREAM_DB ZERO_REPLICA_FILE
export ZERO_PORT="$PORT"
# zero-cache refuses to start in production mode without an admin password
# (it only guards /statz etc.).
export ZERO_ADMIN_PASSWORD="${ZERO_ADMIN_PASSWORD:-bench-admin}"
export ZERO_ENABLE_TELEMETRY="${ZERO_ENABLE_TELEMETRY:-false}"
export DO_NOT_TRACK=1
export ZERO_APP_ID="${ZERO_APP_ID:-zero}"
export ZERO_LOG_LEVEL="${ZERO_LOG_LEVEL:-warn}"
# each sync worker creates two scratch SQLite files (sync-worker-*, mutagen-*)
# that are not removed on exit; keep them next to the replica, not in /tmp.
export ZERO_STORAGE_DB_TMP_DIR="${ZERO_STORAGE_DB_TMP_DIR:-$(dirname "$ZERO_REPLICA_FILE")}"

# 1. table + index (idempotent)
"$NODE" setup-db.mjs
# 2. permissions: anyone may read/insert/update/delete `message`
#    (writes JSON into upstream "zero".permissions; idempotent)
"$NODE" node_modules/@rocicorp/zero/out/zero/src/deploy-permissions.js \
  --schema-path schema.js --upstream-db "$ZERO_UPSTREAM_DB" --app-id "$ZERO_APP_ID"

# 3. announce readiness once the port accepts connections. Double-forked so
#    the watcher is not a child of the exec'd zero-cache (no zombie).
( (
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
      echo "zero-cache listening on port $PORT"
      exit 0
    fi
    sleep 0.2
  done
  echo "start.sh: zero-cache did not open port $PORT within 120 s" >&2
) & )

# 4. zero-cache in the foreground (same PID as this script; SIGTERM/SIGINT
#    shut it down gracefully, its workers follow)
exec "$NODE" node_modules/@rocicorp/zero/out/zero/src/cli.js
