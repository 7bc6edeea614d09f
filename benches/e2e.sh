#!/usr/bin/env bash
# keygate's end-to-end benchmark: direct vs keygate (intercepting a secret host, and
# tunnelling an allowed host) vs a bare Rust MITM (benches/peer: hudsucker swapping the
# key, nothing else) vs mitmdump, all on 127.0.0.1 against one local HTTPS upstream, with
# a third-party load generator (oha; hey for a smoke run on a machine without oha). See
# docs/PERFORMANCE.md.
#
#   benches/e2e.sh            full run (about ten minutes, release build); the table
#   benches/e2e.sh --smoke    seconds: a tiny run of every scenario (debug build); exits
#                             non-zero when any scenario fails
#   benches/e2e.sh --profile  perf profile of keygate under the c=32 intercepted load
#                             (the release build with line tables: cargo --profile profiling)
#   benches/e2e.sh --memory   keygate's RSS figures only (idle, per idle connection)
#   benches/e2e.sh --metrics-cost
#                             what /metrics costs (issue 16): two keygates side by side,
#                             admin.metrics on and off, c=32 keep-alive small requests
#                             through each in alternating order, E2E_ROUNDS (5) rounds of
#                             E2E_DURATION (4s); keygate's CPU per request and req/s
#                             (release build; hey unless oha is installed)
#   benches/e2e.sh --install  only install what the chosen mode needs (CI runs this while
#                             the machine's proxy settings still apply, pip may need them)
#
# Installs what it needs, once and idempotently: python3, curl, hey (apt-get, when
# missing), oha (cargo install into benches/.tools: minutes, so a smoke run uses hey
# unless oha is already there), mitmproxy (pip into benches/.venv). The hudsucker peer is
# built with cargo (benches/peer, its own Cargo.lock and target dir) for the full and
# smoke runs.
# Environment: E2E_DURATION per load run (full: 5s; --metrics-cost: 4s), E2E_ROUNDS
# (full: 3; --metrics-cost: 5), E2E_LOADGEN=oha|hey, E2E_RELEASE=1 (release build for
# --smoke too), E2E_UPSTREAM_THREADS (1), E2E_KEYGATE_WORKERS (the tokio worker threads
# of keygate and of the hudsucker peer, given to them alone as TOKIO_WORKER_THREADS;
# default: one per core), E2E_OUT (the table; default target/e2e/latest.md),
# MITMPROXY_SPEC (pip requirement for mitmproxy), E2E_PROFILE_LOAD=small|down|up (the
# load --profile samples: c=32 small requests, or 1 MiB responses or uploads).
set -euo pipefail

MODE=full
case "${1:-}" in
  "") ;;
  --smoke) MODE=smoke ;;
  --profile) MODE=profile ;;
  --install) MODE=install ;;
  --memory) MODE=memory ;;
  --metrics-cost) MODE=metrics ;;
  -h | --help)
    sed -n '2,34p' "$0"
    exit 0
    ;;
  *)
    echo "usage: $0 [--smoke | --profile | --memory | --metrics-cost | --install]" >&2
    exit 2
    ;;
esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/benches"
OHA_VERSION=1.16.0
OHA="$BENCH/.tools/bin/oha"
VENV="$BENCH/.venv"
MITMPROXY_SPEC="${MITMPROXY_SPEC:-mitmproxy>=11,<13}"
UPSTREAM_THREADS="${E2E_UPSTREAM_THREADS:-1}"
OUT="${E2E_OUT:-$ROOT/target/e2e/$([ "$MODE" = smoke ] && echo smoke || echo latest).md}"
# E2E_SCENARIOS: a subset, in this order (e.g. "intercept hudsucker" for a quick A/B);
# E2E_UPSTREAM_H2=1: the upstream offers h2 as well as http/1.1 (ALPN).
read -ra SCENARIOS <<<"${E2E_SCENARIOS:-direct intercept tunnel hudsucker mitmdump}"

oha_installed() { [ -x "$OHA" ] && "$OHA" --version 2>/dev/null | grep -qF "$OHA_VERSION"; }
LOADGEN="${E2E_LOADGEN:-}"
if [ -z "$LOADGEN" ]; then
  if [ "$MODE" = full ] || [ "$MODE" = profile ] || [ "$MODE" = memory ] || oha_installed; then LOADGEN=oha; else LOADGEN=hey; fi
fi
case "$LOADGEN" in
  oha | hey) ;;
  *)
    echo "E2E_LOADGEN must be oha or hey" >&2
    exit 2
    ;;
