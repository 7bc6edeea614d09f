#!/usr/bin/env bash
# The jail's cost (issue 12; docs/PERFORMANCE.md, "Jail"). Two measurements, each
# jailed (the default of `keygate run`) and with --no-jail:
#
#   a) start-up: wall time of `keygate run -- true`, JAIL_RUNS runs each (default 30),
#      median and p90. Targets: the jail adds <= 100 ms.
#   b) per request: inside `keygate run`, a Python loop sends JAIL_REQUESTS (default 500)
#      sequential plain-HTTP `GET http://keygate.test/health` requests to the proxy
#      named by $HTTP_PROXY on one keep-alive connection and times each; p50 and p99.
#      Jailed, that address is the relay inside the jail (TCP to the session's Unix
#      socket); with --no-jail, the embedded proxy on host loopback. The difference is
#      what the relay adds. Target: <= 0.05 ms at p50.
#
# Release build (cargo build --release); a temporary KEYGATE_HOME; keygate.test is
# keygate's own origin, so nothing leaves loopback. Needs bwrap and python3.
#
#   benches/jail.sh                 JAIL_RUNS=30 JAIL_REQUESTS=500
#   JAIL_RUNS=5 JAIL_REQUESTS=50 benches/jail.sh      a quick look
set -euo pipefail

RUNS="${JAIL_RUNS:-30}"
REQUESTS="${JAIL_REQUESTS:-500}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
KEYGATE="$ROOT/target/release/keygate"
command -v bwrap >/dev/null || { echo "jail.sh: bwrap is not installed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "jail.sh: python3 is not installed" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
export KEYGATE_HOME="$TMP/home"
mkdir -p "$KEYGATE_HOME" "$TMP/work"
# A free port: the relay's port inside the jail; with --no-jail, where `run` looks for
# a running keygate (nothing answers there, so it embeds one at once).
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
printf 'listen: 127.0.0.1:%s\n' "$PORT" >"$KEYGATE_HOME/keygate.yaml"
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy

cat >"$TMP/work/latency.py" <<'PY'
# Sequential keep-alive GETs to keygate's self-test origin through $HTTP_PROXY.
import os, socket, sys, time, urllib.parse

n = int(sys.argv[1])
proxy = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
sock = socket.create_connection((proxy.hostname, proxy.port))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
request = b"GET http://keygate.test/health HTTP/1.1\r\nHost: keygate.test\r\n\r\n"
buf = b""

def one():
    global buf
    sock.sendall(request)
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("proxy closed the connection")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit("unexpected response: %r" % head[:80])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("proxy closed the connection")
        rest += chunk
    buf = rest[length:]

for _ in range(50):  # warm-up
    one()
times = []
for _ in range(n):
    t = time.perf_counter()
    one()
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print("%.4f %.4f" % (times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]))
PY

cd "$TMP/work"
# Warm-up: the --no-jail path makes the main CA on its first run.
"$KEYGATE" run --no-jail -- true 2>/dev/null
"$KEYGATE" run -- true

python3 - "$KEYGATE" "$RUNS" "$REQUESTS" <<'PY'
import statistics, subprocess, sys, time

keygate, runs, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
modes = {"jail": [], "no-jail": ["--no-jail"]}

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]

# a) start-up, the two modes interleaved so drift hits both alike.
walls = {m: [] for m in modes}
for _ in range(runs):
    for mode, flags in modes.items():
        t = time.perf_counter()
        subprocess.run([keygate, "run", *flags, "--", "true"], check=True,
                       stderr=subprocess.DEVNULL)
        walls[mode].append((time.perf_counter() - t) * 1000)
print(f"a) keygate run -- true, {runs} runs each (ms)")
for mode in modes:
    print(f"   {mode:8} median {statistics.median(walls[mode]):7.1f}  p90 {pct(walls[mode], 0.9):7.1f}")
added = statistics.median(walls["jail"]) - statistics.median(walls["no-jail"])
print(f"   the jail adds {added:.1f} ms at the median (target <= 100 ms)")

# b) per request, three rounds per mode, interleaved; the median round is reported.
lat = {m: [] for m in modes}
for _ in range(3):
    for mode, flags in modes.items():
        out = subprocess.run([keygate, "run", *flags, "--", "python3", "latency.py", str(requests)],
                             check=True, capture_output=True, text=True).stdout.split()
        lat[mode].append((float(out[0]), float(out[1])))
print(f"b) {requests} sequential keep-alive GET http://keygate.test/health through the proxy (ms)")
rounds = {}
for mode in modes:
    p50s = sorted(r[0] for r in lat[mode])
    p99s = sorted(r[1] for r in lat[mode])
    rounds[mode] = (p50s[1], p99s[1])
    print(f"   {mode:8} p50 {p50s[1]:.4f}  p99 {p99s[1]:.4f}   (p50 of the rounds: {', '.join('%.4f' % v for v in p50s)})")
print(f"   the relay adds {rounds['jail'][0] - rounds['no-jail'][0]:.4f} ms at p50, "
      f"{rounds['jail'][1] - rounds['no-jail'][1]:.4f} ms at p99 (target <= 0.05 ms at p50)")
PY
