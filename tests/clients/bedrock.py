"""boto3 against Amazon Bedrock runtime and S3, for the issue-15 tests (tests/support/FAKE_CLOUD.md).

    python bedrock.py converse        [--model M] [--prompt TEXT]
    python bedrock.py converse-stream [--model M] [--prompt TEXT]
    python bedrock.py s3 BUCKET KEY   [--body TEXT] [--payload signed|default] [--path-style]

Common options: --region (default: AWS_REGION / AWS_DEFAULT_REGION / us-east-1) and
--endpoint-url (default: boto3's own, i.e. https://bedrock-runtime.REGION.amazonaws.com;
AWS_ENDPOINT_URL* are honoured too). Credentials, proxy and CA come from the environment
as boto3 reads them: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
HTTPS_PROXY, AWS_CA_BUNDLE. No retries, so a refusal shows as it is.

Output, one JSON object a line on stdout:
  converse         {"ok": true, "text": ..., "stopReason": ..., "usage": {...}}
  converse-stream  {"t": MONOTONIC, "event": "contentBlockDelta", "data": {...}} per event,
                   printed as it arrives (t is time.monotonic(), comparable with the fake's
                   `events_sent_at` on the same host), then {"ok": true, "text": ...}
  s3               {"op": "put", "ok": true, "etag": ...} then {"op": "get", "ok": true,
                   "body": ..., "same": true}; `--payload signed` (the default) sends the
                   body's SHA-256 in x-amz-content-sha256, `default` is boto3's own choice
                   (an aws-chunked body with a CRC32 trailer over HTTPS).
An AWS error prints {"ok": false, "error": CODE, "status": N, "message": ...} and exits 1.
"""

import argparse
import json
import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def out(obj):
    print(json.dumps(obj), flush=True)


def fail(e):
    err = e.response.get("Error", {})
    out({"ok": False, "error": err.get("Code"), "status": e.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
         "message": err.get("Message")})
    sys.exit(1)


def client(args, service, **config):
    cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=30, **config)
    kwargs = {"region_name": args.region, "config": cfg}
    if args.endpoint_url:
        kwargs["endpoint_url"] = args.endpoint_url
    return boto3.client(service, **kwargs)


def converse(args):
    c = client(args, "bedrock-runtime")
    messages = [{"role": "user", "content": [{"text": args.prompt}]}]
    try:
        if args.mode == "converse":
            r = c.converse(modelId=args.model, messages=messages)
            text = "".join(b.get("text", "") for b in r["output"]["message"]["content"])
            out({"ok": True, "text": text, "stopReason": r["stopReason"], "usage": r["usage"]})
            return
        r = c.converse_stream(modelId=args.model, messages=messages)
        text = ""
        for event in r["stream"]:
            (name, data), = event.items()
            out({"t": time.monotonic(), "event": name, "data": data})
            if name == "contentBlockDelta":
                text += data["delta"].get("text", "")
        out({"ok": True, "text": text})
    except ClientError as e:
        fail(e)


def s3(args):
    extra = {"s3": {"addressing_style": "path" if args.path_style else "virtual"}}
    if args.payload == "signed":
        extra["s3"]["payload_signing_enabled"] = True
        extra["request_checksum_calculation"] = "when_required"
        extra["response_checksum_validation"] = "when_required"
    c = client(args, "s3", **extra)
    body = args.body.encode()
    try:
        r = c.put_object(Bucket=args.bucket, Key=args.key, Body=body, ContentType="text/plain")
        out({"op": "put", "ok": True, "etag": r.get("ETag")})
        r = c.get_object(Bucket=args.bucket, Key=args.key)
        got = r["Body"].read()
        out({"op": "get", "ok": True, "body": got.decode(errors="replace"), "same": got == body})
    except ClientError as e:
        fail(e)


def main():
    ap = argparse.ArgumentParser(description="boto3 Bedrock runtime / S3 client for keygate's tests")
    ap.add_argument("mode", choices=["converse", "converse-stream", "s3"])
    ap.add_argument("bucket", nargs="?")
    ap.add_argument("key", nargs="?")
    ap.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    ap.add_argument("--endpoint-url")
    ap.add_argument("--model", default="anthropic.claude-sonnet-4-5-20250929-v1:0")
    ap.add_argument("--prompt", default="Say hello.")
    ap.add_argument("--body", default="hello, s3 (through keygate)\n")
    ap.add_argument("--payload", choices=["signed", "default"], default="signed")
    ap.add_argument("--path-style", action="store_true")
    args = ap.parse_args()
    if args.mode == "s3":
        if not (args.bucket and args.key):
            ap.error("s3 needs BUCKET and KEY")
        s3(args)
    else:
        converse(args)


if __name__ == "__main__":
    main()
