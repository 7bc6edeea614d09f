//! Documented edges with no other test: an intercepted connection whose SNI names
//! another host, a client that does not trust keygate's CA (`client-tls`), the idle
//! timeout of tunnels and WebSockets, and `head-too-large` with custom limits.
