// What Node's fetch (through undici's EnvHttpProxyAgent) shows of a keygate refusal
// (tests/integration/refusals.rs).
//
//     node refused.mjs URL
//
// Prints one JSON line: the status, the X-Keygate-Reason header and the body, or the
// error fetch threw. Proxy and CA come from the environment `keygate run` sets.

const [url] = process.argv.slice(2);
const { EnvHttpProxyAgent, setGlobalDispatcher } = await import('undici');
setGlobalDispatcher(new EnvHttpProxyAgent());
try {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  console.log(
    JSON.stringify({
      status: response.status,
      reason: response.headers.get('x-keygate-reason'),
      body: await response.text(),
    }),
  );
} catch (e) {
  console.log(JSON.stringify({ error: `${e} ${e.cause ?? ''}` }));
}
