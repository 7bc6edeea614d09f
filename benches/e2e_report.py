#!/usr/bin/env python3
"""Reads the figures benches/e2e.sh collects and renders its one markdown table.

    e2e_report.py oha FILE FIELD   print one figure of an oha JSON report; exit 1 unless
                                   every request succeeded with 2xx
    e2e_report.py hey FILE FIELD   the same for hey's text summary
    e2e_report.py json FILE KEY    print KEY of a one-line JSON object (sse, idle)
    e2e_report.py table TSV        the markdown table (median of the rounds, spread,
                                   ratios to direct, to hudsucker and to mitmdump, targets)
    e2e_report.py cpu TSV          CPU time per request of each process, per scenario
    e2e_report.py metrics-cost TSV keygate with admin.metrics on vs off (--metrics-cost):
                                   CPU per request and req/s, and their differences

The TSV has one line per measurement: scenario, figure, round, value.
"""

import json
import re
import statistics
import sys
from collections import defaultdict

SCENARIOS = ["direct", "intercept", "tunnel", "hudsucker", "mitmdump"]
HEADERS = ["direct", "keygate intercepting", "keygate tunnelling", "hudsucker swap (bare Rust MITM)", "mitmdump"]

# figure key, label, unit-format, higher is better
FIGURES = [
    ("lat_p50", "c=1 keep-alive, latency p50 (ms)", "{:.3f}", False),
    ("lat_p99", "c=1 keep-alive, latency p99 (ms)", "{:.3f}", False),
    ("rps_c32", "c=32 keep-alive (req/s)", "{:,.0f}", True),
    ("conn_c32", "c=32 new connection per request (conn/s)", "{:,.0f}", True),
    ("down_1m", "1 MiB responses, c=4 (MB/s)", "{:,.0f}", True),
    ("up_1m", "1 MiB uploads, c=4 (MB/s)", "{:,.0f}", True),
    ("sse_p50", "SSE time to first event p50 (ms)", "{:.3f}", False),
    ("sse_p99", "SSE time to first event p99 (ms)", "{:.3f}", False),
    ("rss_idle", "RSS at idle, after start (MB)", "{:.1f}", False),
    ("rss_conn", "RSS per idle intercepted connection (KB)", "{:.1f}", False),
    ("rss_after", "RSS after all runs (MB)", "{:.1f}", False),
]


def oha(path, field):
    with open(path) as f:
        report = json.load(f)
    summary = report["summary"]
    statuses = report.get("statusCodeDistribution", {})
    errors = report.get("errorDistribution", {})
    bad = {k: v for k, v in statuses.items() if not k.startswith("2")}
    if summary.get("successRate") != 1 or bad or errors or not statuses:
        sys.exit(f"{path}: not every request succeeded: statuses {statuses}, errors {errors}")
    value = {
        "p50_ms": lambda: report["latencyPercentiles"]["p50"] * 1000,
        "p99_ms": lambda: report["latencyPercentiles"]["p99"] * 1000,
        "rps": lambda: summary["requestsPerSec"],
        "down_mbps": lambda: summary["sizePerSec"] / 1e6,
        "count": lambda: sum(statuses.values()),
        "up_mbps_1mib": lambda: summary["requestsPerSec"] * 1024 * 1024 / 1e6,
    }[field]()
    print(f"{value:.6f}")


def hey(path, field):
    with open(path) as f:
        text = f.read()

    def number(pattern):
        match = re.search(pattern, text, re.M)
        if not match:
            sys.exit(f"{path}: no {pattern!r} in hey's summary")
        return float(match.group(1))

    statuses = dict(re.findall(r"^\s*\[(\d+)\]\s+(\d+) responses", text, re.M))
    bad = {k: v for k, v in statuses.items() if not k.startswith("2")}
    if "Error distribution" in text or bad or not statuses:
        sys.exit(f"{path}: not every request succeeded: statuses {statuses}")
    rps = number(r"^\s*Requests/sec:\s+([\d.]+)")
    # Small runs make hey print "0% in 0.0000 secs" for the upper percentiles: use the
    # slowest request then. Its percentiles have a 0.1 ms resolution.
    p99 = re.search(r"^\s*99% in ([\d.]+) secs", text, re.M)
    value = {
        "p50_ms": lambda: number(r"^\s*50% in ([\d.]+) secs") * 1000,
        "p99_ms": lambda: (float(p99.group(1)) if p99 else number(r"^\s*Slowest:\s+([\d.]+)")) * 1000,
        "rps": lambda: rps,
        "count": lambda: sum(int(n) for n in statuses.values()),
        # hey counts only Content-Length bodies (keygate's scrub may send chunked ones);
        # the bodies are 1 MiB either way.
        "down_mbps": lambda: rps * 1024 * 1024 / 1e6,
        "up_mbps_1mib": lambda: rps * 1024 * 1024 / 1e6,
    }[field]()
    print(f"{value:.6f}")


def one_json(path, key):
    with open(path) as f:
        print(json.load(f)[key])


def load(tsv):
    values = defaultdict(list)
    with open(tsv) as f:
        for line in f:
            scenario, figure, _round, value = line.rstrip("\n").split("\t")
            values[(scenario, figure)].append(float(value))
    return values


def cell(samples, fmt):
    if not samples:
        return "—", None
    median = statistics.median(samples)
    text = fmt.format(median)
    if len(samples) > 1 and median:
        spread = (max(samples) - min(samples)) / 2 / abs(median) * 100
        text += f" ±{spread:.0f}%"
    return text, median


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}×"


