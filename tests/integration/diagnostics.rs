//! The diagnostics users reach for, through the built binary or the proxy: `keygate
//! check`, `keygate doctor`, the `keygate.test` self-test origin, and logging options.
