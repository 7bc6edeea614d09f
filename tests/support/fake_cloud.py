"""Fake cloud upstreams for issue 15 (credentials that are signatures or minted tokens).

    tests/clients/.venv/bin/python tests/support/fake_cloud.py --cert LEAF.pem --key KEY.pem --config CONFIG.json

One threaded HTTPS server (HTTP/1.1, keep-alive) on 127.0.0.1:0 that plays, by Host
header: Amazon Bedrock runtime and S3 (SigV4 verified with the REAL keys through
botocore's signer), Google's token endpoint (JWT bearer grant verified with the REAL
service account's key) and Vertex AI, a generic OAuth2 token endpoint with client
credentials and rotating refresh tokens plus an API it protects, and GitHub's App
installation-token API. When ready it prints one line on stdout,
`{"port": N, "control_port": M}`, and nothing else ever (no credential reaches stdout or
stderr). `GET /__seen` (any host, on either port; the control port is plain HTTP) answers
every request seen so far; `GET /__stats` the mint counters.

The config schema, the routes and how tests drive it: tests/support/FAKE_CLOUD.md.
"""

import argparse
import base64
import binascii
import datetime
import hashlib
import hmac
import json
import re
import secrets
import ssl
import string
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

import botocore.auth
import botocore.awsrequest
import botocore.credentials
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

SKEW = 300  # seconds of clock skew tolerated on signed dates and JWT times


# ---------------------------------------------------------------------------------------
# Helpers


def b64url_decode(s):
    s = s.encode() if isinstance(s, str) else s
    return base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4))


def public_key_from(pem):
    """A public key from a PEM that holds either a public or a private key."""
    data = pem.encode()
    if b"PRIVATE KEY" in data:
        return serialization.load_pem_private_key(data, password=None).public_key()
    return serialization.load_pem_public_key(data)


class Reject(Exception):
    """Ends a request with this status, JSON body (or raw bytes) and verdict."""

    def __init__(self, status, body, verdict, headers=None):
        super().__init__(verdict)
        self.status, self.body, self.verdict = status, body, verdict
        self.headers = headers or {}


def verify_rs256(jwt, public_key):
    """The claims of an RS256 JWT signed by `public_key`, or a Reject (400)."""
    try:
        head_b64, claims_b64, sig_b64 = jwt.split(".")
        header = json.loads(b64url_decode(head_b64))
        claims = json.loads(b64url_decode(claims_b64))
        signature = b64url_decode(sig_b64)
    except (ValueError, binascii.Error):
        raise Reject(400, {"error": "invalid_grant", "error_description": "malformed JWT"}, "jwt-malformed")
    if header.get("alg") != "RS256":
        raise Reject(400, {"error": "invalid_grant", "error_description": "alg must be RS256"}, "jwt-alg")
    try:
        public_key.verify(
            signature, f"{head_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise Reject(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, "jwt-signature")
    return claims


def check_times(claims, max_lifetime):
    now = time.time()
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)):
        return "iat and exp required"
    if iat > now + SKEW:
        return "iat is in the future"
    if exp < now - SKEW:
        return "JWT expired"
    if exp - iat > max_lifetime + SKEW:
        return f"exp - iat exceeds {max_lifetime} s"
    return None


def rand(n, alphabet=string.ascii_letters + string.digits):
    return "".join(secrets.choice(alphabet) for _ in range(n))


def iso8601(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------
# AWS event stream (application/vnd.amazon.eventstream)


def eventstream_message(headers, payload):
    """One event-stream message: prelude, CRC, headers (all strings), payload, CRC."""
    encoded = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        encoded += bytes([len(n)]) + n + bytes([7]) + len(v).to_bytes(2, "big") + v
    total = 12 + len(encoded) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(encoded).to_bytes(4, "big")
    prelude += zlib.crc32(prelude).to_bytes(4, "big")
    message = prelude + encoded + payload
    return message + zlib.crc32(message).to_bytes(4, "big")


def bedrock_event(event_type, body):
    return eventstream_message(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(body).encode(),
    )


# ---------------------------------------------------------------------------------------
# SigV4


class _ReceivedSigner(botocore.auth.SigV4Auth):
    """botocore's SigV4 signer, signing exactly the headers the client listed."""

    def __init__(self, credentials, service, region, signed):
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request):
        header_map = botocore.awsrequest.HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                header_map[name] = value
        return header_map