esac

if [ "$MODE" = full ]; then
  RELEASE=1 ROUNDS="${E2E_ROUNDS:-3}" DURATION="${E2E_DURATION:-5s}"
  SSE_N=200 SSE_HOLD_MS=20 IDLE_N=1000 WARMUP_N=500
elif [ "$MODE" = profile ]; then
  RELEASE=1 ROUNDS=1 DURATION="${E2E_DURATION:-10s}" WARMUP_N=500
elif [ "$MODE" = memory ]; then
  RELEASE=1 IDLE_N=1000
elif [ "$MODE" = metrics ]; then
  RELEASE=1 ROUNDS="${E2E_ROUNDS:-5}" DURATION="${E2E_DURATION:-4s}" WARMUP_N=500
else
  RELEASE="${E2E_RELEASE:-0}" ROUNDS=1 DURATION=""
  SSE_N=3 SSE_HOLD_MS=5 IDLE_N=20 WARMUP_N=4
fi

# Only loopback traffic: no proxy variable of the machine may redirect a client (the
# installs of --install keep them: pip and apt may need them).
[ "$MODE" = install ] || unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy NO_PROXY no_proxy

log() { printf 'e2e [%3ds]: %s\n' "$SECONDS" "$*" >&2; }
die() {
  log "FAILED: $*"
  exit 1
}

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

apt_install() {
  log "installing $* (apt-get)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_tools() {
  local missing=()
  command -v python3 >/dev/null || missing+=(python3)
  command -v curl >/dev/null || missing+=(curl ca-certificates)
  if [ "$LOADGEN" = hey ] && ! command -v hey >/dev/null; then missing+=(hey); fi
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
  if [ "$LOADGEN" = oha ] && ! oha_installed; then
    log "installing oha $OHA_VERSION into benches/.tools (cargo install, once)"
    cargo install --quiet --locked --root "$BENCH/.tools" --version "$OHA_VERSION" oha
  fi
  # --metrics-cost runs keygate alone: no mitmdump.
  if [ "$MODE" != metrics ] && [ ! -x "$VENV/bin/mitmdump" ]; then
    log "installing $MITMPROXY_SPEC into benches/.venv (pip, once)"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
      rm -rf "$VENV"
      apt_install python3-venv
      python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MITMPROXY_SPEC"
  fi
}

# Sets KEYGATE and HELPER to the freshly built binaries.
build() {
  local flags=(--bin keygate --bench e2e --message-format=json-render-diagnostics)
  # --profile: the release build with line tables (Cargo.toml's [profile.profiling]),
  # so that perf can name inlined frames.
  if [ "$MODE" = profile ]; then
    flags+=(--profile profiling)
  elif [ "$RELEASE" = 1 ]; then
    flags+=(--release)
  fi
  log "building keygate and the e2e helper (cargo build ${flags[*]})"
  local artifacts
  artifacts="$(cd "$ROOT" && cargo build --quiet "${flags[@]}" | python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
        print(msg["target"]["name"], msg["executable"])')"
  KEYGATE="$(awk '$1 == "keygate" { print $2 }' <<<"$artifacts")"
  HELPER="$(awk '$1 == "e2e" { print $2 }' <<<"$artifacts")"
  if [ ! -x "$KEYGATE" ] || [ ! -x "$HELPER" ]; then
    die "cargo build did not report both binaries"
  fi
}

