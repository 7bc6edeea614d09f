//! Documented CLI behaviour with no other test: `keygate run` edge cases, `secret add`
//! details, `start` flags and signals, and `ca/bundle.pem` with `SSL_CERT_FILE`.
