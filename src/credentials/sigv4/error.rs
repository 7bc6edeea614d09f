//! [`SigV4Error`]: why a SigV4 request is refused, and the status that follows.

/// Why a SigV4 request is refused or cannot be re-signed. No message holds a secret key,
/// a session token or the signature keygate expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The `Authorization` header names AWS4-HMAC-SHA256 but does not parse.
    #[error(
        "malformed SigV4 Authorization header ({0}); expected `AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/REGION/SERVICE/aws4_request, SignedHeaders=host;x-amz-date, Signature=<64 hex digits>`"
    )]
    MalformedHeader(&'static str),
    /// The query has SigV4 parameters that do not parse.
    #[error(
        "malformed SigV4 presigned URL ({0}); expected X-Amz-Algorithm=AWS4-HMAC-SHA256, X-Amz-Credential, X-Amz-Date, X-Amz-SignedHeaders and X-Amz-Signature in the query"
    )]
    MalformedQuery(&'static str),
    /// A signing scheme keygate does not verify.
    #[error(
        "{0} is not supported through keygate; configure the client for SigV4 (AWS4-HMAC-SHA256)"
    )]
    Unsupported(&'static str),
    /// An `Authorization` header and a presigned query at once.
    #[error(
        "the request is signed twice (an Authorization header and X-Amz-Signature in the query); send one"
    )]
    SignedTwice,
    /// Signed chunks cannot be re-signed by rewriting the head.
    #[error(
        "a body sent as signed aws-chunked (x-amz-content-sha256: STREAMING-AWS4-…) cannot be re-signed by keygate, since every chunk is signed with the phantom key; configure the client for UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER or a whole-body hash"
    )]
    SignedChunks,
    /// A header-signed request without X-Amz-Date.
    #[error(
        "the SigV4 request has no X-Amz-Date header (keygate does not verify a signature dated by the Date header); let the SDK add X-Amz-Date"
    )]
    NoDate,
    /// A header named in SignedHeaders is not in the request.
    #[error(
        "signed header `{0}` is not in the request (it was removed on the way, or never sent); sign only headers that are sent"
    )]
    MissingSignedHeader(String),
    /// The Credential's access key id is not the phantom's.
    #[error(
        "the request is signed with an access key id that is not keygate's phantom for this host; use the AWS_ACCESS_KEY_ID keygate gave the agent"
    )]
    NotThePhantom,
    /// The request carries a session token that is not the phantom's.
    #[error(
        "the request carries an X-Amz-Security-Token that is not keygate's phantom session token for this host; use the AWS_SESSION_TOKEN keygate gave the agent, or none if it gave none"
    )]
    WrongSessionToken,
    /// The signature does not match the phantom secret.
    #[error(
        "SigV4 signature mismatch ({service}, {region}): the request was changed after it was signed, or signed with a secret other than keygate's phantom (AWS_SECRET_ACCESS_KEY); keygate canonicalizes like botocore ({mode})"
    )]
    SignatureMismatch {
        service: String,
        region: String,
        mode: &'static str,
    },
    /// The real keys cannot be written into the request (a character not allowed in a
    /// header or the Credential). Keygate's fault, not the client's.
    #[error("the real AWS {0} cannot be written into a request; check the stored credential")]
    BadRealKeys(&'static str),
}

impl SigV4Error {
    /// The status a refusal is answered with: 400 for a malformed or unsupported request,
    /// 403 for a request not signed by the phantom, 500 when the real keys are unusable.
    pub fn status(&self) -> http::StatusCode {
        match self {
            SigV4Error::NotThePhantom
            | SigV4Error::WrongSessionToken
            | SigV4Error::SignatureMismatch { .. } => http::StatusCode::FORBIDDEN,
            SigV4Error::BadRealKeys(_) => http::StatusCode::INTERNAL_SERVER_ERROR,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}
