"""SigV4 vectors from botocore, for src/credentials/sigv4/botocore_tests.rs.

Each case is one request a botocore client makes (captured at `before-send`, so nothing
is sent), signed twice at the same instant: once with PHANTOM keys (what the agent sends
keygate) and once with REAL keys (what keygate must send upstream after re-signing).
Presigned URLs come from botocore's own presigner. Regenerate with:

    tests/clients/.venv/bin/python tests/support/sigv4_vectors.py > tests/fixtures/sigv4_botocore.json

(botocore is pinned in tests/clients/requirements.txt; scripts/setup-test-clients
installs it.) The output is deterministic: the clock and the invocation id are fixed.
"""

import datetime
import hashlib
import json
import sys
import uuid
from urllib.parse import urlsplit

import botocore
import botocore.auth
import botocore.endpoint
import botocore.session
from botocore.config import Config

NOW = datetime.datetime(2025, 3, 14, 15, 9, 26)
botocore.auth.get_current_datetime = lambda: NOW
botocore.endpoint.uuid.uuid4 = lambda: uuid.UUID(int=0x4B657967617465)

PHANTOM = {
    "access_key_id": "AKIAKEYGATEPHNTM7Q2X",
    "secret_access_key": "kgPhntmS3cr3t/9f+Qx7LmZ2aBcDeFgHiJkLmNoPq",
    "session_token": "IQoJb3JpZ2luX2VjKeygatePhntmT0ken/with+slash==",
}
REAL = {
    "access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "session_token": "FwoGZXIvYXdzEXAMPLE//////////wEaDH+real/token=",
}


class Captured(Exception):
    """Raised at before-send to stop botocore after it signed the request."""


def client(service, keys, with_token, **config):
    session = botocore.session.get_session()
    endpoint_url = config.pop("endpoint_url", None)
    made = session.create_client(
        service,
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id=keys["access_key_id"],
        aws_secret_access_key=keys["secret_access_key"],
        aws_session_token=keys["session_token"] if with_token else None,
        config=Config(retries={"total_max_attempts": 1}, **config),
    )
    return made


def capture(made, operation, params):
    seen = {}

    def before_send(request, **_):
        seen["request"] = request
        raise Captured()

    made.meta.events.register("before-send", before_send)
    try:
        getattr(made, operation)(**params)
    except Captured:
        pass
    request = seen["request"]
    split = urlsplit(request.url)
    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, str):
        body = body.encode()
    return {
        "method": request.method,
        "target": split.path + ("?" + split.query if split.query else ""),
        "authority": split.netloc,
        "headers": [[k, header_value(k, v)] for k, v in request.headers.items()],
        "body": (body or b"").decode("latin-1"),
        "body_sha256": hashlib.sha256(body or b"").hexdigest(),
    }


def header_value(name, value):
    # User-Agent is never signed (SIGNED_HEADERS_BLACKLIST); a fixed one keeps the
    # fixture free of this machine's kernel and Python versions.
    if name.lower() == "user-agent":
        return f"Botocore/{botocore.__version__}"
    return value if isinstance(value, str) else value.decode()


def presign(made, operation, params):
    url = made.generate_presigned_url(operation, Params=params, ExpiresIn=900, HttpMethod="GET")
    split = urlsplit(url)
    return {
        "method": "GET",
        "target": split.path + "?" + split.query,
        "authority": split.netloc,
        "headers": [],
        "body": "",
        "body_sha256": hashlib.sha256(b"").hexdigest(),
    }


S3_LOCAL = {"endpoint_url": "https://127.0.0.1:8443", "s3": {"addressing_style": "path"}}

CASES = [
    # name, service, operation, params, phantom token?, real token?, client config, presigned?
    (
        "bedrock_converse",
        "bedrock-runtime",
        "converse",
        {
            "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
            "messages": [{"role": "user", "content": [{"text": "Say hi"}]}],
        },
        False,
        False,
        {},
        False,
    ),
    (
        "bedrock_invoke_profile_arn_tokens",
        "bedrock-runtime",
        "invoke_model",
        {
            "modelId": "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "body": b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":16,'
            b'"messages":[{"role":"user","content":"Say hi"}]}',
            "contentType": "application/json",
            "accept": "application/json",
        },
        True,
        True,
        {},
        False,
    ),
    (
        "bedrock_list_query_token_added",
        "bedrock",
        "list_foundation_models",
        {"byProvider": "anthropic", "byOutputModality": "TEXT"},
        False,
        True,
        {},
        False,
    ),
    ("sts_form_token_removed", "sts", "get_caller_identity", {}, True, False, {}, False),
    (
        "s3_put_signed_payload_port",
        "s3",
        "put_object",
        {"Bucket": "bucket", "Key": "dir/a b+c~(1).txt", "Body": b"hello, keygate\n"},
        True,
        True,
        {
            **S3_LOCAL,
            "s3": {"addressing_style": "path", "payload_signing_enabled": True},
            "request_checksum_calculation": "when_required",
        },
        False,
    ),
    (
        "s3_put_default",
        "s3",
        "put_object",
        {"Bucket": "bucket", "Key": "notes/today.md", "Body": b"# today\n"},
        False,
        False,
        {},
        False,
    ),
    (
        "s3_presigned_get_tokens",
        "s3",
        "get_object",
        {"Bucket": "bucket", "Key": "reports/2025 Q1+draft.pdf"},
        True,
        True,
        {"signature_version": "s3v4"},
        True,
    ),
    (
        "s3_presigned_get_token_added",
        "s3",
        "get_object",
        {"Bucket": "bucket", "Key": "a/b.txt"},
        False,
        True,
        {**S3_LOCAL, "signature_version": "s3v4"},
        True,
    ),
    # The token `aws eks get-token` hands to Kubernetes: a presigned STS call (non-S3:
    # path normalized, payload hash of the empty body).
    ("sts_presigned_tokens", "sts", "get_caller_identity", {}, True, True, {}, True),
]


def main():
    cases = []
    for name, service, operation, params, phantom_token, real_token, config, presigned in CASES:
        run = presign if presigned else capture
        signed = {}
        for side, keys, with_token in (("phantom", PHANTOM, phantom_token), ("real", REAL, real_token)):
            made = client(service, keys, with_token, **json.loads(json.dumps(config)))
            signed[side] = run(made, operation, dict(params))
            signed[side]["session_token"] = with_token
        cases.append({"name": name, "presigned": presigned, **signed})
    json.dump(
        {
            "generator": "tests/support/sigv4_vectors.py",
            "botocore": botocore.__version__,
            "amz_date": NOW.strftime("%Y%m%dT%H%M%SZ"),
            "phantom": PHANTOM,
            "real": REAL,
            "cases": cases,
        },
        sys.stdout,
        indent=1,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
