"""google-auth against Vertex AI, for the issue-15 tests (tests/support/FAKE_CLOUD.md).

    python vertex.py [--project P] [--location L] [--model M] [--op generateContent|rawPredict] [--calls N]

Loads the service account named by GOOGLE_APPLICATION_CREDENTIALS with
`service_account.Credentials.from_service_account_file` and the cloud-platform scope, then
POSTs to https://{L}-aiplatform.googleapis.com/v1/projects/{P}/locations/{L}/publishers/
{google|anthropic}/models/{M}:{op} with an `AuthorizedSession` (which first exchanges a
signed JWT at the file's token_uri). Proxy and CA come from the environment as requests
reads them: HTTPS_PROXY, REQUESTS_CA_BUNDLE.

Output, one JSON object a line on stdout: per call {"call": i, "status": N, "response": {...}},
then {"access_token": ..., "expiry": ISO8601} — the token the library holds (through
keygate, a phantom: never the real one). Exits 1 if any call was not 2xx.
"""

import argparse
import json
import os
import sys

import google.auth.exceptions
import google.auth.transport.requests
from google.oauth2 import service_account

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def main():
    ap = argparse.ArgumentParser(description="google-auth Vertex AI client for keygate's tests")
    ap.add_argument("--project", default="keygate-test")
    ap.add_argument("--location", default="us-central1")
    ap.add_argument("--model", default=None)
    ap.add_argument("--op", choices=["generateContent", "rawPredict"], default="generateContent")
    ap.add_argument("--prompt", default="Say hello.")
    ap.add_argument("--calls", type=int, default=1)
    args = ap.parse_args()

    creds = service_account.Credentials.from_service_account_file(
        os.environ["GOOGLE_APPLICATION_CREDENTIALS"], scopes=[SCOPE]
    )
    session = google.auth.transport.requests.AuthorizedSession(creds)
    host = "aiplatform.googleapis.com" if args.location == "global" else f"{args.location}-aiplatform.googleapis.com"
    if args.op == "generateContent":
        publisher, model = "google", args.model or "gemini-2.5-flash"
        body = {"contents": [{"role": "user", "parts": [{"text": args.prompt}]}]}
    else:
        publisher, model = "anthropic", args.model or "claude-sonnet-4-5@20250929"
        body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 64,
                "messages": [{"role": "user", "content": args.prompt}]}
    url = (f"https://{host}/v1/projects/{args.project}/locations/{args.location}"
           f"/publishers/{publisher}/models/{model}:{args.op}")
    ok = True
    for i in range(args.calls):
        try:
            r = session.post(url, json=body, timeout=30)
        except google.auth.exceptions.RefreshError as e:
            # The token exchange failed (through keygate: its 502 and reason, as google-auth words it).
            print(json.dumps({"call": i, "ok": False, "error": "RefreshError", "message": str(e)}), flush=True)
            sys.exit(1)
        try:
            response = r.json()
        except ValueError:
            response = r.text
        print(json.dumps({"call": i, "status": r.status_code, "response": response}), flush=True)
        ok = ok and 200 <= r.status_code < 300
    print(json.dumps({"access_token": creds.token,
                      "expiry": creds.expiry.isoformat() + "Z" if creds.expiry else None}), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