# Sets PEER to the freshly built hudsucker peer (benches/peer, not in keygate's workspace).
build_peer() {
  local flags=(--locked --manifest-path "$BENCH/peer/Cargo.toml" --target-dir "$BENCH/peer/target")
  local dir=debug
  if [ "$RELEASE" = 1 ]; then
    flags+=(--release)
    dir=release
  fi
  log "building the hudsucker peer (cargo build ${flags[*]})"
  (cd "$BENCH/peer" && cargo build --quiet "${flags[@]}") || die "cargo build of benches/peer failed"
  PEER="$BENCH/peer/target/$dir/hudsucker-swap"
  [ -x "$PEER" ] || die "no $PEER after cargo build"
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/keygate-e2e.XXXXXX")"
TSV="$WORK/results.tsv"
SECRET="e2e-bench-$$"
PIDS=()
# HOME=SECRET of every secret put in the keyring, for the cleanup (keyutils names an
# entry by the secret's name alone, so each keygate home gets a name of its own).
REGISTERED=()

cleanup() {
  local status=$?
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  local entry
  for entry in "${REGISTERED[@]}"; do
    KEYGATE_HOME="${entry%%=*}" KEYGATE_KEYRING=keyutils "$KEYGATE" secret rm "${entry#*=}" >/dev/null 2>&1 || true
  done
  if [ "$status" != 0 ]; then
    local f
    for f in "$WORK"/*.log; do
      [ -s "$f" ] && { log "--- last lines of $f"; tail -n 15 "$f" >&2; }
    done
    log "work files kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for NAME PID CONDITION...: until CONDITION succeeds (15 s at most).
wait_for() {
  local name=$1 pid=$2
  shift 2
  local _
  for _ in $(seq 1 300); do
    if "$@" 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || die "$name exited during start-up"
    sleep 0.05
  done
  die "$name did not start within 15 s"
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# User + system CPU time of a process, in clock ticks (0 for no process).
cpu_ticks() {
  if [ -z "$1" ]; then echo 0; else sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; fi
}
CLK_TCK="$(getconf CLK_TCK)"
ticks_to_seconds() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { print t / hz }'; }
record() {
  [ -n "$4" ] || die "no value for $1 $2"
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$TSV"
}
report() { python3 "$BENCH/e2e_report.py" "$@"; }

start_upstream() {
  UP_PORT="$("$HELPER" free-port)"
  BENCH_REAL_KEY="$REAL" "$HELPER" upstream --listen "127.0.0.1:$UP_PORT" \
    --cert "$WORK/pki/upstream.pem" --key "$WORK/pki/upstream.key" \
    --threads "$UPSTREAM_THREADS" ${E2E_UPSTREAM_H2:+--h2} >"$WORK/upstream.log" 2>&1 &
  UP_PID=$!
  PIDS+=("$UP_PID")
  wait_for upstream "$UP_PID" grep -q "listening on" "$WORK/upstream.log"
}

# start_keygate [NAME [KEYGATE_YAML]]: keygate in $WORK/home (or $WORK/home-NAME, with
# KEYGATE_YAML as its keygate.yaml, and its own secret $SECRET-NAME); sets KEYGATE_HOME,
# DUMMY, KG_PORT and KG_PID, and remembers them under NAME for use_keygate.
start_keygate() {
  local name=${1:-} yaml=${2:-}
  local secret="$SECRET${name:+-$name}" log="$WORK/keygate${name:+-$name}.log"
  export KEYGATE_HOME="$WORK/home${name:+-$name}" KEYGATE_KEYRING=keyutils
  if [ -n "$yaml" ]; then
    mkdir -p "$KEYGATE_HOME"
    printf '%s\n' "$yaml" >"$KEYGATE_HOME/keygate.yaml"
  fi
  REGISTERED+=("$KEYGATE_HOME=$secret")
  DUMMY="$(V="$REAL" "$KEYGATE" secret add "$secret" --host "bench.test:$UP_PORT" \
    --header x-api-key --from-env V 2>"$WORK/secret${name:+-$name}.log" | tail -n1)"
  [ -n "$DUMMY" ] || die "keygate secret add printed no dummy"
  KG_PORT="$("$HELPER" free-port)"
  local workers=()
  if [ -n "${E2E_KEYGATE_WORKERS:-}" ]; then workers=(env "TOKIO_WORKER_THREADS=$E2E_KEYGATE_WORKERS"); fi
  "${workers[@]}" "$KEYGATE" start --listen "127.0.0.1:$KG_PORT" --mode custom --allow "tunnel.test:$UP_PORT" \
    --resolve "bench.test:$UP_PORT=127.0.0.1:$UP_PORT" \
    --resolve "tunnel.test:$UP_PORT=127.0.0.1:$UP_PORT" \
    --upstream-ca "$WORK/pki/root.pem" 2>"$log" &
  KG_PID=$!
  PIDS+=("$KG_PID")
  wait_for keygate "$KG_PID" grep -q "keygate listening on" "$log"
  if [ -n "$name" ]; then KEYGATES[$name]="$KEYGATE_HOME $DUMMY $KG_PORT $KG_PID"; fi
}
declare -A KEYGATES=()

# The bare Rust MITM peer: hudsucker with its own fresh CA (written to
# $WORK/hudsucker-ca.pem), swapping keygate's dummy for the real key; needs DUMMY.
start_hudsucker() {
  HS_PORT="$("$HELPER" free-port)"
  local workers=()
  if [ -n "${E2E_KEYGATE_WORKERS:-}" ]; then workers=(env "TOKIO_WORKER_THREADS=$E2E_KEYGATE_WORKERS"); fi
  "${workers[@]}" "$PEER" --listen "127.0.0.1:$HS_PORT" --ca-out "$WORK/hudsucker-ca.pem" \
    --upstream-ca "$WORK/pki/root.pem" --dummy "$DUMMY" --real "$REAL" \
    --resolve "bench.test:$UP_PORT=127.0.0.1:$UP_PORT" >"$WORK/hudsucker.log" 2>&1 &
  HS_PID=$!
  PIDS+=("$HS_PID")
  wait_for hudsucker "$HS_PID" grep -q "listening on" "$WORK/hudsucker.log"
}

# use_keygate NAME: the keygate start_keygate NAME started is the one loads go through.
use_keygate() {
  read -r KEYGATE_HOME DUMMY KG_PORT KG_PID <<<"${KEYGATES[$1]}"
}

start_mitmdump() {
  MP_PORT="$("$HELPER" free-port)"
  "$VENV/bin/mitmdump" --quiet --listen-host 127.0.0.1 --listen-port "$MP_PORT" \
    --set confdir="$WORK/mitm" --set ssl_verify_upstream_trusted_ca="$WORK/pki/root.pem" \
    -s "$BENCH/mitm_addon.py" --set bench_resolve="bench.test:$UP_PORT=127.0.0.1:$UP_PORT" \
    >"$WORK/mitmdump.log" 2>&1 &
  MP_PID=$!
  PIDS+=("$MP_PID")
  wait_for mitmdump "$MP_PID" port_open "$MP_PORT"
  wait_for mitmdump "$MP_PID" test -s "$WORK/mitm/mitmproxy-ca-cert.pem"
}

# Sets URL, PROXY_PID, OHA_ROUTE, HEY_ROUTE and HELPER_ROUTE for a scenario.
route() {
  URL="https://bench.test:$UP_PORT"
  case "$1" in
    direct)
      PROXY_PID=""
      OHA_ROUTE=(--connect-to "bench.test:$UP_PORT:127.0.0.1:$UP_PORT")
      HEY_ROUTE=(-host bench.test)
      HELPER_ROUTE=(--connect "127.0.0.1:$UP_PORT")
      ;;
    intercept)
      PROXY_PID="$KG_PID"
      OHA_ROUTE=(--no-pre-lookup -x "http://127.0.0.1:$KG_PORT")
      HEY_ROUTE=(-host bench.test -x "http://127.0.0.1:$KG_PORT")
      HELPER_ROUTE=(--proxy "127.0.0.1:$KG_PORT")
      ;;
    tunnel)
      URL="https://tunnel.test:$UP_PORT"
      PROXY_PID="$KG_PID"
      OHA_ROUTE=(--no-pre-lookup -x "http://127.0.0.1:$KG_PORT")
      HEY_ROUTE=(-host tunnel.test -x "http://127.0.0.1:$KG_PORT")
      HELPER_ROUTE=(--proxy "127.0.0.1:$KG_PORT")
      ;;
    hudsucker)
      PROXY_PID="${HS_PID:-}"
      OHA_ROUTE=(--no-pre-lookup -x "http://127.0.0.1:$HS_PORT")
      HEY_ROUTE=(-host bench.test -x "http://127.0.0.1:$HS_PORT")
      HELPER_ROUTE=(--proxy "127.0.0.1:$HS_PORT")
      ;;
    mitmdump)
      PROXY_PID="${MP_PID:-}"
      OHA_ROUTE=(--no-pre-lookup -x "http://127.0.0.1:$MP_PORT")
      HEY_ROUTE=(-host bench.test -x "http://127.0.0.1:$MP_PORT")
      HELPER_ROUTE=(--proxy "127.0.0.1:$MP_PORT")
      ;;
  esac
}

# load SCENARIO NAME SMOKE_N ARGS... URL: one load-generator run (-z DURATION, or
# -n SMOKE_N in smoke mode and for the warm-up); its report is left in $WORK/NAME.out.
# ARGS use oha's spelling; they are translated for hey.
# The CPU seconds the run cost each process go to $WORK/NAME.cpu: client (the load
# generator, from bash's `time`), upstream and proxy (from /proc/PID/stat).
load() {
  local scenario=$1 name=$2 smoke_n=$3
  shift 3
  route "$scenario"
  local amount=(-n "$smoke_n")
  if [ -n "$DURATION" ] && [ "$name" != warmup ]; then amount=(-z "$DURATION"); fi
  local up0 proxy0 TIMEFORMAT='%3U %3S'
  up0="$(cpu_ticks "$UP_PID")" proxy0="$(cpu_ticks "$PROXY_PID")"
  if [ "$LOADGEN" = oha ]; then
    if [ "${amount[0]}" = -z ]; then amount+=(-w); fi
    { time "$OHA" --no-tui --output-format json --cacert "$BUNDLE" -H "x-api-key: $DUMMY" \
      "${OHA_ROUTE[@]}" "${amount[@]}" "$@" >"$WORK/$name.out" 2>"$WORK/loadgen.log"; } \
      2>"$WORK/client.time" || die "oha ($scenario, $name) failed"
  else
    hey_load "$scenario" "$name" "${amount[@]}" -- "$@"
  fi
  printf 'client %s\nupstream %s\nproxy %s\n' \
    "$(awk '{ print $1 + $2 }' "$WORK/client.time")" \
    "$(ticks_to_seconds $(($(cpu_ticks "$UP_PID") - up0)))" \
    "$(ticks_to_seconds $(($(cpu_ticks "$PROXY_PID") - proxy0)))" >"$WORK/$name.cpu"
}

# hey_load SCENARIO NAME AMOUNT... -- ARGS...: load() with hey.
hey_load() {
  local scenario=$1 name=$2
  shift 2
  local amount=()
  while [ "$1" != -- ]; do
    amount+=("$1")
    shift
  done
  shift
  # hey: no --connect-to (the direct run asks for 127.0.0.1 itself); it sends the Host
  # header as TLS SNI, so -host names the host without the port; it has no CA option
  # and does not verify the server (client side only: keygate still verifies upstream).
  local args=() arg
  for arg in "$@"; do
    case "$arg" in
      --disable-keepalive) args+=(-disable-keepalive) ;;
      "https://bench.test:$UP_PORT"*)
        if [ "$scenario" = direct ]; then arg="https://127.0.0.1:$UP_PORT${arg#"https://bench.test:$UP_PORT"}"; fi
        args+=("$arg")
        ;;
      *) args+=("$arg") ;;
    esac
  done
  { time "$(command -v hey)" -H "x-api-key: $DUMMY" "${HEY_ROUTE[@]}" "${amount[@]}" "${args[@]}" \
    >"$WORK/$name.out" 2>"$WORK/loadgen.log"; } 2>"$WORK/client.time" ||
    die "hey ($scenario, $name) failed"
}

# measure SCENARIO FIGURE ROUND FIELD SMOKE_N ARGS...
measure() {
  local scenario=$1 figure=$2 round=$3 field=$4 smoke_n=$5
  shift 5
  load "$scenario" "$scenario-$figure-$round" "$smoke_n" "$@"
  local value
  value="$(report "$LOADGEN" "$WORK/$scenario-$figure-$round.out" "$field")" ||
    die "$scenario $figure: not every request succeeded"
  record "$scenario" "$figure" "$round" "$value"
  local count who seconds
  count="$(report "$LOADGEN" "$WORK/$scenario-$figure-$round.out" count)"
  while read -r who seconds; do
    record "$scenario" "cpu:$figure:$who" "$round" "$(awk -v s="$seconds" -v n="$count" 'BEGIN { print s / n * 1e6 }')"
  done <"$WORK/$scenario-$figure-$round.cpu"
}

measure_sse() {
  local scenario=$1 round=$2 out="$WORK/$1-sse-$2.json"
  route "$scenario"
  "$HELPER" sse --url "$URL/sse?hold_ms=$SSE_HOLD_MS" "${HELPER_ROUTE[@]}" --cacert "$BUNDLE" \
    --header "x-api-key: $DUMMY" -n "$SSE_N" >"$out" 2>>"$WORK/helper.log" ||
    die "SSE through $scenario failed"
  record "$scenario" sse_p50 "$round" "$(report json "$out" p50_ms)"
  record "$scenario" sse_p99 "$round" "$(report json "$out" p99_ms)"
}

measure_idle() {
  local scenario=$1 pid=$2 out="$WORK/$1-idle.json"
  route "$scenario"
  "$HELPER" idle --url "$URL/small" "${HELPER_ROUTE[@]}" --cacert "$BUNDLE" \
    --header "x-api-key: $DUMMY" --pid "$pid" -n "$IDLE_N" >"$out" 2>>"$WORK/helper.log" ||
    die "idle connections through $scenario failed"
  record "$scenario" rss_conn 1 "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["per_conn_bytes"] / 1000)' "$out")"
}

# The swap really happens through keygate and the hudsucker peer, and only there.
check_swap() {
  local scenario=$1 want=$2 got
  route "$scenario"
  local via=(--proxy "http://127.0.0.1:$KG_PORT")
  case "$scenario" in
    direct) via=(--connect-to "bench.test:$UP_PORT:127.0.0.1:$UP_PORT") ;;
    hudsucker) via=(--proxy "http://127.0.0.1:$HS_PORT") ;;
    mitmdump) via=(--proxy "http://127.0.0.1:$MP_PORT") ;;
  esac
  got="$(curl -sS --noproxy '' --cacert "$BUNDLE" "${via[@]}" -H "x-api-key: $DUMMY" "$URL/key")" ||
    die "curl through $scenario failed"
  [ "$got" = "$want" ] || die "$scenario: upstream saw a $got key, expected $want"
}

one_round() {
  local round=$1 scenario
  log "round $round/$ROUNDS (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  printf '%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/load.txt"
  for scenario in "${SCENARIOS[@]}"; do
    log "  $scenario"
    route "$scenario"
    load "$scenario" warmup "$WARMUP_N" -c 4 "$URL/small"
    measure "$scenario" lat_p50 "$round" p50_ms 20 -c 1 "$URL/small"
    record "$scenario" lat_p99 "$round" "$(report "$LOADGEN" "$WORK/$scenario-lat_p50-$round.out" p99_ms)"
    measure "$scenario" rps_c32 "$round" rps 64 -c 32 "$URL/small"
    measure "$scenario" conn_c32 "$round" rps 64 -c 32 --disable-keepalive "$URL/small"
    measure "$scenario" down_1m "$round" down_mbps 8 -c 4 "$URL/bytes/1048576"
    measure "$scenario" up_1m "$round" up_mbps_1mib 8 -c 4 -m POST -D "$WORK/1mib.bin" \
      -T application/octet-stream "$URL/upload"
    measure_sse "$scenario" "$round"
  done
}

machine() {
  local model
  model="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)"
  printf -- '- date: %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf -- '- machine: %s CPUs (%s), %s GiB RAM, kernel %s\n' "$(nproc)" "${model:-unknown CPU}" \
    "$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)"
  local loadgen="oha $OHA_VERSION"
  if [ "$LOADGEN" = hey ]; then loadgen="hey $(dpkg-query -W -f '${Version}' hey 2>/dev/null || true)"; fi
  local mitmdump=""
  if [ "$MODE" != metrics ]; then mitmdump=", $("$VENV/bin/mitmdump" --version 2>/dev/null | sed -n 1p)"; fi
  if [ -n "${PEER:-}" ]; then
    mitmdump+=", peer: benches/peer (hudsucker $(awk '/^name = "hudsucker"$/ { getline; gsub(/[^0-9.]/, ""); print }' "$BENCH/peer/Cargo.lock"))"
  fi
  printf -- '- keygate %s (%s build), upstream: benches/e2e upstream (%s thread), load: %s%s\n' \
    "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
    "$(if [ "$MODE" = profile ]; then echo profiling; elif [ "$RELEASE" = 1 ]; then echo release; else echo debug; fi)" "$UPSTREAM_THREADS" "$loadgen" \
    "$mitmdump"
  if [ -n "${E2E_KEYGATE_WORKERS:-}" ]; then
    printf -- '- keygate runs with %s tokio worker thread(s) (E2E_KEYGATE_WORKERS)\n' "$E2E_KEYGATE_WORKERS"
  fi
  if [ "$MODE" = full ]; then
    printf -- '- %s rounds of %s per load run; cells: median ±half the range of the rounds\n' "$ROUNDS" "$DURATION"
  elif [ "$MODE" = metrics ]; then
    printf -- '- %s rounds of %s of c=32 keep-alive GET /small (intercepted, swapped) through each of two keygates side by side (admin.metrics on / off; the order alternates each round); cells: median ±half the range of the rounds\n' "$ROUNDS" "$DURATION"
  elif [ "$MODE" = profile ]; then
    printf -- '- profile: perf record -F 499 --call-graph dwarf of keygate during %s of c=32 keep-alive\n' "$DURATION"
  else
    printf -- '- SMOKE run: a few requests each, the figures mean nothing\n'
  fi
  printf -- '- load average (1, 5, 15 min) at the start of each round: %s\n' \
    "$(paste -sd';' "$WORK/load.txt" | sed 's/;/; /g')"
}

# Samples keygate with perf (DWARF call graphs) during a c=32 intercepted run and
# prints where its CPU time goes (benches/perf_summary.py).
profile() {
  command -v perf >/dev/null || apt_install linux-perf
  perf record -e cpu-clock -o "$WORK/probe.data" true >/dev/null 2>&1 ||
    die "perf cannot sample here (kernel.perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid)); see docs/PERFORMANCE.md for valgrind --tool=callgrind"
  cut -d' ' -f1-3 /proc/loadavg >"$WORK/load.txt"
  route intercept
  load intercept warmup "$WARMUP_N" -c 4 "$URL/small"
  local secs=${DURATION%s} figure field what args
  case "${E2E_PROFILE_LOAD:-small}" in
    small) figure=rps_c32 field=rps what="c=32 keep-alive GET /small" args=(-c 32 "$URL/small") ;;
    down) figure=down_1m field=down_mbps what="1 MiB responses, c=4" args=(-c 4 "$URL/bytes/1048576") ;;
    up)
      figure=up_1m field=up_mbps_1mib what="1 MiB uploads, c=4"
      args=(-c 4 -m POST -D "$WORK/1mib.bin" -T application/octet-stream "$URL/upload")
      ;;
    *) die "E2E_PROFILE_LOAD must be small, down or up" ;;
  esac
  log "profiling keygate (pid $KG_PID) for $((secs - 1)) s of a ${secs} s run: $what"
  perf record -F 499 --call-graph dwarf,16384 -p "$KG_PID" -o "$WORK/perf.data" \
    -- sleep "$((secs - 1))" >"$WORK/perf.log" 2>&1 &
  local perf_pid=$!
  measure intercept "$figure" 1 "$field" 64 "${args[@]}"
  wait "$perf_pid" || die "perf record failed"
  mkdir -p "$(dirname "$OUT")"
  {
    machine
    printf -- '- keygate intercepting, %s: %.0f %s while sampled; CPU per request: keygate %.1f µs, upstream %.1f µs, load generator %.1f µs\n\n' \
      "$what" "$(awk -F'\t' -v f="$figure" '$2 == f { print $4 }' "$TSV")" "$field" \
      "$(awk -F'\t' -v f="cpu:$figure:proxy" '$2 == f { print $4 }' "$TSV")" \
      "$(awk -F'\t' -v f="cpu:$figure:upstream" '$2 == f { print $4 }' "$TSV")" \
      "$(awk -F'\t' -v f="cpu:$figure:client" '$2 == f { print $4 }' "$TSV")"
    perf script -i "$WORK/perf.data" -F comm,tid,ip,sym 2>/dev/null | python3 "$BENCH/perf_summary.py"
  } >"${OUT%.md}-profile.md"
  cp "$WORK/perf.data" "${OUT%.md}-perf.data"
  cat "${OUT%.md}-profile.md"
  log "profile written to ${OUT%.md}-profile.md (perf report -i ${OUT%.md}-perf.data for more)"
}

# --metrics-cost: the same c=32 keep-alive small-request load as rps_c32 through two
# keygates that differ only in admin.metrics, ROUNDS times, alternating which goes
# first to cancel the machine's drift; keygate's CPU per request and req/s of each.
metrics_cost() {
  start_keygate on ""
  start_keygate off $'admin:\n  metrics: false'
  cat "$WORK/pki/root.pem" "$WORK/home-on/ca/keygate-ca.pem" "$WORK/home-off/ca/keygate-ca.pem" >"$BUNDLE"
  # Both swap; /metrics answers on the admin socket of the one that counts, 404 on the
  # other's.
  local which want got
  for which in on off; do
    use_keygate "$which"
    check_swap intercept real
    want=200
    if [ "$which" = off ]; then want=404; fi
    got="$(curl -sS --noproxy '' --unix-socket "$KEYGATE_HOME/admin.sock" -o /dev/null -w '%{http_code}' http://keygate/metrics)" ||
      die "curl to the admin socket of keygate (metrics $which) failed"
    [ "$got" = "$want" ] || die "keygate (metrics $which): /metrics answered $got, expected $want"
  done
  : >"$WORK/load.txt"
  route intercept
  for which in on off; do
    use_keygate "$which"
    log "warm-up through keygate (metrics $which)"
    load intercept warmup "$WARMUP_N" -c 4 "$URL/small"
  done
  local round order file value count proxy_s
  for round in $(seq 1 "$ROUNDS"); do
    order=(on off)
    if [ $((round % 2)) = 0 ]; then order=(off on); fi
    log "round $round/$ROUNDS: ${order[*]} (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    printf '%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$WORK/load.txt"
    for which in "${order[@]}"; do
      use_keygate "$which"
      file="metrics-$which-rps_c32-$round"
      load intercept "$file" 64 -c 32 "$URL/small"
      value="$(report "$LOADGEN" "$WORK/$file.out" rps)" ||
        die "keygate (metrics $which): not every request succeeded"
      record "metrics-$which" rps_c32 "$round" "$value"
      count="$(report "$LOADGEN" "$WORK/$file.out" count)"
      proxy_s="$(awk '$1 == "proxy" { print $2 }' "$WORK/$file.cpu")"
      record "metrics-$which" cpu_us "$round" "$(awk -v s="$proxy_s" -v n="$count" 'BEGIN { print s / n * 1e6 }')"
    done
  done
  for which in on off; do
    if grep -qF "$REAL" "$WORK/keygate-$which.log" "$WORK/home-$which/audit.jsonl"; then
      die "the real value appears in keygate's log or audit log (metrics $which)"
    fi
  done
  mkdir -p "$(dirname "$OUT")"
  local out="${OUT%.md}-metrics-cost.md"
  {
    machine
    echo
    report metrics-cost "$TSV"
  } >"$out"
  cat "$out"
  log "table written to $out"
}

main() {
  if [ "$MODE" = install ]; then
    ensure_tools
    exit 0
  fi
  local started=$SECONDS
  ensure_tools
  build
  if [ "$MODE" = full ] || [ "$MODE" = smoke ]; then build_peer; fi
  REAL="sk-bench-real-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
  "$HELPER" pki --out "$WORK/pki" --name bench.test --name tunnel.test
  head -c 1048576 /dev/zero >"$WORK/1mib.bin"
  start_upstream
  BUNDLE="$WORK/bundle.pem"
  if [ "$MODE" = metrics ]; then
    metrics_cost
    log "done in $((SECONDS - started)) s"
    return
  fi
  start_keygate
  if [ "$MODE" = profile ]; then
    cat "$WORK/pki/root.pem" "$KEYGATE_HOME/ca/keygate-ca.pem" >"$BUNDLE"
    profile
    return
  fi
  if [ "$MODE" = memory ]; then
    cat "$WORK/pki/root.pem" "$KEYGATE_HOME/ca/keygate-ca.pem" >"$BUNDLE"
    printf 'keygate RSS at idle: %s kB\n' "$(rss_kib "$KG_PID")"
    measure_idle intercept "$KG_PID"
    printf 'keygate RSS per idle intercepted connection (%s connections): %s KB\n' "$IDLE_N" \
      "$(awk -F'\t' '$2 == "rss_conn" { print $4 }' "$TSV")"
    return
  fi
  start_hudsucker
  start_mitmdump
  cat "$WORK/pki/root.pem" "$KEYGATE_HOME/ca/keygate-ca.pem" "$WORK/hudsucker-ca.pem" \
    "$WORK/mitm/mitmproxy-ca-cert.pem" >"$BUNDLE"
  record intercept rss_idle 1 "$(($(rss_kib "$KG_PID") * 1024 / 1000))e-3"
  record hudsucker rss_idle 1 "$(($(rss_kib "$HS_PID") * 1024 / 1000))e-3"
  record mitmdump rss_idle 1 "$(($(rss_kib "$MP_PID") * 1024 / 1000))e-3"
  check_swap intercept real
  check_swap hudsucker real
  check_swap direct not-real
  check_swap mitmdump not-real
  log "idle connections ($IDLE_N each)"
  measure_idle intercept "$KG_PID"
  measure_idle hudsucker "$HS_PID"
  measure_idle mitmdump "$MP_PID"
  local round
  for round in $(seq 1 "$ROUNDS"); do one_round "$round"; done
  record intercept rss_after 1 "$(($(rss_kib "$KG_PID") * 1024 / 1000))e-3"
  record hudsucker rss_after 1 "$(($(rss_kib "$HS_PID") * 1024 / 1000))e-3"
  record mitmdump rss_after 1 "$(($(rss_kib "$MP_PID") * 1024 / 1000))e-3"
  if grep -qF "$REAL" "$WORK/keygate.log" "$KEYGATE_HOME/audit.jsonl"; then
    die "the real value appears in keygate's log or audit log"
  fi
  mkdir -p "$(dirname "$OUT")"
  {
    machine
    echo
    report table "$TSV"
    echo
    report cpu "$TSV"
  } >"$OUT"
  cat "$OUT"
  log "done in $((SECONDS - started)) s; table written to $OUT"
}

main