class _ReceivedS3Signer(_ReceivedSigner):
    def _normalize_url_path(self, path):
        return path  # S3 does not normalize (or double-encode) the path


AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<sig>[0-9a-f]+)$"
)


def sigv4_error(s3, status, code, message, verdict):
    if s3:
        body = (
            f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>"
            f"<Message>{message}</Message><RequestId>FAKE</RequestId></Error>"
        ).encode()
        return Reject(status, body, verdict, {"Content-Type": "application/xml"})
    return Reject(status, {"message": message}, verdict, {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.coral.service/"})


def verify_sigv4(aws, method, host_header, path, headers, body, service, s3=False):
    """Checks the request's SigV4 signature against the REAL keys; raises Reject."""
    auth = headers.get("Authorization", "")
    m = AUTH_RE.match(auth.strip())
    if not m:
        raise sigv4_error(s3, 403, "MissingAuthenticationToken" if not s3 else "AccessDenied",
                          "Missing Authentication Token", "sigv4-missing")
    parts = m["cred"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise sigv4_error(s3, 403, "IncompleteSignatureException" if not s3 else "AuthorizationHeaderMalformed",
                          "Credential should be scoped correctly.", "sigv4-scope")
    akid, date, region, scope_service, _ = parts
    if akid != aws["access_key_id"]:
        raise sigv4_error(s3, 403, "UnrecognizedClientException" if not s3 else "InvalidAccessKeyId",
                          "The security token included in the request is invalid.", "sigv4-unknown-key")
    if scope_service != service:
        raise sigv4_error(s3, 403, "InvalidSignatureException" if not s3 else "SignatureDoesNotMatch",
                          f"Credential should be scoped to correct service: '{service}'.", "sigv4-service")
    amz_date = headers.get("X-Amz-Date", "")
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise sigv4_error(s3, 403, "IncompleteSignatureException" if not s3 else "AccessDenied",
                          "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
                          "sigv4-date")
    if abs(signed_at.timestamp() - time.time()) > SKEW or amz_date[:8] != date:
        raise sigv4_error(s3, 403, "InvalidSignatureException" if not s3 else "RequestTimeTooSkewed",
                          "Signature expired or not yet current.", "sigv4-skew")
    token = aws.get("session_token")
    signed = m["signed"].split(";")
    if token and (headers.get("X-Amz-Security-Token") != token or "x-amz-security-token" not in signed):
        raise sigv4_error(s3, 403, "UnrecognizedClientException" if not s3 else "InvalidToken",
                          "The security token included in the request is invalid.", "sigv4-session-token")
    if "host" not in signed:
        raise sigv4_error(s3, 403, "InvalidSignatureException" if not s3 else "AccessDenied",
                          "'Host' must be a signed header.", "sigv4-host-unsigned")

    request = botocore.awsrequest.AWSRequest(method=method, url=f"https://{host_header}{path}", data=body)
    for name, value in headers.items():
        request.headers[name] = value
    request.context["timestamp"] = amz_date
    creds = botocore.credentials.Credentials(aws["access_key_id"], aws["secret_access_key"], token)
    signer = (_ReceivedS3Signer if s3 else _ReceivedSigner)(creds, service, region, signed)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, m["sig"]):
        message = (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
        )
        raise sigv4_error(s3, 403, "InvalidSignatureException" if not s3 else "SignatureDoesNotMatch", message,
                          "sigv4-mismatch")
    return region


def decode_aws_chunked(body):
    """The payload of an aws-chunked body, and its trailers (a dict)."""
    data, trailers, i = b"", {}, 0
    while True:
        end = body.index(b"\r\n", i)
        size = int(body[i:end].split(b";")[0], 16)
        i = end + 2
        if size == 0:
            break
        data += body[i:i + size]
        i += size + 2
    for line in body[i:].split(b"\r\n"):
        if b":" in line:
            k, v = line.split(b":", 1)
            trailers[k.decode().strip().lower()] = v.decode().strip()
    return data, trailers


# ---------------------------------------------------------------------------------------
# State


class State:
    def __init__(self, config):
        self.config = config
        self.lock = threading.Lock()
        self.seen = []
        self.objects = {}  # (bucket, key) -> (bytes, content-type)
        self.google_tokens = {}  # token -> expires_at
        self.oauth_access = {}  # token -> {"number", "grant", "expires_at"}
        self.oauth_refresh = set()
        self.github_tokens = {}  # token -> expires_at
        self.stats = {"google_mints": 0, "oauth2_mints": 0, "oauth2_client_credentials": 0,
                      "oauth2_refreshes": 0, "github_mints": 0}
        oauth = config.get("oauth2") or {}
        for rt in [oauth["refresh_token"]] if oauth.get("refresh_token") else []:
            self.oauth_refresh.add(rt)
        google = config.get("google")
        if google:
            sa = google.get("service_account")
            if sa is None and google.get("service_account_file"):
                with open(google["service_account_file"]) as f:
                    sa = json.load(f)
            self.google_sa = sa
            self.google_key = public_key_from(sa["private_key"])
        github = config.get("github")
        if github:
            pem = github.get("app_public_key_pem") or github.get("app_private_key_pem")
            if pem is None and github.get("app_key_file"):
                with open(github["app_key_file"]) as f:
                    pem = f.read()
            self.github_key = public_key_from(pem)


# ---------------------------------------------------------------------------------------
# Handler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-cloud"
    sys_version = ""

    def log_message(self, *args):
        pass  # nothing on stderr: request lines may carry presigned signatures

    # -- plumbing -----------------------------------------------------------------------

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(self, status, body, headers=None):
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        else:
            data = body
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def record(self, status, verdict, **extra):
        entry = {
            "method": self.command,
            "host": self.headers.get("Host", ""),
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": len(self.body),
            "status": status,
            "verdict": verdict,
            "at": time.monotonic(),
            **extra,
        }
        with self.state.lock:
            self.state.seen.append(entry)
        return entry

    def handle_any(self):
        self.state = self.server.state
        self.body = self.read_body()
        host_header = self.headers.get("Host", "")
        host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        host = host.lower()
        path = urlsplit(self.path).path
        try:
            if path == "/__seen" and self.command == "GET":
                with self.state.lock:
                    data = list(self.state.seen)
                return self.send(200, data)
            if path == "/__stats" and self.command == "GET":
                with self.state.lock:
                    data = dict(self.state.stats)
                return self.send(200, data)
            if self.server.control:
                raise Reject(404, {"message": "the control port answers only /__seen and /__stats"}, "control")
            for phantom in self.state.config.get("phantoms", []):
                p = phantom.encode()
                if p in self.body or p in self.raw_head():
                    raise Reject(400, {"message": "a phantom credential reached the upstream"}, "phantom-leak")
            route = self.route(host)
            if route is None:
                raise Reject(404, {"message": f"fake_cloud: no route for host {host!r}"}, "no-route")
            status, body, headers, verdict, extra = route(host_header, host, path)
            entry = self.record(status, verdict, **extra)
            if callable(body):  # a streamed answer
                body(entry)
            else:
                self.send(status, body, headers)
        except Reject as r:
            self.record(r.status, r.verdict)
            self.send(r.status, r.body, r.headers)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as e:  # a bug in the fake: say so (the type only) instead of hanging up
            self.record(500, "fake-error", error=type(e).__name__)
            self.send(500, {"message": f"fake_cloud internal error: {type(e).__name__}"})

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = handle_any

    def raw_head(self):
        return (self.requestline + "\r\n" + str(self.headers)).encode()

    def route(self, host):
        cfg = self.state.config
        if re.fullmatch(r"bedrock-runtime(-fips)?\.[a-z0-9-]+\.amazonaws\.com", host):
            return self.bedrock
        if re.fullmatch(r"([a-z0-9.-]+\.)?s3[.-][a-z0-9-]+\.amazonaws\.com|([a-z0-9.-]+\.)?s3\.amazonaws\.com", host):
            return self.s3
        google = cfg.get("google") or {}
        if google and host == google.get("token_host", "oauth2.googleapis.com"):
            return self.google_token
        if google and re.fullmatch(r"([a-z0-9-]+-)?aiplatform\.googleapis\.com", host):
            return self.vertex
        oauth = cfg.get("oauth2") or {}
        if oauth and host == oauth.get("token_host", "auth.corp.test"):
            return self.oauth_token
        if oauth and host == oauth.get("api_host", "api.corp.test"):
            return self.oauth_api
        github = cfg.get("github") or {}
        if github and host == github.get("host", "api.github.test"):
            return self.github
        return None

    # -- Bedrock ------------------------------------------------------------------------

    def bedrock(self, host_header, host, path):
        aws = self.state.config.get("aws")
        if not aws:
            raise Reject(500, {"message": "fake_cloud: no aws in config"}, "no-config")
        m = re.fullmatch(r"/model/([^/]+)/(converse|converse-stream|invoke|invoke-with-response-stream)", path)
        if self.command != "POST" or not m:
            raise Reject(404, {"message": "Unknown operation"}, "no-route",
                         {"x-amzn-ErrorType": "UnknownOperationException:"})
        verify_sigv4(aws, self.command, host_header, self.path, self.headers, self.body, "bedrock")
        model, op = unquote(m[1]), m[2]
        try:
            req = json.loads(self.body or b"{}")
        except ValueError:
            raise Reject(400, {"message": "body is not JSON"}, "bad-body",
                         {"x-amzn-ErrorType": "ValidationException:"})
        bedrock = self.state.config.get("bedrock") or {}
        text = bedrock.get("text", "Hello from the fake Bedrock.")
        usage = {"inputTokens": 7, "outputTokens": 11, "totalTokens": 18}
        if op in ("converse", "invoke"):
            body = {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "end_turn",
                "usage": usage,
                "metrics": {"latencyMs": 12},
            }
            return 200, body, {"x-amzn-RequestId": rand(8)}, "ok", {"model": model, "messages": len(req.get("messages", []))}
        if op == "invoke-with-response-stream":
            raise Reject(400, {"message": "fake_cloud: use converse-stream"}, "unsupported",
                         {"x-amzn-ErrorType": "ValidationException:"})

        n = int(bedrock.get("stream_deltas", 5))
        delay = float(bedrock.get("stream_delay_ms", 200)) / 1000
        # n deltas that concatenate back to `text` (split at word boundaries when it has enough words)
        words = text.split(" ")
        if len(words) >= n:
            cuts = [round(i * len(words) / n) for i in range(n + 1)]
            chunks = [" ".join(words[cuts[i]:cuts[i + 1]]) + (" " if i < n - 1 else "") for i in range(n)]
        else:
            chunks = [text[round(i * len(text) / n):round((i + 1) * len(text) / n)] for i in range(n)]

        def stream(entry):
            sent = entry.setdefault("events_sent_at", [])
            events = [("messageStart", {"role": "assistant"})]
            events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": c}}) for c in chunks]
            events += [
                ("contentBlockStop", {"contentBlockIndex": 0}),
                ("messageStop", {"stopReason": "end_turn"}),
                ("metadata", {"usage": usage, "metrics": {"latencyMs": int(delay * 1000 * n)}}),
            ]
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.amazon.eventstream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("x-amzn-RequestId", rand(8))
            self.end_headers()
            self.wfile.flush()
            for i, (etype, payload) in enumerate(events):
                if etype == "contentBlockDelta" and i > 1:
                    time.sleep(delay)
                msg = bedrock_event(etype, payload)
                self.wfile.write(f"{len(msg):x}\r\n".encode() + msg + b"\r\n")
                self.wfile.flush()
                sent.append([etype, time.monotonic()])
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        return 200, stream, None, "ok", {"model": model, "stream": True}

    # -- S3 -----------------------------------------------------------------------------

    def s3(self, host_header, host, path):
        aws = self.state.config.get("aws")
        if not aws:
            raise Reject(500, b"no aws in config", "no-config")
        verify_sigv4(aws, self.command, host_header, self.path, self.headers, self.body, "s3", s3=True)
        bucket_m = re.match(r"(.+)\.s3[.-]", host)
        if bucket_m:
            bucket, key = bucket_m[1], unquote(path.lstrip("/"))
        else:
            bucket, _, key = unquote(path.lstrip("/")).partition("/")
        declared = self.headers.get("x-amz-content-sha256")
        if self.command == "PUT":
            if not declared:
                raise sigv4_error(True, 400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256", "s3-no-sha256")
            data = self.body
            if declared.startswith("STREAMING-"):
                if declared != "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
                    raise sigv4_error(True, 501, "NotImplemented", "fake_cloud: chunk-signed uploads are not supported", "s3-chunk-signed")
                data, trailers = decode_aws_chunked(self.body)
                crc = trailers.get("x-amz-checksum-crc32")
                if crc is not None and base64.b64decode(crc) != zlib.crc32(data).to_bytes(4, "big"):
                    raise sigv4_error(True, 400, "BadDigest", "The CRC32 you specified did not match the calculated checksum.", "s3-crc32")
            elif declared != "UNSIGNED-PAYLOAD" and declared != hashlib.sha256(data).hexdigest():
                raise sigv4_error(True, 400, "XAmzContentSHA256Mismatch",
                                  "The provided 'x-amz-content-sha256' header does not match what was computed.", "s3-sha256")
            with self.state.lock:
                self.state.objects[(bucket, key)] = (data, self.headers.get("Content-Type", "binary/octet-stream"))
            etag = '"%s"' % hashlib.md5(data).hexdigest()
            return 200, b"", {"ETag": etag}, "ok", {"bucket": bucket, "key": key, "payload_hash": declared, "stored_len": len(data)}
        if self.command in ("GET", "HEAD"):
            with self.state.lock:
                obj = self.state.objects.get((bucket, key))
            if obj is None:
                raise sigv4_error(True, 404, "NoSuchKey", "The specified key does not exist.", "s3-no-such-key")
            data, ctype = obj
            headers = {"ETag": '"%s"' % hashlib.md5(data).hexdigest(), "Content-Type": ctype,
                       "Last-Modified": "Sat, 05 Dec 2026 00:00:00 GMT"}
            return 200, data, headers, "ok", {"bucket": bucket, "key": key}
        raise sigv4_error(True, 405, "MethodNotAllowed", "The specified method is not allowed against this resource.", "s3-method")

    # -- Google -------------------------------------------------------------------------

    def google_token(self, host_header, host, path):
        google = self.state.config["google"]
        sa = self.state.google_sa
        if self.command != "POST" or path != "/token":
            raise Reject(404, {"error": "not_found"}, "no-route")
        form = {k: v[0] for k, v in parse_qs(self.body.decode(errors="replace")).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            raise Reject(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, "google-grant-type")
        claims = verify_rs256(form.get("assertion", ""), self.state.google_key)
        problem = None
        if claims.get("iss") != sa["client_email"]:
            problem = "iss is not the service account"
        elif claims.get("aud") != sa.get("token_uri", "https://oauth2.googleapis.com/token"):
            problem = "aud is not the token URI"
        elif google.get("scope", "https://www.googleapis.com/auth/cloud-platform") not in str(claims.get("scope", "")).split():
            problem = "scope missing"
        else:
            problem = check_times(claims, 3600)
        if problem:
            raise Reject(400, {"error": "invalid_grant", "error_description": problem}, "google-claims")
        token = "ya29.real-" + rand(40)
        expires_in = int(google.get("expires_in", 3599))
        with self.state.lock:
            self.state.google_tokens[token] = time.time() + expires_in
            self.state.stats["google_mints"] += 1
        return 200, {"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}, None, "ok", {}

    def vertex(self, host_header, host, path):
        m = re.fullmatch(r"/v1(?:beta1)?/projects/([^/]+)/locations/([^/]+)/publishers/([^/]+)/models/([^/:]+):(generateContent|streamGenerateContent|rawPredict|streamRawPredict)", path)
        if self.command != "POST" or not m:
            raise Reject(404, {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}, "no-route")
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        with self.state.lock:
            exp = self.state.google_tokens.get(token)
        if exp is None or exp < time.time():
            raise Reject(401, {"error": {
                "code": 401,
                "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                "status": "UNAUTHENTICATED"}}, "vertex-unauthenticated" if exp is None else "vertex-expired",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'})
        project, location, publisher, model, op = m.groups()
        text = (self.state.config.get("google") or {}).get("text", "Hello from the fake Vertex.")
        extra = {"project": project, "location": location, "model": model, "op": op}
        if op == "generateContent":
            return 200, {
                "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 12},
                "modelVersion": model,
            }, None, "ok", extra
        if op == "rawPredict":
            return 200, {
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 5, "output_tokens": 7},
            }, None, "ok", extra
        # streamGenerateContent / streamRawPredict: server-sent events
        if op == "streamRawPredict":
            events = [
                ("message_start", {"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
                ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 7}}),
                ("message_stop", {"type": "message_stop"}),
            ]
            data = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode()
        else:
            data = ("data: " + json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}]}) + "\n\n").encode()
        return 200, data, {"Content-Type": "text/event-stream"}, "ok", extra

    # -- generic OAuth2 -----------------------------------------------------------------

    def oauth_token(self, host_header, host, path):
        oauth = self.state.config["oauth2"]
        if self.command != "POST" or path != oauth.get("token_path", "/oauth/token"):
            raise Reject(404, {"error": "not_found"}, "no-route")
        form = {k: v[0] for k, v in parse_qs(self.body.decode(errors="replace")).items()}
        # Client authentication: HTTP Basic or client_id/client_secret in the form.
        basic_id = basic_secret = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                basic_id, _, basic_secret = base64.b64decode(auth[6:]).decode().partition(":")
                basic_id, basic_secret = unquote_plus(basic_id), unquote_plus(basic_secret)  # RFC 6749 §2.3.1
            except (ValueError, binascii.Error):
                raise Reject(401, {"error": "invalid_client"}, "oauth2-client")
        mode = oauth.get("client_auth", "any")  # basic | post | any
        if basic_id is not None and mode in ("basic", "any"):
            cid, csecret = basic_id, basic_secret
        elif "client_secret" in form and mode in ("post", "any"):
            cid, csecret = form.get("client_id"), form.get("client_secret")
        else:
            cid, csecret = form.get("client_id"), None
        grant = form.get("grant_type")
        authenticated = cid == oauth.get("client_id") and csecret is not None and hmac.compare_digest(
            csecret, oauth.get("client_secret", ""))
        if grant == "client_credentials":
            if not authenticated:
                raise Reject(401, {"error": "invalid_client", "error_description": "Client authentication failed"},
                             "oauth2-client", {"WWW-Authenticate": 'Basic realm="fake"'})
            return self.oauth_mint(oauth, "client_credentials", form, None)
        if grant == "refresh_token":
            if csecret is not None and not authenticated:
                raise Reject(401, {"error": "invalid_client", "error_description": "Client authentication failed"}, "oauth2-client")
            if oauth.get("refresh_requires_client_secret") and not authenticated:
                raise Reject(401, {"error": "invalid_client", "error_description": "Client authentication required"}, "oauth2-client")
            if cid is not None and cid != oauth.get("client_id"):
                raise Reject(401, {"error": "invalid_client", "error_description": "unknown client"}, "oauth2-client")
            rt = form.get("refresh_token", "")
            with self.state.lock:
                live = rt in self.state.oauth_refresh
                if live and oauth.get("rotate_refresh_tokens", True):
                    self.state.oauth_refresh.discard(rt)
            if not live:
                raise Reject(400, {"error": "invalid_grant", "error_description": "refresh token is invalid, expired or already used"}, "oauth2-refresh-invalid")
            return self.oauth_mint(oauth, "refresh_token", form, rt)
        raise Reject(400, {"error": "unsupported_grant_type"}, "oauth2-grant-type")

    def oauth_mint(self, oauth, grant, form, used_rt):
        expires_in = int(oauth.get("expires_in", 3600))
        with self.state.lock:
            self.state.stats["oauth2_mints"] += 1
            self.state.stats["oauth2_client_credentials" if grant == "client_credentials" else "oauth2_refreshes"] += 1
            number = self.state.stats["oauth2_mints"]
            token = f"at-real-{number}-{rand(24)}"
            self.state.oauth_access[token] = {"number": number, "grant": grant, "expires_at": time.time() + expires_in}
            body = {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}
            if grant == "refresh_token" and oauth.get("rotate_refresh_tokens", True):
                new_rt = f"rt-real-{number}-{rand(24)}"
                self.state.oauth_refresh.add(new_rt)
                body["refresh_token"] = new_rt
        if form.get("scope"):
            body["scope"] = form["scope"]
        elif oauth.get("scope"):
            body["scope"] = oauth["scope"]
        return 200, body, {"Cache-Control": "no-store"}, "ok", {"grant": grant, "token_number": number}

    def oauth_api(self, host_header, host, path):
        oauth = self.state.config["oauth2"]
        if path != oauth.get("api_path", "/whoami"):
            raise Reject(404, {"error": "not_found"}, "no-route")
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        with self.state.lock:
            info = self.state.oauth_access.get(token)
        if info is None or info["expires_at"] < time.time():
            why = "unknown token" if info is None else "token expired"
            raise Reject(401, {"error": "invalid_token", "error_description": why},
                         "oauth2-api-unknown" if info is None else "oauth2-api-expired",
                         {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{why}"'})
        return 200, {"token_number": info["number"], "grant": info["grant"], "client_id": oauth.get("client_id")}, None, "ok", {"token_number": info["number"]}

    # -- GitHub -------------------------------------------------------------------------

    def github(self, host_header, host, path):
        github = self.state.config["github"]
        gh_401 = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}
        auth = self.headers.get("Authorization", "")
        prefix = github.get("path_prefix", "").rstrip("/")  # e.g. /api/v3 for GitHub Enterprise Server
        if not path.startswith(prefix + "/"):
            raise Reject(404, {"message": "Not Found", "status": "404"}, "no-route")
        path = path[len(prefix):]
        m = re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)
        if m and self.command == "POST":
            if not auth.startswith("Bearer "):
                raise Reject(401, {"message": "A JSON web token could not be decoded", "status": "401"}, "github-no-jwt")
            try:
                claims = verify_rs256(auth[7:], self.state.github_key)
            except Reject:
                raise Reject(401, {"message": "A JSON web token could not be decoded", "status": "401"}, "github-jwt-signature")
            problem = check_times(claims, 600)
            if str(claims.get("iss")) != str(github["app_id"]):
                problem = "'Issuer' claim ('iss') must be the App's id"
            if problem:
                raise Reject(401, {"message": problem, "status": "401"}, "github-jwt-claims")
            if m[1] != str(github["installation_id"]):
                raise Reject(404, {"message": "Not Found", "status": "404"}, "github-installation")
            expires_in = int(github.get("expires_in", 3600))
            token = "ghs_" + rand(36)
            expires_at = time.time() + expires_in
            with self.state.lock:
                self.state.github_tokens[token] = expires_at
                self.state.stats["github_mints"] += 1
            return 201, {"token": token, "expires_at": iso8601(expires_at),
                         "permissions": {"contents": "read", "metadata": "read"},
                         "repository_selection": "all"}, None, "ok", {}
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)", path)
        if m and self.command == "GET":
            token = None
            for scheme in ("token ", "Bearer ", "bearer "):
                if auth.startswith(scheme):
                    token = auth[len(scheme):]
            with self.state.lock:
                exp = self.state.github_tokens.get(token)
            if exp is None or exp < time.time():
                raise Reject(401, gh_401, "github-unknown-token" if exp is None else "github-expired")
            owner, repo = m.groups()
            return 200, {"id": 1296269, "name": repo, "full_name": f"{owner}/{repo}", "private": True,
                         "owner": {"login": owner}}, None, "ok", {}
        raise Reject(404, {"message": "Not Found", "status": "404"}, "no-route")


# ---------------------------------------------------------------------------------------
# Server


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ctx, state):
        super().__init__(("127.0.0.1", 0), Handler)
        self.ctx, self.state = ctx, state
        self.control = ctx is None  # plain HTTP, /__seen and /__stats only

    def finish_request(self, request, client_address):
        if self.control:
            return self.RequestHandlerClass(request, client_address, self)
        # The TLS handshake runs on the connection's own thread, not the accept loop.
        try:
            conn = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.RequestHandlerClass(conn, client_address, self)

    def handle_error(self, request, client_address):
        pass  # a client that hangs up mid-request is not news


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cert", required=True, help="leaf certificate chain (PEM) for every fake host name")
    ap.add_argument("--key", required=True, help="its private key (PEM)")
    ap.add_argument("--config", required=True, help="CONFIG.json (tests/support/FAKE_CLOUD.md)")
    args = ap.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])
    state = State(config)
    server = Server(ctx, state)
    control = Server(None, state)
    threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    print(json.dumps({"port": server.server_address[1], "control_port": control.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
