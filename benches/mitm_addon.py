"""mitmdump addon for benches/e2e.sh.

* ``--set bench_resolve=HOST:PORT=IP:PORT[,...]``: connect to IP:PORT when the upstream
  is HOST:PORT (keygate's ``--resolve``); SNI and certificate checks still use HOST.
* Server-sent events are streamed (mitmproxy buffers them otherwise, see
  https://github.com/mitmproxy/mitmproxy/issues/4469): the documented workaround.

Nothing else: bodies keep mitmproxy's defaults, so mitmdump runs as a user runs it.
"""

from mitmproxy import ctx, http
from mitmproxy.proxy import server_hooks


class Bench:
    def __init__(self) -> None:
        self.resolve: dict[tuple[str, int], tuple[str, int]] = {}

    def load(self, loader) -> None:
        loader.add_option(
            "bench_resolve", str, "", "HOST:PORT=IP:PORT[,...]: where to connect for HOST:PORT"
        )

    def configure(self, updated) -> None:
        if "bench_resolve" not in updated:
            return
        self.resolve = {}
        for rule in filter(None, ctx.options.bench_resolve.split(",")):
            name, addr = rule.split("=", 1)
            host, port = name.rsplit(":", 1)
            ip, ip_port = addr.rsplit(":", 1)
            self.resolve[(host, int(port))] = (ip, int(ip_port))

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        address = data.server.address
        if address is not None and tuple(address) in self.resolve:
            data.server.address = self.resolve[tuple(address)]

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        if flow.response.headers.get("content-type", "").startswith("text/event-stream"):
            flow.response.stream = True


addons = [Bench()]
