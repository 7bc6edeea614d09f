//! Byte-level wrappers under the stages, around the streams and bodies they copy: larger
//! socket reads under rustls ([`read_ahead`]), idle timeouts for copied streams
//! ([`idle`]), and byte counting for streamed bodies, with the audit event written when a
//! flow ends ([`metered`]). They decide nothing: no policy, no addons, no answers.

pub mod idle;
pub mod metered;
pub mod read_ahead;
