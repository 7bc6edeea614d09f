#!/usr/bin/env python3
"""An escape probe for `keygate run` (tests/integration/jail.rs).

It tries every way out the jail must close (issue 12) and prints one JSON line per
attempt: {"attempt": NAME, "escaped": BOOL, "detail": TEXT}. It always exits 0; the test
reads the lines.

The probe is never given the real value. It recognises it by its SHA-256
(PROBE_REAL_SHA256), its length (PROBE_REAL_LEN) and its non-secret prefix
(PROBE_REAL_PREFIX): every occurrence of the prefix in what it can read is hashed over
that length. A detail never holds what was read, only what was found where.
"""

import argparse
import ctypes
import errno
import hashlib
import json
import os
import socket
import time

REAL_SHA = os.environ.get("PROBE_REAL_SHA256", "")
REAL_LEN = int(os.environ.get("PROBE_REAL_LEN", "0") or 0)
REAL_PREFIX = os.environ.get("PROBE_REAL_PREFIX", "").encode()

SYS_KEYCTL = 250  # x86_64
KEYCTL_GET_KEYRING_ID = 0
KEYCTL_DESCRIBE = 6
KEYCTL_SEARCH = 10
KEYCTL_READ = 11
KEYCTL_GET_PERSISTENT = 22
SPECIAL = {
    "@t": -1,
    "@p": -2,
    "@s": -3,
    "@u": -4,
    "@us": -5,
    "@g": -6,
}

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def report(attempt, escaped, detail):
    print(
        json.dumps({"attempt": attempt, "escaped": bool(escaped), "detail": str(detail)}),
        flush=True,
    )


def holds_real(data):
    """True when `data` (bytes) contains the real value."""
    if not (REAL_SHA and REAL_LEN and REAL_PREFIX) or not data:
        return False
    start = 0
    while True:
        i = data.find(REAL_PREFIX, start)
        if i < 0:
            return False
        if hashlib.sha256(data[i : i + REAL_LEN]).hexdigest() == REAL_SHA:
            return True
        start = i + 1


def keyctl(*args):
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ret = libc.syscall(ctypes.c_long(SYS_KEYCTL), *cargs)
    err = ctypes.get_errno() if ret < 0 else 0
    return ret, err


def key_read(key):
    """The payload of `key` (bytes), or an errno name."""
    size = 4096
    for _ in range(4):
        buf = ctypes.create_string_buffer(size)
        n, err = keyctl(KEYCTL_READ, key, buf, size)
        if n < 0:
            return None, errno.errorcode.get(err, str(err))
        if n <= size:
            return buf.raw[:n], None
        size = n
    return None, "ETOOBIG"


def key_describe(key):
    buf = ctypes.create_string_buffer(1024)
    n, err = keyctl(KEYCTL_DESCRIBE, key, buf, 1024)
    if n < 0:
        return None
    return buf.raw[: max(0, n - 1)].decode(errors="replace")


def walk_key(key, seen, found, depth=0):
    """Reads `key` (and, for a keyring, every key linked in it); True if the real value
    was read anywhere."""
    if key in seen or depth > 6:
        return False
    seen.add(key)
    desc = key_describe(key) or ""
    data, err = key_read(key)
    if data is None:
        found.append(f"{key}:{err}")
        return False
    if holds_real(data):
        found.append(f"{key}:REAL")
        return True
    hit = False
    if desc.startswith("keyring;"):
        for i in range(0, len(data) - len(data) % 4, 4):
            child = int.from_bytes(data[i : i + 4], "little", signed=True)
            hit |= walk_key(child, seen, found, depth + 1)
    else:
        found.append(f"{key}:read {len(data)} bytes")
    return hit


def attempt_keyrings(key_desc):
    seen = set()
    # Every key /proc/keys shows.
    found = []
    hit = False
    try:
        with open("/proc/keys") as f:
            ids = [int(line.split()[0], 16) for line in f if line.strip()]
    except OSError as e:
        ids = []
        found.append(f"/proc/keys: {e.strerror}")
    for key in ids:
        hit |= walk_key(key, seen, found)
    report("keyctl-read-proc-keys", hit, f"{len(ids)} keys listed; " + ", ".join(found[:20]))
    # The special keyrings, resolved and walked.
    for name, special in SPECIAL.items():
        found = []
        key, err = keyctl(KEYCTL_GET_KEYRING_ID, special, 0)
        if key < 0:
            report(f"keyctl-{name}", False, errno.errorcode.get(err, str(err)))
            continue
        hit = walk_key(key, set(), found)
        # And a search by the description keygate's keyutils store uses.
        if key_desc:
            sid, err = keyctl(
                KEYCTL_SEARCH, special, ctypes.c_char_p(b"user"), ctypes.c_char_p(key_desc.encode()), 0
            )
            if sid >= 0:
                data, rerr = key_read(sid)
                if data is not None and holds_real(data):
                    hit = True
                    found.append(f"search {sid}:REAL")
                else:
                    found.append(f"search {sid}:{rerr or 'not the value'}")
            else:
                found.append("search:" + errno.errorcode.get(err, str(err)))
        report(f"keyctl-{name}", hit, f"keyring {key}; " + ", ".join(found[:20]))
    # The user's persistent keyring.
    pid, err = keyctl(KEYCTL_GET_PERSISTENT, -1, SPECIAL["@s"])
    if pid < 0:
        report("keyctl-persistent", False, errno.errorcode.get(err, str(err)))
    else:
        found = []
        hit = walk_key(pid, set(), found)
        report("keyctl-persistent", hit, f"keyring {pid}; " + ", ".join(found[:20]))


