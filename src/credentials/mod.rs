//! Credentials that are not a static string (issue 15): signatures over the request
//! (AWS SigV4) and short-lived tokens keygate mints itself (OAuth2, Google service
//! accounts, GitHub App installations). The agent holds phantoms; the real key material
//! and every minted token stay in keygate's memory.
//!
//! Pure pieces (signing, verifying, JWTs, the token cache) live here; the proxy supplies
//! the network (a [`mint`] transport over its verified upstream client). Nothing here
//! imports `proxy`.
//!
//! * [`expiry`]: `tokens.json`, when each minted token expires (for `secret list`).
//! * [`key`]: RSA signing and verifying keys (PKCS#8 / PKCS#1 PEM, RSA-2048 generation).
//! * [`jwt`]: RS256 JWTs, signed and verified.
//! * [`mint`]: grants that mint tokens at a token endpoint, and the [`mint::TokenCache`].
//! * [`sigv4`]: AWS Signature Version 4, verified with the phantom keys and re-signed
//!   with the real ones.

pub mod expiry;
pub mod jwt;
pub mod key;
pub mod mint;
pub mod sigv4;

#[cfg(test)]
mod test_keys;
