"""Checks tests/support/fake_cloud.py and the issue-15 clients on their own, without keygate.

    tests/clients/.venv/bin/python tests/support/fake_cloud_selftest.py [-v]

Mints a throwaway CA and a leaf for every fake host name, REAL credentials (AWS keys, a
Google service account, a GitHub App key), starts fake_cloud.py, and a tiny CONNECT proxy
on 127.0.0.1 that sends every tunnel to the fake (the stand-in for keygate: clients are
pointed at it with HTTPS_PROXY, exactly as they will be at keygate). Then it drives the
real clients (tests/clients/bedrock.py, tests/clients/vertex.py) and plain requests with
the REAL credentials, and checks each flow and each refusal. Nothing leaves 127.0.0.1.
Exits 0 when every check passed, 1 otherwise.
"""

import base64
import datetime
import json
import os
import select
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.join(HERE, "..", "clients")
PY = sys.executable
VERBOSE = "-v" in sys.argv

# Every host name the fake answers for in this test (the leaf's SANs).
HOSTS = [
    "bedrock-runtime.us-east-1.amazonaws.com",
    "s3.us-east-1.amazonaws.com",
    "*.s3.us-east-1.amazonaws.com",
    "s3.amazonaws.com",  # boto3's S3 endpoint in us-east-1 is the global one
    "*.s3.amazonaws.com",
    "oauth2.googleapis.com",
    "aiplatform.googleapis.com",
    "us-central1-aiplatform.googleapis.com",
    "auth.corp.test",
    "api.corp.test",
    "api.github.test",
]

REAL_AWS = {"access_key_id": "AKIAREALKEYFORTESTS1", "secret_access_key": "rEaLsEcReT/abcdefghijklmnopqrstuvwxyz0123"}
PHANTOM_SECRET = "kgPhantomSecretThatMustNeverReachUpstream0"

failures = []


def check(name, cond, detail=""):
    if cond:
        print(f"ok    {name}")
    else:
        print(f"FAIL  {name} {detail}")
        failures.append(name)


# ---------------------------------------------------------------------------------------
# Throwaway PKI and credentials


def pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def mint_pki(d):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake_cloud selftest root")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake cloud")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {n: os.path.join(d, n) for n in ("ca.pem", "leaf.pem", "leaf.key")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["leaf.pem"], "wb") as f:
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(paths["leaf.key"], "w") as f:
        f.write(pem_key(leaf_key))
    return paths


def service_account(email):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, {
        "type": "service_account", "project_id": "keygate-test", "private_key_id": "0123456789abcdef",
        "private_key": pem_key(key), "client_email": email, "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    }


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def rs256(claims, key):
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(sig)}"


# ---------------------------------------------------------------------------------------
# A CONNECT proxy that tunnels everything to the fake (keygate's stand-in)


def connect_proxy(fake_port):
    class Tunnel(socketserver.BaseRequestHandler):
        def handle(self):
            self.server.tunnels += 1
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                head += chunk
            if not head.startswith(b"CONNECT "):
                self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            up = socket.create_connection(("127.0.0.1", fake_port))  # never anywhere else
            self.request.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                up.sendall(rest)
            socks = [self.request, up]
            try:
                while True:
                    ready, _, _ = select.select(socks, [], [], 60)
                    if not ready:
                        return
                    for s in ready:
                        data = s.recv(65536)
                        if not data:
                            return
                        (up if s is self.request else self.request).sendall(data)
            except OSError:
                return
            finally:
                up.close()

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), Tunnel)
    server.tunnels = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------