def target(figure, m):
    """(target text, met?) for a figure given the medians m[scenario]."""
    ki, d, mp = m.get("intercept"), m.get("direct"), m.get("mitmdump")

    def check(ok):
        return "—" if ok is None else ("yes" if ok else "**no**")

    if figure == "lat_p50":
        added = None if ki is None or d is None else ki - d
        return f"added ≤ 0.15 ms (now {added:+.3f})" if added is not None else "added ≤ 0.15 ms", check(
            None if added is None else added <= 0.15)
    if figure == "lat_p99":
        added = None if ki is None or d is None else ki - d
        return f"added ≤ 1 ms (now {added:+.3f})" if added is not None else "added ≤ 1 ms", check(
            None if added is None else added <= 1.0)
    if figure == "rps_c32":
        ok = None if None in (ki, d, mp) else ki >= 15 * mp and ki >= 0.5 * d
        return "≥ 15× mitmdump and ≥ 50% of direct", check(ok)
    if figure == "conn_c32":
        return "≥ 2,000 conn/s", check(None if ki is None else ki >= 2000)
    if figure in ("down_1m", "up_1m"):
        return "≥ 70% of direct", check(None if None in (ki, d) else ki >= 0.7 * d)
    if figure == "sse_p50":
        return "≤ direct + 1 ms", check(None if None in (ki, d) else ki <= d + 1.0)
    if figure == "rss_idle":
        return "≤ 20 MB", check(None if ki is None else ki <= 20)
    if figure == "rss_conn":
        return "≤ 32 KB", check(None if ki is None else ki <= 32)
    return "", ""


def table(tsv):
    values = load(tsv)
    head = ["figure", *HEADERS, "intercepting ÷ direct", "intercepting ÷ hudsucker", "intercepting ÷ mitmdump",
            "target (intercepting)", "met"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(HEADERS) + 3) + ["---", "---"]) + "|")
    for figure, label, fmt, _higher in FIGURES:
        cells, medians = [], {}
        for scenario in SCENARIOS:
            text, median = cell(values.get((scenario, figure), []), fmt)
            cells.append(text)
            medians[scenario] = median
        if all(v is None for v in medians.values()):
            continue
        goal, met = target(figure, medians)
        row = [label, *cells, ratio(medians["intercept"], medians["direct"]),
               ratio(medians["intercept"], medians["hudsucker"]),
               ratio(medians["intercept"], medians["mitmdump"]), goal, met]
        print("| " + " | ".join(row) + " |")


CPU_FIGURES = [
    ("rps_c32", "c=32 keep-alive, per request"),
    ("conn_c32", "c=32 new connections, per request"),
    ("down_1m", "1 MiB responses, per response"),
    ("up_1m", "1 MiB uploads, per upload"),
]
CPU_WHO = [("client", "load generator"), ("upstream", "upstream"), ("proxy", "proxy")]


def cpu(tsv):
    """CPU microseconds per request by process: what each scenario costs the machine."""
    values = load(tsv)
    print("| CPU time (µs) | " + " | ".join(HEADERS) + " |")
    print("|---|" + "---:|" * len(HEADERS))
    for figure, label in CPU_FIGURES:
        totals = defaultdict(float)
        for who, name in CPU_WHO:
            cells = []
            for scenario in SCENARIOS:
                samples = values.get((scenario, f"cpu:{figure}:{who}"), [])
                if not samples or (who == "proxy" and scenario == "direct"):
                    cells.append("—")
                    continue
                median = statistics.median(samples)
                totals[scenario] += median
                cells.append(f"{median:,.1f}")
            if any(c != "—" for c in cells):
                print(f"| {label}: {name} | " + " | ".join(cells) + " |")
        if totals:
            cells = [f"**{totals[s]:,.1f}**" if s in totals else "—" for s in SCENARIOS]
            print(f"| {label}: **all three** | " + " | ".join(cells) + " |")


def percent(a, b):
    return f"{(a - b) / b * 100:+.1f}%"


def metrics_cost(tsv):
    """admin.metrics on vs off: the medians of the rounds, the difference of the medians,
    and each round's own difference (the two runs of a round are adjacent in time, so
    the machine's drift mostly cancels in them)."""
    values = load(tsv)
    rows = [
        ("cpu_us", "keygate CPU per request (µs)", "{:.1f}"),
        ("rps_c32", "c=32 keep-alive (req/s)", "{:,.0f}"),
    ]
    print("| c=32 keep-alive GET /small, intercepted | metrics on | metrics off | on vs off (medians) |")
    print("|---|---:|---:|---:|")
    paired = []
    for figure, label, fmt in rows:
        on = values.get(("metrics-on", figure), [])
        off = values.get(("metrics-off", figure), [])
        on_text, on_median = cell(on, fmt)
        off_text, off_median = cell(off, fmt)
        diff = percent(on_median, off_median) if on_median is not None and off_median else "—"
        print(f"| {label} | {on_text} | {off_text} | {diff} |")
        rounds = [percent(a, b) for a, b in zip(on, off) if b]
        median = statistics.median([(a - b) / b * 100 for a, b in zip(on, off) if b]) if rounds else None
        if rounds:
            paired.append(f"{label}: {', '.join(rounds)} (median {median:+.1f}%)")
    print()
    print("On vs off within each round:")
    print()
    for line in paired:
        print(f"- {line}")


def main():
    command, *args = sys.argv[1:]
    {"oha": oha, "hey": hey, "json": one_json, "table": table, "cpu": cpu,
     "metrics-cost": metrics_cost}[command](*args)


if __name__ == "__main__":
    main()
