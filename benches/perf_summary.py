#!/usr/bin/env python3
"""Summarises `perf script -F comm,tid,ip,sym` output (from `perf record --call-graph
dwarf`) of keygate under load: where the samples go, by what keygate asked for.

A sample belongs to the first of OWNERS (work keygate asks for: audit, logs, addons...)
its stack contains; otherwise to the first of LEAVES its innermost frames name (socket
writes, crypto, malloc...). Prints the shares, then the hottest self symbols. Used by
`benches/e2e.sh --profile`.
"""

import re
import sys
from collections import Counter

# Work keygate itself asks for: a sample whose stack contains one of these belongs to
# it, whatever the leaf (first match wins).
OWNERS = [
    ("audit log thread (serialise + write + wait)", r"^COMM:keygate-audit"),
    ("TLS handshakes", r"rustls::server::hs|rustls::client::hs|rustls::server::tls13|rustls::client::tls13|into_connection"),
    ("tracing log lines (format + write to stderr)", r"tracing_subscriber|tracing_core::event"),
    ("audit events on the request path (Event::new, FlowRecord, channel send)", r"keygate::audit|keygate::proxy::io::metered::FlowRecord"),
    ("keygate addons (host check, tripwire, privilege, swap, scrub)", r"keygate::addon"),
    ("hyper-util pool checkout + client dispatch", r"hyper_util::client::legacy::pool::|legacy::client::Client<C,B>::send_request"),
]

# Everything else, by the innermost frame that names one of these.
LEAVES = [
    ("kernel: socket writes (TCP send incl. loopback delivery)", r"tcp_sendmsg|sys_writev|sys_sendto|do_writev|sock_write_iter"),
    ("kernel: socket reads", r"tcp_recvmsg|sys_recvfrom|sock_recvmsg|sock_read_iter"),
    ("futex wake/wait (tokio park/unpark)", r"futex|__lll_lock"),
    ("epoll", r"epoll"),
    ("kernel: scheduling, interrupts (other)", r"finish_task_switch|__schedule|irqentry|asm_sysvec|do_syscall_64|entry_SYSCALL"),
    ("TLS record crypto (aws-lc AES-GCM)", r"aws_lc|aes_gcm|gcm_"),
    ("malloc/free", r"malloc|_int_free|cfree|realloc|unlink_chunk|tcache"),
    ("memcpy/memmove", r"memmove|memcpy"),
    ("rustls record layer", r"rustls::"),
    ("hyper HTTP/1 (parse, encode, dispatch)", r"hyper::"),
    ("tokio runtime + I/O driver", r"tokio::|mio::"),
    ("keygate proxy code (exchange, prepare, headers)", r"keygate::"),
]


def samples(stream):
    comm, frames = None, []
    for line in stream:
        line = line.rstrip("\n")
        if not line:
            if comm is not None:
                yield comm, frames
            comm, frames = None, []
        elif not line.startswith(("\t", " ")):
            comm, frames = line.split()[0], []
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else parts[0])
    if comm is not None:
        yield comm, frames


def classify(comm, frames, owners, leaves):
    stack = "COMM:" + comm + "\n" + "\n".join(frames)
    for name, rx in owners:
        if rx.search(stack):
            return name
    for frame in frames:
        for name, rx in leaves:
            if rx.search(frame):
                return name
    return "other"


def main():
    owners = [(name, re.compile(rx, re.M)) for name, rx in OWNERS]
    leaves = [(name, re.compile(rx)) for name, rx in LEAVES]
    by_category, by_self, total = Counter(), Counter(), 0
    for comm, frames in samples(sys.stdin):
        total += 1
        by_category[classify(comm, frames, owners, leaves)] += 1
        if frames:
            by_self[re.sub(r"\+0x[0-9a-f]+$", "", frames[0])[:110]] += 1
    if not total:
        sys.exit("no samples")
    print(f"{total} samples\n\n| where keygate's CPU time goes | share |\n|---|---:|")
    for name, count in by_category.most_common():
        print(f"| {name} | {count / total * 100:.1f}% |")
    print("\nhottest self symbols:")
    for sym, count in by_self.most_common(25):
        print(f"  {count / total * 100:5.1f}%  {sym}")


if __name__ == "__main__":
    main()
