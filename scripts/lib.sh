# Shared set-up for scripts/serve and scripts/test: sourced, not run.
#
# Installs what is missing, starts the services the project needs unless given, and
# stops on exit exactly the servers it started. Everything slow is cached outside the
# clone, keyed by version, so a second run (or a second clone) skips it.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SPACETIMEDB_VERSION="1.2.0"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/boardsync"
STDB_BIN="$CACHE_DIR/spacetimedb-$SPACETIMEDB_VERSION/bin"
# Everything a run keeps (clusters, keys, modules); BOARDSYNC_DATA_DIR moves it.
DATA_DIR="${BOARDSYNC_DATA_DIR:-$ROOT/.data}"
MODULES_OUT="$DATA_DIR/modules"
# One target folder for every clone on this machine: the host build and the modules.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE_DIR/target}"
WASM_TARGET_DIR="$CACHE_DIR/wasm-target"
CARGO_JOBS="${CARGO_JOBS:-2}"

STARTED_PG_DATA=""
STARTED_PIDS=()
# Files this run owns and removes when it exits (scripts/serve's pid file).
OWNED_FILES=()

log() { printf '\033[1m[boardsync]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

cleanup() {
  local status=$? i pid
  # Newest first: the server goes before the services it uses.
  for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${STARTED_PIDS[i]}
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ ${#OWNED_FILES[@]} -gt 0 ]; then rm -f "${OWNED_FILES[@]}"; fi
  if [ -n "$STARTED_PG_DATA" ]; then
    log "stopping the local PostgreSQL"
    pg_as_owner "$PG_BIN/pg_ctl" -D "$STARTED_PG_DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A TCP port nobody listens on, from a range away from the usual services and below
# the kernel's ephemeral ports: a port some outgoing connection holds (or held, in
# TIME_WAIT) answers no connect, yet cannot be listened on.
free_port() {
  local port low=32768 high=60999 from=10000 to
  [ -r /proc/sys/net/ipv4/ip_local_port_range ] && read -r low high </proc/sys/net/ipv4/ip_local_port_range
  to=$low
  # An ephemeral range that starts low: above it instead.
  if [ "$low" -le 12000 ]; then from=$((high + 1)) to=65535; fi
  [ "$to" -gt "$((from + 100))" ] || { from=20000 to=40000; }
  for _ in $(seq 1 100); do
    port=$((from + RANDOM % (to - from)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  die "no free port found"
}

# "pid start-time": names one process, even after its pid is reused.
process_stamp() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  # Field 22 (start time), counted after the parenthesised command name.
  echo "$1 $(awk '{ print $20 }' <<<"${stat##*) }")"
}

# One scripts/serve per data folder: a second would share the first one's clusters
# and logs. Fails at once, naming the first, and touches nothing of it. The pid file
# names the process with its start time, so a reused pid is no false alarm; it is
# created exclusively, so two starting together cannot both pass. Removed on exit.
claim_serve_lock() {
  local pid_file="$DATA_DIR/serve.pid" first first_start attempt
  mkdir -p "$DATA_DIR"
  for attempt in 1 2; do
    if (set -o noclobber; process_stamp $$ >"$pid_file") 2>/dev/null; then
      OWNED_FILES+=("$pid_file")
      return
    fi
    read -r first first_start <"$pid_file" 2>/dev/null || true
    if [ -n "${first:-}" ] && [ "$(process_stamp "$first" 2>/dev/null)" = "$first $first_start" ]; then
      die "another scripts/serve (pid $first) is running from $DATA_DIR; stop it first, or give this one its own BOARDSYNC_DATA_DIR"
    fi
    # Left by a run that did not exit cleanly (kill -9): take it over.
    rm -f "$pid_file"
  done
  die "cannot create $pid_file"
}

wait_for() { # description, seconds, command...
  local what=$1 seconds=$2; shift 2
  for _ in $(seq 1 $((seconds * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "$what did not come up within ${seconds}s"
}

ensure_packages() {
  local missing=()
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v cc >/dev/null || missing+=(build-essential)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v pg_isready >/dev/null || missing+=(postgresql-client)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs)"
}

ensure_spacetimedb_tools() {
  if [ -x "$STDB_BIN/spacetimedb-standalone" ] && [ -x "$STDB_BIN/spacetimedb-cli" ]; then return; fi
  log "installing SpacetimeDB $SPACETIMEDB_VERSION into $STDB_BIN (first time only, about 21 minutes on 2 cores)"
  mkdir -p "$STDB_BIN"
  local crate
  for crate in spacetimedb-standalone spacetimedb-cli; do
    [ -x "$STDB_BIN/$crate" ] && continue
    # --locked: without it the sub-crates resolve to 1.12.x and do not compile.
    CARGO_TARGET_DIR="$CACHE_DIR/install-target" cargo install "$crate" --version "$SPACETIMEDB_VERSION" \
      --locked --root "$(dirname "$STDB_BIN")" -j "$CARGO_JOBS" --quiet
  done
  rm -rf "$CACHE_DIR/install-target"
}

# --- PostgreSQL ------------------------------------------------------------------

PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"

# initdb refuses to run as root: as root, the cluster belongs to the postgres user.
pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Uses DATABASE_URL when it answers; otherwise starts a cluster of its own on a free
# port and points DATABASE_URL at it. Exports DATABASE_URL either way.
# `durable` (scripts/serve): .data/postgres with fsync on, as PostgreSQL is the
# source of truth. `fast` (tests, benchmarks): .data/postgres-fast with fsync off.
ensure_postgres() {
  local database=$1 mode=${2:-durable}
  if [ -n "${DATABASE_URL:-}" ]; then
    if pg_isready -q -t 3 -d "$DATABASE_URL"; then
      log "using PostgreSQL at DATABASE_URL"
      if ! psql -q -d "$DATABASE_URL" -tAc "SELECT 1" >/dev/null 2>&1; then
        # The server answers but the database may not exist yet: create it.
        local name="${DATABASE_URL##*/}"
        name="${name%%\?*}"
        log "creating database $name at DATABASE_URL"
        psql -q -d "${DATABASE_URL%/*}/postgres" -c "CREATE DATABASE \"$name\"" >/dev/null \
          || die "DATABASE_URL answers, but database $name neither opens nor can be created there"
      fi
      return
    fi
    log "DATABASE_URL does not answer: starting a local PostgreSQL instead"
  fi
  [ -n "$PG_BIN" ] || die "PostgreSQL server binaries not found"
  local pgdata="$DATA_DIR/postgres" socket_dir="$DATA_DIR/postgres-socket" port fsync=on connections=300
  if [ "$mode" = fast ]; then
    # The test suite's apps keep running until its process ends, each with its pool
    # and, on the cache adapter, a drainer lease connection per domain.
    pgdata="$DATA_DIR/postgres-fast" socket_dir="$DATA_DIR/postgres-fast-socket" fsync=off connections=1000
  fi
  mkdir -p "$DATA_DIR"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    log "initialising a PostgreSQL cluster in $pgdata"
    mkdir -p "$pgdata"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$pgdata"; fi
    pg_as_owner "$PG_BIN/initdb" -D "$pgdata" -A trust -U postgres -E UTF8 >/dev/null
  fi
  mkdir -p "$socket_dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$socket_dir"; fi
  if pg_as_owner "$PG_BIN/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    port=$(sed -n 4p "$pgdata/postmaster.pid")
    log "reusing the local PostgreSQL already running on port $port"
  else
    port=$(free_port)
    log "starting PostgreSQL on 127.0.0.1:$port"
    pg_as_owner "$PG_BIN/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
      -o "-p $port -k $socket_dir -c listen_addresses=127.0.0.1 -c fsync=$fsync -c max_connections=$connections" start >/dev/null
    STARTED_PG_DATA="$pgdata"
  fi
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/$database"
  if ! psql -q -d "postgres://postgres@127.0.0.1:$port/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
    psql -q -d "postgres://postgres@127.0.0.1:$port/postgres" -c "CREATE DATABASE \"$database\"" >/dev/null
  fi
}

# --- SpacetimeDB -----------------------------------------------------------------

# Starts a SpacetimeDB standalone server on loopback with its own key pair and data
# folder (name under .data), exports SPACETIMEDB_URL, and makes (once) the backend's
# identity, whose token is exported as SPACETIMEDB_TOKEN. "memory" as the second
# argument keeps the data in memory.
start_spacetimedb() {
  local name=$1 mode=${2:-disk}
  local dir="$DATA_DIR/$name" port
  mkdir -p "$dir/keys"
  if [ ! -f "$dir/keys/id_ecdsa.pub" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/keys/id_ecdsa" 2>/dev/null
    openssl ec -in "$dir/keys/id_ecdsa" -pubout -out "$dir/keys/id_ecdsa.pub" 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in "$dir/keys/id_ecdsa" -out "$dir/keys/id_ecdsa.p8"
  fi
  port=$(free_port)
  local args=(start --data-dir "$dir/data" --listen-addr "127.0.0.1:$port"
    --jwt-pub-key-path "$dir/keys/id_ecdsa.pub" --jwt-priv-key-path "$dir/keys/id_ecdsa.p8")
  [ "$mode" = memory ] && args+=(--in-memory)
  log "starting SpacetimeDB ($name) on 127.0.0.1:$port"
  "$STDB_BIN/spacetimedb-standalone" "${args[@]}" >"$dir/server.log" 2>&1 &
  STARTED_PIDS+=($!)
  export SPACETIMEDB_URL="http://127.0.0.1:$port"
  wait_for "SpacetimeDB" 60 curl -sf "$SPACETIMEDB_URL/v1/ping"
  if [ ! -s "$dir/backend-token" ]; then
    curl -sf -X POST "$SPACETIMEDB_URL/v1/identity" | sed -n 's/.*"token" *: *"\([^"]*\)".*/\1/p' >"$dir/backend-token"
    [ -s "$dir/backend-token" ] || die "could not create the backend's SpacetimeDB identity"
  fi
  SPACETIMEDB_TOKEN="$(cat "$dir/backend-token")"
  export SPACETIMEDB_TOKEN
}

# Builds every module in modules/ to wasm and copies it to .data/modules/<domain>.wasm.
# First choice: the rustup wasm target. Fallback (when rustup cannot fetch it, or with
# BOARDSYNC_WASM_TOOLCHAIN=debian): Debian's rustc-web, which can build std for wasm32
# from source (see shared/spacetimedb-1.2.md).
build_modules() {
  mkdir -p "$MODULES_OUT"
  # BOARDSYNC_WASM_TOOLCHAIN=rustup|debian forces one; by default rustup when it can.
  local use_rustup=1
  if [ "${BOARDSYNC_WASM_TOOLCHAIN:-auto}" = debian ]; then
    use_rustup=0
  elif ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    log "adding the rustup wasm32 target"
    rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || use_rustup=0
  fi
  if [ "$use_rustup" -eq 0 ]; then
    log "building modules with Debian's rustc-web toolchain (rustup's wasm32 target is unavailable or not wanted)"
    if [ ! -x /usr/bin/rustc ] || [ ! -x /usr/bin/cargo ] || ! command -v wasm-ld >/dev/null; then
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web cargo-web rust-web-src lld >/dev/null
    fi
  fi
  MODULES_TOOLCHAIN=$([ "$use_rustup" -eq 1 ] && echo rustup || echo debian)
  local manifest domain crate
  for manifest in "$ROOT"/modules/*/Cargo.toml; do
    domain=$(basename "$(dirname "$manifest")")
    crate="boardsync_${domain}_module"
    log "building module $domain"
    if [ "$use_rustup" -eq 1 ]; then
      CARGO_TARGET_DIR="$WASM_TARGET_DIR" cargo build --quiet --release --locked -j "$CARGO_JOBS" \
        --manifest-path "$manifest" --target wasm32-unknown-unknown
      cp "$WASM_TARGET_DIR/wasm32-unknown-unknown/release/$crate.wasm" "$MODULES_OUT/$domain.wasm"
    else
      CARGO_TARGET_DIR="$WASM_TARGET_DIR-debian" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
        CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld \
        /usr/bin/cargo build --quiet --release --locked -j "$CARGO_JOBS" --manifest-path "$manifest" \
        --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
      cp "$WASM_TARGET_DIR-debian/wasm32-unknown-unknown/release/$crate.wasm" "$MODULES_OUT/$domain.wasm"
    fi
  done
  export BOARDSYNC_MODULES_DIR="$MODULES_OUT"
}

# How many entries the outbox of database $1 holds (empty when it cannot tell), read
# through SpacetimeDB's SQL endpoint, which needs no bindings of the module's schema.
outbox_pending() {
  curl -s -X POST -H "Authorization: Bearer $SPACETIMEDB_TOKEN" --data "SELECT * FROM sync_outbox" \
    "$SPACETIMEDB_URL/v1/database/$1/sql" \
    | python3 -c 'import json, sys; print(sum(len(t.get("rows", [])) for t in json.load(sys.stdin)))' 2>/dev/null
}

# Publishes each built module as "<prefix>-<domain>" with the backend's token, so the
# backend is the owner. Skips a module whose wasm has not changed since it was last
# published to this server. A schema change the server cannot migrate clears the
# cache database; PostgreSQL stays the truth and warm-up refills it.
publish_modules() {
  local prefix=$1 state_dir=$2 wasm domain name digest stamp status pending
  for wasm in "$MODULES_OUT"/*.wasm; do
    domain=$(basename "$wasm" .wasm)
    name="$prefix-$domain"
    digest=$(sha256sum "$wasm" | cut -d' ' -f1)
    stamp="$state_dir/published-$name"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] \
      && curl -sf "$SPACETIMEDB_URL/v1/database/$name" >/dev/null; then
      continue
    fi
    log "publishing module $domain as $name"
    status=$(curl -s -o "$state_dir/publish.out" -w '%{http_code}' -X PUT \
      -H "Authorization: Bearer $SPACETIMEDB_TOKEN" --data-binary "@$wasm" "$SPACETIMEDB_URL/v1/database/$name")
    if [ "$status" = 400 ]; then
      # A schema change the server cannot migrate: the cache database must be cleared,
      # and its outbox may hold writes PostgreSQL does not have yet. Drain it first,
      # with the boardsync that published it (the new one cannot read the old rows).
      pending=$(outbox_pending "$name")
      if [ "$pending" != 0 ] && [ -x "$state_dir/boardsync-published" ]; then
        log "the schema change needs a fresh cache: draining $name's outbox ($pending writes) into PostgreSQL first"
        BOARDSYNC__SPACETIMEDB__TOKEN="$SPACETIMEDB_TOKEN" BOARDSYNC__SPACETIMEDB__DATABASE_PREFIX="$prefix" \
          "$state_dir/boardsync-published" outbox drain --domain "$domain" \
          || die "cannot drain $name's outbox (is PostgreSQL up?): not clearing it"
        pending=$(outbox_pending "$name")
      fi
      [ "$pending" = 0 ] || die "$name's schema changed and its outbox holds ${pending:-an unknown number of} writes \
not yet in PostgreSQL: run 'boardsync outbox drain' with the boardsync that published it, then run this again"
      log "the schema change needs a fresh cache: clearing $name (its outbox is empty; PostgreSQL keeps the data)"
      status=$(curl -s -o "$state_dir/publish.out" -w '%{http_code}' -X PUT \
        -H "Authorization: Bearer $SPACETIMEDB_TOKEN" --data-binary "@$wasm" "$SPACETIMEDB_URL/v1/database/$name?clear=true")
    fi
    [ "${status:0:1}" = 2 ] || die "publishing $name failed ($status): $(cat "$state_dir/publish.out")"
    echo "$digest" >"$stamp"
  done
}

# Deletes the cache databases publish_modules made under `prefix` (one per module).
delete_modules() {
  local prefix=$1 wasm
  for wasm in "$MODULES_OUT"/*.wasm; do
    curl -s -o /dev/null -X DELETE -H "Authorization: Bearer $SPACETIMEDB_TOKEN" \
      "$SPACETIMEDB_URL/v1/database/$prefix-$(basename "$wasm" .wasm)" || true
  done
}

# Regenerates each module's client bindings into domains/<domain>/src/module_bindings,
# or with "check" fails when the committed ones differ from what the module generates.
generate_bindings() {
  local mode=${1:-write} wasm domain target out stale=0
  for wasm in "$MODULES_OUT"/*.wasm; do
    domain=$(basename "$wasm" .wasm)
    target="$ROOT/domains/$domain/src/module_bindings"
    out=$(mktemp -d)
    "$STDB_BIN/spacetimedb-cli" generate --lang rust --out-dir "$out" --bin-path "$wasm" -y >/dev/null
    if [ "$mode" = check ]; then
      if ! diff -r -q "$out" "$target" >/dev/null 2>&1; then
        log "stale bindings for $domain: run scripts/generate-bindings and commit the result"
        diff -r "$out" "$target" | head -n 40 >&2 || true
        stale=1
      fi
    else
      rm -rf "$target"
      mkdir -p "$(dirname "$target")"
      cp -r "$out" "$target"
      log "bindings for $domain written to ${target#"$ROOT"/}"
    fi
    rm -rf "$out"
  done
  [ "$stale" -eq 0 ] || die "client bindings are stale"
}

# --- API fuzzing -----------------------------------------------------------------

SCHEMATHESIS_VERSION="4.32.5"

# Schemathesis (from PyPI) in a venv of its own under the cache, keyed by version.
ensure_schemathesis() {
  local venv="$CACHE_DIR/schemathesis-$SCHEMATHESIS_VERSION"
  if [ ! -x "$venv/bin/schemathesis" ]; then
    log "installing Schemathesis $SCHEMATHESIS_VERSION (first time only)"
    rm -rf "$venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION" \
      || die "cannot install Schemathesis from PyPI"
  fi
  SCHEMATHESIS="$venv/bin/schemathesis"
}

# Starts a boardsync of its own on `adapter` (postgres or spacetimedb) from
# $CARGO_TARGET_DIR/debug/boardsync, with a fresh database (and fresh cache
# databases), on local settings (the local login on, the default per-user limits),
# serving the built web apps, with extra `VAR=value` settings after the adapter;
# sets TEST_SERVER_URL, TEST_SERVER_DIR (its log and secret), TEST_SERVER_ENV (to run
# the command line against it) and TEST_SERVER_DATABASE. Needs DATABASE_URL, and
# for spacetimedb SPACETIMEDB_URL and SPACETIMEDB_TOKEN. Call it in a subshell whose
# EXIT trap runs cleanup, after resetting STARTED_PIDS, STARTED_PG_DATA and
# OWNED_FILES, so that only what it started is stopped.
start_test_server() {
  local adapter=$1 bin="$CARGO_TARGET_DIR/debug/boardsync"
  shift
  prepare_test_server "$adapter" "$@"
  env "${TEST_SERVER_ENV[@]}" "$bin" serve >"$TEST_SERVER_DIR/server.log" 2>&1 &
  TEST_SERVER_PID=$!
  STARTED_PIDS+=("$TEST_SERVER_PID")
  wait_for "boardsync on $adapter" 60 curl -sf "$TEST_SERVER_URL/health"
}

# What start_test_server does short of starting the server (for a caller that starts
# and restarts it itself): a fresh database and cache databases, a port, and
# TEST_SERVER_ENV, TEST_SERVER_DIR, TEST_SERVER_URL, TEST_SERVER_DATABASE. Extra
# `VAR=value` arguments come after the defaults, so they win.
prepare_test_server() {
  local adapter=$1 port
  shift
  TEST_SERVER_DIR=$(mktemp -d)
  port=$(free_port)
  TEST_SERVER_DATABASE="boardsync_${adapter}_$$_$RANDOM"
  psql -q -d "${DATABASE_URL%/*}/postgres" -c "CREATE DATABASE $TEST_SERVER_DATABASE" >/dev/null
  TEST_SERVER_ENV=(BOARDSYNC_ENV=local "DATABASE_URL=${DATABASE_URL%/*}/$TEST_SERVER_DATABASE"
    "BOARDSYNC__SERVER__PORT=$port" "BOARDSYNC__AUTH__SECRET_FILE=$TEST_SERVER_DIR/jwt-secret"
    "BOARDSYNC__WEB__DIR=$ROOT/web/dist")
  if [ "$adapter" = spacetimedb ]; then
    local prefix="t$$-$RANDOM"
    publish_modules "$prefix" "$TEST_SERVER_DIR" >&2
    TEST_SERVER_ENV+=("SPACETIMEDB_URL=$SPACETIMEDB_URL" "BOARDSYNC__SPACETIMEDB__TOKEN=$SPACETIMEDB_TOKEN"
      "BOARDSYNC__SPACETIMEDB__DATABASE_PREFIX=$prefix")
  else
    TEST_SERVER_ENV+=("SPACETIMEDB_URL=")
  fi
  TEST_SERVER_ENV+=("$@")
  TEST_SERVER_URL="http://127.0.0.1:$port"
}

# Stops the server start_test_server started and drops what it made.
drop_test_server() {
  if [ -n "${TEST_SERVER_PID:-}" ]; then kill "$TEST_SERVER_PID" 2>/dev/null && wait "$TEST_SERVER_PID" 2>/dev/null || true; fi
  psql -q -d "${DATABASE_URL%/*}/postgres" -c "DROP DATABASE IF EXISTS $TEST_SERVER_DATABASE WITH (FORCE)" \
    >/dev/null || true
  rm -rf "$TEST_SERVER_DIR"
}

# Runs Schemathesis against a boardsync of its own on `adapter`, at most `examples`
# cases per operation: once as an admin, so that every route is reached, and once as
# an editor of the scopes, so that what members may not do is answered as
# documented. The rate limit is off (its 429s would crowd out everything else), and
# deleting the scopes the run writes to is left out. Fails on any server error or
# any response the API document does not describe. Run it in a subshell.
fuzz_api() {
  local adapter=$1 examples=$2 seed=${3:-1}
  local bin="$CARGO_TARGET_DIR/debug/boardsync" admin editor domain status who token url dir
  # Only what this subshell starts is stopped when it exits, not the caller's servers.
  STARTED_PIDS=() STARTED_PG_DATA="" OWNED_FILES=()
  trap cleanup EXIT
  start_test_server "$adapter" BOARDSYNC__LIMITS__COMMANDS_PER_SEC=0
  url=$TEST_SERVER_URL dir=$TEST_SERVER_DIR
  admin=$(env "${TEST_SERVER_ENV[@]}" "$bin" token --user fuzzer --admin)
  editor=$(env "${TEST_SERVER_ENV[@]}" "$bin" token --user fuzzer-editor)
  # A scope per domain for the document's example (`general`), the editor a member.
  for domain in $(curl -sf "$url/api/openapi.json" | python3 -c \
    'import json,sys; print(" ".join(p.split("/")[2] for p in json.load(sys.stdin)["paths"] if p.count("/") == 2 and p.startswith("/api/") and "openapi" not in p))'); do
    status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $admin" \
      -H 'Content-Type: application/json' -d '{"name":"General"}' "$url/api/admin/scopes/$domain/general")
    [ "$status" = 200 ] || die "cannot create $domain/general for the fuzzer ($status)"
    status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $admin" \
      -H 'Content-Type: application/json' -d '{"role":"editor"}' "$url/api/$domain/general/members/fuzzer-editor")
    [ "$status" = 200 ] || die "cannot make the fuzzer an editor of $domain/general ($status)"
  done
  for who in admin editor; do
    token=$admin
    [ "$who" = editor ] && token=$editor
    log "Schemathesis against the $adapter adapter as an $who: at most $examples cases per operation"
    # From its folder: Schemathesis keeps a cache (.schemathesis) where it runs.
    if ! (cd "$dir" && "$SCHEMATHESIS" --no-color run "$url/api/openapi.json" --header "Authorization: Bearer $token" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
      --max-examples "$examples" --seed "$seed" --workers 1 --phases examples,coverage,fuzzing \
      --exclude-operation-id-regex '^delete_[a-z]+_scope$' \
      --suppress-health-check all --request-timeout 30 --report junit --report-dir "$dir/report-$who"); then
      log "the server's log: $dir/server.log (last lines below)"
      tail -n 30 "$dir/server.log" >&2
      die "Schemathesis found responses the API document does not allow ($adapter adapter, as an $who)"
    fi
  done
  drop_test_server
}

# --- The TypeScript client ----------------------------------------------------------

# Node.js 20.19 or newer (Vite's floor). When the machine's is missing or older
# (Debian's `nodejs` is 18), npm's `node-linux-<arch>` package brings a newer one
# into the cache, from the npm registry like everything else the front end needs.
NODE_VERSION="22.12.0"
ensure_node() {
  if [ -z "${BOARDSYNC_NODE_FROM_NPM:-}" ] && command -v node >/dev/null && node -e '
    const [major, minor] = process.versions.node.split(".").map(Number);
    process.exit(major > 20 || (major === 20 && minor >= 19) ? 0 : 1)'; then
    return
  fi
  local arch dir
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64) arch=arm64 ;;
    *) die "no Node.js package for $(uname -m): install Node.js 20.19 or newer" ;;
  esac
  dir="$CACHE_DIR/node-$NODE_VERSION-$arch"
  if [ ! -x "$dir/node_modules/node-linux-$arch/bin/node" ]; then
    if ! command -v npm >/dev/null; then
      log "installing Debian packages: nodejs npm (to fetch a newer Node.js)"
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
    log "installing Node.js $NODE_VERSION from the npm registry into the cache (first time only)"
    rm -rf "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --silent "node-linux-$arch@$NODE_VERSION" \
      || die "cannot install node-linux-$arch@$NODE_VERSION from npm"
  fi
  export PATH="$dir/node_modules/node-linux-$arch/bin:$PATH"
}

# Regenerates clients/typescript/openapi.json (from `boardsync openapi`, the server's
# own types) and the TypeScript types made from it, then type-checks the package;
# with "check", fails when the committed ones differ instead. Needs the debug build.
generate_client() {
  local mode=${1:-write} dir="$ROOT/clients/typescript" tmp
  ensure_node
  (cd "$dir" && npm ci --no-audit --no-fund --silent) || die "npm ci failed in clients/typescript"
  tmp=$(mktemp -d)
  (cd "$ROOT" && env -u DATABASE_URL -u SPACETIMEDB_URL BOARDSYNC_ENV=test \
    "$CARGO_TARGET_DIR/debug/boardsync" openapi >"$tmp/openapi.json") || die "boardsync openapi failed"
  (cd "$dir" && npx --no-install openapi-typescript "$tmp/openapi.json" --output "$tmp/api.ts" >/dev/null 2>&1) \
    || die "openapi-typescript failed"
  if [ "$mode" = check ]; then
    if ! cmp -s "$tmp/openapi.json" "$dir/openapi.json" || ! cmp -s "$tmp/api.ts" "$dir/src/generated/api.ts"; then
      rm -rf "$tmp"
      die "the TypeScript client's generated types are stale: run scripts/generate-client and commit them"
    fi
  else
    cp "$tmp/openapi.json" "$dir/openapi.json"
    mkdir -p "$dir/src/generated"
    cp "$tmp/api.ts" "$dir/src/generated/api.ts"
  fi
  rm -rf "$tmp"
  (cd "$dir" && npx --no-install tsc -p . --noEmit) || die "the TypeScript client does not type-check"
}

# --- The web apps --------------------------------------------------------------------

# Builds the demo apps and the admin console into web/dist (served under /app/),
# unless what is there was built from the same sources.
build_web() {
  local dir="$ROOT/web" stamp
  ensure_node
  stamp=$(cd "$ROOT" && find web/src web/public web/*.html web/*.ts web/*.js web/package-lock.json \
    clients/typescript/src -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  if [ -f "$dir/dist/.built-from" ] && [ "$(cat "$dir/dist/.built-from")" = "$stamp" ]; then
    return
  fi
  log "building the web apps into web/dist"
  (cd "$dir" && npm ci --no-audit --no-fund --silent && npx --no-install vite build --logLevel warn) \
    || die "the web apps do not build"
  echo "$stamp" >"$dir/dist/.built-from"
}

# Chromium for the browser tests, from Debian (Playwright drives it; its own browser
# download cannot work here).
ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    log "installing Debian packages: chromium"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
}

# The client package's tests and the browser tests, against a boardsync of its own on
# `adapter`. Screenshots go to $BOARDSYNC_SCREENSHOTS (default .data/screenshots).
# Run it in a subshell.
test_web() {
  local adapter=$1
  STARTED_PIDS=() STARTED_PG_DATA="" OWNED_FILES=()
  trap cleanup EXIT
  start_test_server "$adapter"
  log "the TypeScript client's tests against the $adapter adapter"
  if ! (cd "$ROOT/clients/typescript" && BOARDSYNC_URL="$TEST_SERVER_URL" npm test --silent); then
    tail -n 30 "$TEST_SERVER_DIR/server.log" >&2
    die "the TypeScript client's tests failed ($adapter adapter)"
  fi
  log "browser tests (Chromium) against the $adapter adapter"
  local shots="${BOARDSYNC_SCREENSHOTS:-$DATA_DIR/screenshots}/$adapter"
  mkdir -p "$shots"
  if ! (cd "$ROOT/web" && BOARDSYNC_URL="$TEST_SERVER_URL" BOARDSYNC_SCREENSHOTS="$shots" \
    node --test --test-concurrency=1 tests/); then
    tail -n 30 "$TEST_SERVER_DIR/server.log" >&2
    die "the browser tests failed ($adapter adapter)"
  fi
  log "screenshots: $shots"
  drop_test_server
}
