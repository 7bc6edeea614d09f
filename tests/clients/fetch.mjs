// Node's fetch for keygate's integration tests (tests/integration/clients.rs).
//
//     node fetch.mjs undici|builtin URL
//
// GETs URL with `Authorization: Bearer $DEMO_KEY` through the proxy variables that
// `keygate run` sets, trusting keygate's CA through NODE_EXTRA_CA_CERTS (read by Node at
// start-up). `undici`: the global fetch with undici's EnvHttpProxyAgent as the global
// dispatcher, which is how tools make fetch honour HTTPS_PROXY before Node 24.
// `builtin`: the global fetch alone, which honours the variables on Node 24+ when
// NODE_USE_ENV_PROXY=1 (keygate sets it). Prints one JSON line, like demo.py.

const [mode, url] = process.argv.slice(2);
if (mode === 'undici') {
  const { EnvHttpProxyAgent, setGlobalDispatcher } = await import('undici');
  setGlobalDispatcher(new EnvHttpProxyAgent());
} else if (mode !== 'builtin') {
  throw new Error(`unknown mode ${mode}`);
}
const key = process.env.DEMO_KEY;
const response = await fetch(url, {
  headers: { authorization: `Bearer ${key}` },
  signal: AbortSignal.timeout(10_000),
});
console.log(
  JSON.stringify({
    client: `node ${process.version} ${mode}`,
    sent: key,
    status: response.status,
    seen: response.headers.get('x-seen-authorization'),
    body: await response.text(),
  }),
);
