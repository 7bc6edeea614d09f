"""What a Python client shows of a keygate refusal (tests/integration/refusals.rs).

    python refused.py requests|httpx|anthropic URL [ACCEPT]

requests and httpx GET URL (with `Accept: ACCEPT` when given) and print one JSON line:
the status, the X-Keygate-Reason header and the body. anthropic calls the Messages API
with URL as its base URL and prints the APIStatusError it raises, as the SDK words it.
Everything else (proxy, CA) comes from the environment `keygate run` sets.
"""

import json
import sys

# The same GETs as demo.py (this script's directory is on sys.path).
from demo import with_httpx, with_requests


def with_anthropic(url):
    import anthropic

    client = anthropic.Anthropic(
        base_url=url, api_key="sk-ant-api03-not-a-real-key", max_retries=0
    )
    try:
        client.messages.create(
            model="claude-x",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
        )
    except anthropic.APIStatusError as e:
        return {"exception": type(e).__name__, "status": e.status_code, "message": str(e)}
    return {"exception": None}


def main():
    library, url = sys.argv[1], sys.argv[2]
    if library == "anthropic":
        print(json.dumps({"client": library, **with_anthropic(url)}))
        return
    headers = {"accept": sys.argv[3]} if len(sys.argv) > 3 else {}
    get = {"requests": with_requests, "httpx": with_httpx}[library]
    status, headers, body = get(url, headers)
    print(
        json.dumps(
            {
                "client": library,
                "status": status,
                "reason": headers.get("x-keygate-reason"),
                "body": body,
            }
        )
    )


if __name__ == "__main__":
    main()