def attempt_read(label, path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        report(label, False, f"{path}: {e.strerror}")
        return
    if not data:
        report(label, False, f"{path}: empty (hidden)")
        return
    report(label, True, f"{path}: read {len(data)} bytes" + (" (REAL value)" if holds_real(data) else ""))


def attempt_append(label, path):
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        report(label, False, f"{path}: not visible")
        return
    try:
        with open(path, "a") as f:
            f.write("\n# escape-probe was here\n")
    except OSError as e:
        report(label, False, f"{path}: {e.strerror}")
        return
    report(label, True, f"{path}: appended")


def attempt_create_in(label, directory):
    if not os.path.isdir(directory):
        report(label, False, f"{directory}: not visible")
        return
    path = os.path.join(directory, "escape-probe.yaml")
    try:
        with open(path, "w") as f:
            f.write("name: escape-probe\n")
    except OSError as e:
        report(label, False, f"{path}: {e.strerror}")
        return
    report(label, True, f"{path}: created")


def attempt_tcp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        # A listener of the jail's own loopback would not answer with the test's token.
        token = s.recv(64)
        report("tcp-host-loopback", token.startswith(b"host-listener"), f"connected; got {token[:32]!r}")
    except OSError as e:
        report("tcp-host-loopback", False, f"127.0.0.1:{port}: {e.strerror or e}")
    finally:
        s.close()


def unix_connect(label, address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    shown = address.replace("\0", "@")
    try:
        s.connect(address)
        report(label, True, f"connected to {shown}")
    except OSError as e:
        report(label, False, f"{shown}: {e.strerror or e}")
    finally:
        s.close()


def attempt_dbus(address):
    """Every unix: transport of a D-Bus address, by path and as an abstract name."""
    for transport in address.split(";"):
        if not transport.startswith("unix:"):
            continue
        fields = dict(kv.split("=", 1) for kv in transport[5:].split(",") if "=" in kv)
        if "path" in fields:
            unix_connect("dbus-session-bus-path", fields["path"])
            # The same name as an abstract socket.
            unix_connect("dbus-session-bus-abstract-of-path", "\0" + fields["path"])
        if "abstract" in fields:
            unix_connect("dbus-session-bus-abstract", "\0" + fields["abstract"])


def wait_for_pid(path):
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return None


def attempt_outer_process(pid):
    if pid is None:
        report("proc-outer-mem", False, "no pid given in time")
        return
    base = f"/proc/{pid}"
    try:
        with open(f"{base}/environ", "rb") as f:
            data = f.read()
        report("proc-outer-environ", True, f"{base}/environ: read {len(data)} bytes" + (" (REAL)" if holds_real(data) else ""))
    except OSError as e:
        report("proc-outer-environ", False, f"{base}/environ: {e.strerror}")
    try:
        with open(f"{base}/maps") as f:
            maps = f.readlines()
    except OSError as e:
        report("proc-outer-mem", False, f"{base}/maps: {e.strerror}")
        return
    total, hit, err = 0, False, None
    try:
        mem = open(f"{base}/mem", "rb", buffering=0)
    except OSError as e:
        report("proc-outer-mem", False, f"{base}/mem: {e.strerror}")
        return
    with mem:
        for line in maps:
            parts = line.split()
            if "r" not in parts[1] or (len(parts) > 5 and parts[5].startswith("[v")):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if hi - lo > 256 * 1024 * 1024:
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, OverflowError, ValueError) as e:
                err = getattr(e, "strerror", None) or str(e)
                continue
            total += len(data)
            if holds_real(data):
                hit = True
                break
    report(
        "proc-outer-mem",
        total > 0,
        f"{base}/mem: read {total} bytes" + (" (REAL value found)" if hit else "") + (f"; last error {err}" if err else ""),
    )


def attempt_environments():
    """This process's environment, and every process it can see (environ, cmdline)."""
    own = os.environb if hasattr(os, "environb") else {}
    hit = any(holds_real(k + b"=" + v) for k, v in own.items())
    report("own-environ", hit, f"{len(own)} variables")
    hits, seen = [], 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        for part in ("environ", "cmdline"):
            try:
                with open(f"/proc/{name}/{part}", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            seen += 1
            if holds_real(data):
                hits.append(f"{name}/{part}")
    report("visible-processes", bool(hits), f"{seen} files read; real value in: {hits}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--key-desc", default="")
    p.add_argument("--read", action="append", default=[], help="LABEL=PATH")
    p.add_argument("--append", action="append", default=[], help="LABEL=PATH")
    p.add_argument("--create-in", action="append", default=[], help="LABEL=DIR")
    p.add_argument("--tcp", type=int)
    p.add_argument("--abstract", action="append", default=[], help="an abstract socket name")
    p.add_argument("--dbus", default="")
    p.add_argument("--pid-file")
    a = p.parse_args()

    attempt_environments()
    attempt_keyrings(a.key_desc)
    for spec in a.read:
        label, path = spec.split("=", 1)
        attempt_read(label, path)
    for spec in a.append:
        label, path = spec.split("=", 1)
        attempt_append(label, path)
    for spec in a.create_in:
        label, path = spec.split("=", 1)
        attempt_create_in(label, path)
    if a.tcp:
        attempt_tcp(a.tcp)
    for name in a.abstract:
        unix_connect("abstract-unix-socket", "\0" + name)
    if a.dbus:
        attempt_dbus(a.dbus)
    if a.pid_file:
        attempt_outer_process(wait_for_pid(a.pid_file))
    report("done", False, "all attempts made")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the test sees a missing "done" line and the reason
        report("probe-crashed", False, repr(e))
