"""A plain HTTPS client for keygate's integration tests (tests/integration/clients.rs).

    python demo.py requests|httpx URL

GETs URL with `Authorization: Bearer $DEMO_KEY`, using only what `keygate run` puts in
the environment: the proxy variables and the CA bundle (REQUESTS_CA_BUNDLE for
requests, SSL_CERT_FILE for httpx). Nothing here names a proxy or a certificate.
Prints one JSON line: the key it sent, the status, and the response's
x-seen-authorization header (what the upstream says it received, as the client sees it).
"""

import json
import os
import sys

TIMEOUT = 10


def with_requests(url, headers):
    import requests

    response = requests.get(url, headers=headers, timeout=TIMEOUT)
    return response.status_code, response.headers, response.text


def with_httpx(url, headers):
    import httpx

    response = httpx.get(url, headers=headers, timeout=TIMEOUT)
    return response.status_code, response.headers, response.text


def main():
    library, url = sys.argv[1], sys.argv[2]
    key = os.environ["DEMO_KEY"]
    get = {"requests": with_requests, "httpx": with_httpx}[library]
    status, headers, body = get(url, {"authorization": f"Bearer {key}"})
    print(
        json.dumps(
            {
                "client": library,
                "sent": key,
                "status": status,
                "seen": headers.get("x-seen-authorization"),
                "body": body,
            }
        )
    )


if __name__ == "__main__":
    main()