def start_fake(pki, config_file):
    return subprocess.Popen(
        [PY, os.path.join(HERE, "fake_cloud.py"), "--cert", pki["leaf.pem"], "--key", pki["leaf.key"],
         "--config", config_file],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sigv4_by_hand(method, host, path, headers, body, akid, secret, region, service):
    """A minimal independent SigV4 (not botocore's), signing every header given (lower-case
    names) plus host and x-amz-date: the fake must accept any signed-header set."""
    import hashlib
    import hmac
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    headers = dict(headers, host=host, **{"x-amz-date": amz_date})
    names = sorted(headers)
    canonical = "\n".join([method, path, "", *(f"{n}:{' '.join(str(headers[n]).split())}" for n in names), "",
                           ";".join(names), hashlib.sha256(body).hexdigest()])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders={';'.join(names)}, Signature={sig}"
    return headers


def run_client(args, env, timeout=60):
    p = subprocess.run([PY, *args], env=env, capture_output=True, text=True, timeout=timeout)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    if VERBOSE or (p.returncode != 0 and p.stderr):
        sys.stderr.write(f"--- {' '.join(args[:2])} rc={p.returncode}\n{p.stdout}{p.stderr[-3000:]}\n")
    return p.returncode, lines


def main():
    tmp = tempfile.TemporaryDirectory(prefix="fake-cloud-selftest-")
    d = tmp.name
    pki = mint_pki(d)
    sa_key, sa = service_account("agent@keygate-test.iam.gserviceaccount.com")
    sa_file = os.path.join(d, "sa.json")
    with open(sa_file, "w") as f:
        json.dump(sa, f)
    gh_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    config = {
        "phantoms": [PHANTOM_SECRET],
        "aws": REAL_AWS,
        "bedrock": {"stream_deltas": 5, "stream_delay_ms": 250, "text": "one two three four five six seven"},
        "google": {"service_account_file": sa_file, "expires_in": 3599},
        "oauth2": {
            "token_host": "auth.corp.test", "token_path": "/oauth/token",
            "api_host": "api.corp.test", "api_path": "/whoami",
            "client_id": "keygate-client", "client_secret": "real-client-secret",
            "client_auth": "any", "refresh_token": "rt-real-initial", "expires_in": 2,
        },
        "github": {"host": "api.github.test", "app_id": 424242, "installation_id": 99,
                   "app_public_key_pem": gh_key.public_key().public_bytes(
                       serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
                   "expires_in": 3600},
    }
    config_file = os.path.join(d, "config.json")
    with open(config_file, "w") as f:
        json.dump(config, f)

    fake = start_fake(pki, config_file)
    fakes = [fake]
    try:
        ready = json.loads(fake.stdout.readline())
        port, control = ready["port"], ready.get("control_port")
        check("fake_cloud prints {\"port\": N, \"control_port\": M} when ready",
              isinstance(port, int) and isinstance(control, int), ready)
        proxy = connect_proxy(port)
        proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"

        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "GOOGLE_")) and k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "requests_ca_bundle", "ssl_cert_file", "curl_ca_bundle")}
        env.update({
            "HTTPS_PROXY": proxy_url, "NO_PROXY": "",
            "AWS_CA_BUNDLE": pki["ca.pem"], "REQUESTS_CA_BUNDLE": pki["ca.pem"],
            "AWS_ACCESS_KEY_ID": REAL_AWS["access_key_id"], "AWS_SECRET_ACCESS_KEY": REAL_AWS["secret_access_key"],
            "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "GOOGLE_APPLICATION_CREDENTIALS": sa_file,
        })
        bedrock = os.path.join(CLIENTS, "bedrock.py")
        vertex = os.path.join(CLIENTS, "vertex.py")
        s = requests.Session()
        s.trust_env = False
        s.proxies = {"https": proxy_url}
        s.verify = pki["ca.pem"]

        plain = requests.Session()
        plain.trust_env = False

        def seen():
            return plain.get(f"http://127.0.0.1:{control}/__seen", timeout=10).json()

        def stats():
            return plain.get(f"http://127.0.0.1:{control}/__stats", timeout=10).json()

        # --- Bedrock --------------------------------------------------------------------
        rc, out = run_client([bedrock, "converse"], env)
        check("bedrock converse with the real keys", rc == 0 and out[-1].get("text") == config["bedrock"]["text"], out)
        check("boto3 went through the CONNECT proxy (HTTPS_PROXY honoured)", proxy.tunnels >= 1, proxy.tunnels)

        rc, out = run_client([bedrock, "converse-stream"], env)
        events = [o for o in out if "event" in o]
        names = [e["event"] for e in events]
        check("bedrock converse_stream events", rc == 0 and names == ["messageStart"] + ["contentBlockDelta"] * 5
              + ["contentBlockStop", "messageStop", "metadata"], names)
        check("bedrock converse_stream text", out and out[-1].get("text") == config["bedrock"]["text"], out[-1:])
        stream_entry = [e for e in seen() if e.get("stream")][-1]
        sent = [t for (name, t) in stream_entry.get("events_sent_at", []) if name == "contentBlockDelta"]
        deltas = [e["t"] for e in events if e["event"] == "contentBlockDelta"]
        check("bedrock converse_stream streams (first delta seen before the last was sent)",
              len(sent) == 5 and len(deltas) == 5 and deltas[0] < sent[-1] and deltas[-1] - deltas[0] > 0.5,
              (deltas, sent))

        body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
        path = "/model/anthropic.claude-x%3A0/converse"  # a double-encoded canonical path for non-S3 services
        hand = sigv4_by_hand("POST", "bedrock-runtime.us-east-1.amazonaws.com", "/model/anthropic.claude-x%253A0/converse",
                             {"content-type": "application/json", "content-length": str(len(body)), "user-agent": "keygate/test"},
                             body, REAL_AWS["access_key_id"], REAL_AWS["secret_access_key"], "us-east-1", "bedrock")
        r = s.post(f"https://bedrock-runtime.us-east-1.amazonaws.com{path}", data=body, headers=hand, timeout=10)
        check("bedrock accepts another signer's SigV4 (user-agent and content-length signed)", r.status_code == 200, r.text)
        hand["user-agent"] = "tampered"
        r = s.post(f"https://bedrock-runtime.us-east-1.amazonaws.com{path}", data=body, headers=hand, timeout=10)
        check("… and refuses it once a signed header changed", r.status_code == 403 and seen()[-1]["verdict"] == "sigv4-mismatch", r.text)

        bad = dict(env, AWS_SECRET_ACCESS_KEY=PHANTOM_SECRET[::-1])
        rc, out = run_client([bedrock, "converse"], bad)
        check("bedrock: a wrong secret is 403 InvalidSignatureException",
              rc == 1 and out[-1].get("status") == 403 and out[-1].get("error") == "InvalidSignatureException"
              and "signature we calculated does not match" in out[-1].get("message", ""), out)
        rc, out = run_client([bedrock, "converse"], dict(env, AWS_ACCESS_KEY_ID="AKIAPHANTOMKEY000000"))
        check("bedrock: an unknown access key id is 403 UnrecognizedClientException",
              rc == 1 and out[-1].get("status") == 403 and out[-1].get("error") == "UnrecognizedClientException", out)
        rc, out = run_client([bedrock, "converse"], dict(env, AWS_SECRET_ACCESS_KEY=PHANTOM_SECRET))
        check("bedrock: signed with the phantom secret is 403 sigv4-mismatch",
              rc == 1 and seen()[-1]["verdict"] == "sigv4-mismatch", seen()[-1]["verdict"])
        # (A SigV4 request never carries its secret; check the leak detector with a body.)
        r = s.post("https://api.corp.test/whoami", data=f"x={PHANTOM_SECRET}", timeout=10)
        check("phantom in a body → 400 phantom-leak", r.status_code == 400 and seen()[-1]["verdict"] == "phantom-leak", r.text)

        # --- S3 ---------------------------------------------------------------------------
        rc, out = run_client([bedrock, "s3", "keygate-bucket", "dir/hello.txt"], env)
        check("s3 put/get with x-amz-content-sha256 (virtual host)", rc == 0 and len(out) == 2 and out[1].get("same"), out)
        put = [e for e in seen() if e["method"] == "PUT"][-1]
        check("s3 put carried the body's sha256", put["verdict"] == "ok" and len(put.get("payload_hash", "")) == 64
              and put["host"].startswith("keygate-bucket.s3."), put)
        rc, out = run_client([bedrock, "s3", "keygate-bucket", "a b+c.txt", "--path-style"], env)
        check("s3 put/get (path style, key needing encoding)", rc == 0 and out[-1].get("same"), out)
        rc, out = run_client([bedrock, "s3", "keygate-bucket", "trailer.txt", "--payload", "default"], env)
        put = [e for e in seen() if e["method"] == "PUT"][-1]
        check("s3 put/get with boto3's default payload (aws-chunked + CRC32 trailer)",
              rc == 0 and out[-1].get("same") and put.get("payload_hash") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
              (out, put.get("payload_hash")))
        r = s.put("https://keygate-bucket.s3.us-east-1.amazonaws.com/x", data=b"x", timeout=10)
        check("s3 without a signature is 403", r.status_code == 403 and b"AccessDenied" in r.content, r.text)

        # --- Google / Vertex ------------------------------------------------------------
        rc, out = run_client([vertex, "--calls", "2"], env)
        calls = [o for o in out if "call" in o]
        token = out[-1].get("access_token", "") if out else ""
        check("google-auth: token exchange then two generateContent calls",
              rc == 0 and len(calls) == 2 and all(c["status"] == 200 for c in calls)
              and calls[0]["response"]["candidates"][0]["content"]["parts"][0]["text"], out)
        check("google-auth holds the access token the fake issued", token.startswith("ya29.real-"), token[:12])
        vertex_hosts = {e["host"] for e in seen() if e.get("op") == "generateContent" or e["path"] == "/token"}
        check("google-auth went through the proxy to both hosts",
              vertex_hosts == {"oauth2.googleapis.com", "us-central1-aiplatform.googleapis.com"}, vertex_hosts)
        counts = stats()
        check("one token minted for two calls", counts["google_mints"] == 1, counts)
        rc, out = run_client([vertex, "--op", "rawPredict", "--location", "global"], env)
        check("vertex anthropic rawPredict (global host)", rc == 0 and out[0]["response"].get("type") == "message", out)
        r = s.post("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/publishers/google/models/m:generateContent",
                   json={}, headers={"Authorization": "Bearer ya29.not-issued"}, timeout=10)
        check("vertex with a token not issued is 401", r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED", r.text)
        other_key, other_sa = service_account(sa["client_email"])
        other_file = os.path.join(d, "other-sa.json")
        with open(other_file, "w") as f:
            json.dump(other_sa, f)
        rc, out = run_client([vertex], dict(env, GOOGLE_APPLICATION_CREDENTIALS=other_file))
        check("a JWT signed by another key is refused at the token endpoint",
              rc == 1 and out[-1].get("error") == "RefreshError" and "invalid_grant" in out[-1].get("message", ""), out)
        now = int(time.time())
        jwt = rs256({"iss": sa["client_email"], "aud": sa["token_uri"], "scope": "https://www.googleapis.com/auth/cloud-platform",
                     "iat": now - 4000, "exp": now - 400}, sa_key)
        r = s.post("https://oauth2.googleapis.com/token", timeout=10,
                   data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": jwt})
        check("an expired JWT is refused", r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text)

        # --- generic OAuth2 -----------------------------------------------------------------
        tok = "https://auth.corp.test/oauth/token"
        api = "https://api.corp.test/whoami"
        r = s.post(tok, data={"grant_type": "client_credentials"}, auth=("keygate-client", "real-client-secret"), timeout=10)
        check("oauth2 client_credentials (Basic)", r.status_code == 200 and r.json()["expires_in"] == 2, r.text)
        at1 = r.json()["access_token"]
        r = s.post(tok, data={"grant_type": "client_credentials", "client_id": "keygate-client",
                              "client_secret": "real-client-secret"}, timeout=10)
        check("oauth2 client_credentials (in the form)", r.status_code == 200, r.text)
        at2 = r.json()["access_token"]
        r = s.post(tok, data={"grant_type": "client_credentials"}, auth=("keygate-client", "phantom"), timeout=10)
        check("oauth2 wrong client secret is 401 invalid_client", r.status_code == 401 and r.json()["error"] == "invalid_client", r.text)
        r = s.get(api, headers={"Authorization": f"Bearer {at2}"}, timeout=10)
        check("protected API answers the token number", r.status_code == 200 and r.json()["token_number"] == 2, r.text)
        r = s.get(api, headers={"Authorization": "Bearer at-phantom"}, timeout=10)
        check("protected API refuses an unknown token", r.status_code == 401, r.text)
        r1 = s.post(tok, data={"grant_type": "refresh_token", "refresh_token": "rt-real-initial",
                               "client_id": "keygate-client"}, timeout=10)
        rt1 = r1.json().get("refresh_token", "")
        check("oauth2 refresh_token grant rotates the refresh token", r1.status_code == 200 and rt1.startswith("rt-real-"), r1.text)
        r = s.post(tok, data={"grant_type": "refresh_token", "refresh_token": "rt-real-initial"}, timeout=10)
        check("oauth2 an old refresh token is 400 invalid_grant", r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text)
        r2 = s.post(tok, data={"grant_type": "refresh_token", "refresh_token": rt1}, timeout=10)
        check("oauth2 the rotated refresh token works once", r2.status_code == 200 and r2.json()["refresh_token"] != rt1, r2.text)
        at4 = r2.json()["access_token"]
        check("protected API with the refreshed token",
              s.get(api, headers={"Authorization": f"Bearer {at4}"}, timeout=10).json().get("grant") == "refresh_token")
        time.sleep(2.3)
        r = s.get(api, headers={"Authorization": f"Bearer {at1}"}, timeout=10)
        check("oauth2 an expired access token is 401 (expires_in 2)", r.status_code == 401 and "expired" in r.text, r.text)
        counts = stats()
        check("oauth2 mint counters", counts["oauth2_mints"] == 4 and counts["oauth2_client_credentials"] == 2
              and counts["oauth2_refreshes"] == 2, counts)

        # --- GitHub App ---------------------------------------------------------------------
        gh = "https://api.github.test"
        now = int(time.time())
        app_jwt = rs256({"iss": "424242", "iat": now - 60, "exp": now + 540}, gh_key)
        r = s.post(f"{gh}/app/installations/99/access_tokens", headers={"Authorization": f"Bearer {app_jwt}",
                                                                         "Accept": "application/vnd.github+json"}, timeout=10)
        ghs = r.json().get("token", "") if r.status_code == 201 else ""
        check("github installation token (201, ghs_ + 36)", r.status_code == 201 and ghs.startswith("ghs_") and len(ghs) == 40
              and r.json()["expires_at"].endswith("Z"), r.text)
        r = s.get(f"{gh}/repos/octo/hello", headers={"Authorization": f"token {ghs}"}, timeout=10)
        check("github repo with the installation token", r.status_code == 200 and r.json()["full_name"] == "octo/hello", r.text)
        r = s.get(f"{gh}/repos/octo/hello", headers={"Authorization": f"Bearer {ghs}"}, timeout=10)
        check("github repo with Bearer", r.status_code == 200, r.text)
        r = s.get(f"{gh}/repos/octo/hello", headers={"Authorization": "token ghs_" + "x" * 36}, timeout=10)
        check("github repo with a token not issued is 401", r.status_code == 401 and r.json()["message"] == "Bad credentials", r.text)
        wrong = rs256({"iss": 1, "iat": now - 60, "exp": now + 540}, gh_key)
        r = s.post(f"{gh}/app/installations/99/access_tokens", headers={"Authorization": f"Bearer {wrong}"}, timeout=10)
        check("github JWT with the wrong iss is 401", r.status_code == 401, r.text)
        forged = rs256({"iss": 424242, "iat": now - 60, "exp": now + 540}, sa_key)
        r = s.post(f"{gh}/app/installations/99/access_tokens", headers={"Authorization": f"Bearer {forged}"}, timeout=10)
        check("github JWT signed by another key is 401", r.status_code == 401, r.text)
        long = rs256({"iss": 424242, "iat": now - 60, "exp": now + 3600}, gh_key)
        r = s.post(f"{gh}/app/installations/99/access_tokens", headers={"Authorization": f"Bearer {long}"}, timeout=10)
        check("github JWT living over 10 minutes is 401", r.status_code == 401, r.text)
        r = s.post(f"{gh}/app/installations/7/access_tokens", headers={"Authorization": f"Bearer {app_jwt}"}, timeout=10)
        check("github another installation is 404", r.status_code == 404, r.text)

        # --- the record -----------------------------------------------------------------------
        log = seen()
        check("/__seen records method, host, path, headers, body length, status and verdict",
              all({"method", "host", "path", "headers", "body_len", "status", "verdict"} <= set(e) for e in log)
              and any(e["verdict"] == "sigv4-mismatch" for e in log), len(log))
        r = s.get("https://api.corp.test/x", headers={"Host": "nowhere.test"}, timeout=10)
        check("an unknown host is 404 no-route", r.status_code == 404 and seen()[-1]["verdict"] == "no-route")
        check("/__seen over TLS on any host too", len(s.get("https://api.github.test/__seen", timeout=10).json()) == len(seen()))
        check("the control port answers nothing else", plain.get(f"http://127.0.0.1:{control}/whoami", timeout=10).status_code == 404)

        # --- temporary AWS credentials (a session token) on a second fake --------------------
        token = "FwoGZXIvYXdzEXAMPLE//real/session+token="
        config2 = dict(config, aws=dict(REAL_AWS, session_token=token))
        config2_file = os.path.join(d, "config2.json")
        with open(config2_file, "w") as f:
            json.dump(config2, f)
        fake2 = start_fake(pki, config2_file)
        fakes.append(fake2)
        proxy2 = connect_proxy(json.loads(fake2.stdout.readline())["port"])
        env2 = dict(env, HTTPS_PROXY=f"http://127.0.0.1:{proxy2.server_address[1]}", AWS_SESSION_TOKEN=token)
        rc, out = run_client([bedrock, "converse"], env2)
        check("bedrock with a session token", rc == 0 and out[-1].get("ok"), out)
        rc, out = run_client([bedrock, "converse"], dict(env2, AWS_SESSION_TOKEN=token + "x"))
        check("bedrock with the wrong session token is 403", rc == 1 and out[-1].get("status") == 403, out)
        rc, out = run_client([bedrock, "converse"], dict(env2, AWS_SESSION_TOKEN=""))
        check("bedrock without the session token is 403", rc == 1 and out[-1].get("status") == 403, out)
    finally:
        rest_out = rest_err = ""
        for p in fakes:
            p.terminate()
            try:
                o, e = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                o, e = p.communicate()
            rest_out, rest_err = rest_out + o, rest_err + e
    check("fake_cloud printed nothing but the ready line", rest_out == "" and rest_err == "", (rest_out[:300], rest_err[:300]))
    for secret in (REAL_AWS["secret_access_key"], "real-client-secret", "ya29.real-", "ghs_", "at-real-", "rt-real-"):
        if secret in rest_out + rest_err:
            check(f"no credential on fake_cloud's output ({secret[:6]}…)", False)
    print(f"\n{'FAILED: ' + ', '.join(failures) if failures else 'all checks passed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
