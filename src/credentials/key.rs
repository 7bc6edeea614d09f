//! RSA keys for RS256: a [`SigningKey`] read from PEM (PKCS#8 or PKCS#1) or freshly
//! generated, and the [`VerifyingKey`] that checks its signatures. aws-lc-rs does the
//! arithmetic (the provider rustls already uses, so there is one crypto library).
//!
//! Key material never reaches a `Debug` string or an error message; the DER bytes read from
//! PEM are zeroized as soon as aws-lc-rs has parsed them, and the PKCS#8 export of a
//! generated key is a [`Zeroizing`] string.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use zeroize::Zeroizing;

/// PEM lines are wrapped at 64 characters (RFC 7468 §2).
const PEM_LINE: usize = 64;

/// Why a key could not be read, generated, exported or used. The messages name the
/// expected format and never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No private key block in the text.
    #[error(
        "no RSA private key found: expected PEM starting with -----BEGIN PRIVATE KEY----- (PKCS#8, as in a Google service-account JSON) or -----BEGIN RSA PRIVATE KEY----- (PKCS#1, as GitHub issues App keys)"
    )]
    NotPem,
    /// A passphrase-protected key.
    #[error(
        "the private key is encrypted (-----BEGIN ENCRYPTED PRIVATE KEY-----); store the decrypted key, e.g. from `openssl pkcs8 -in key.pem -out plain.pem`"
    )]
    Encrypted,
    /// An EC private key (-----BEGIN EC PRIVATE KEY-----) where RSA was expected.
    #[error("the private key is an EC key; RS256 needs an RSA key")]
    NotRsa,
    /// No public key block in the text.
    #[error(
        "no public key found: expected PEM starting with -----BEGIN PUBLIC KEY----- (or -----BEGIN RSA PUBLIC KEY-----)"
    )]
    PublicNotPem,
    /// aws-lc-rs refused the key (its reason is a fixed phrase, never key bytes).
    #[error("the RSA key was rejected: {0} (RS256 needs an RSA key of 2048 to 8192 bits)")]
    Rejected(&'static str),
    /// Key generation failed inside aws-lc-rs.
    #[error("could not generate an RSA-2048 key")]
    Generate,
    /// Encoding a key failed inside aws-lc-rs.
    #[error("could not encode the RSA key")]
    Export,
    /// Signing failed inside aws-lc-rs.
    #[error("RSA signing failed")]
    Sign,
}

/// An RSA private key that signs RS256 (RSASSA-PKCS1-v1_5 with SHA-256). `Debug` shows
/// only the modulus size; there is no way to print the key.
pub struct SigningKey {
    pair: RsaKeyPair,
}

impl SigningKey {
    /// Reads the first RSA private key in `pem`: `-----BEGIN PRIVATE KEY-----` (PKCS#8, a
    /// Google service-account JSON's `private_key`) or `-----BEGIN RSA PRIVATE KEY-----`
    /// (PKCS#1, a GitHub App's downloaded key). Other PEM blocks (certificates) are skipped.
    pub fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let der = match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
            Ok(der) => Zeroizing::new(der),
            Err(_) if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") => {
                return Err(KeyError::Encrypted);
            }
            Err(_) => return Err(KeyError::NotPem),
        };
        let pair = match &*der {
            PrivateKeyDer::Pkcs8(key) => RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(key) => RsaKeyPair::from_der(key.secret_pkcs1_der()),
            _ => return Err(KeyError::NotRsa),
        };
        let pair = pair.map_err(|e| KeyError::Rejected(e.description_()))?;
        Ok(SigningKey { pair })
    }

    /// A fresh RSA-2048 key, for the phantom service-account JSON handed to an agent.
    pub fn generate_rsa2048() -> Result<SigningKey, KeyError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        Ok(SigningKey { pair })
    }

    /// The key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, `\n` line ends), the form a
    /// service-account JSON's `private_key` holds. Zeroized when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let der = self.pair.as_der().map_err(|_| KeyError::Export)?;
        Ok(pem_encode("PRIVATE KEY", der.as_ref()))
    }

    /// The public half, for verifying this key's signatures.
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_der(self.pair.public_key().as_ref())
    }

    /// The RS256 signature of `message` (deterministic: the same key and message always
    /// give the same bytes).
    pub fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        // aws-lc-rs ignores the RNG for PKCS#1 v1.5; the API still wants one.
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| KeyError::Sign)?;
        Ok(signature)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bits = self.pair.public_modulus_len() * 8;
        write!(f, "SigningKey(<redacted RSA-{bits}>)")
    }
}

/// An RSA public key that verifies RS256 signatures of 2048 to 8192 bits.
#[derive(Clone)]
pub struct VerifyingKey {
    key: ParsedPublicKey,
}

impl VerifyingKey {
    /// Reads `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo) or
    /// `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1 `RSAPublicKey`).
    pub fn from_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
        if let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()) {
            return VerifyingKey::from_der(spki.as_ref());
        }
        let pkcs1 = pem_block(pem, "RSA PUBLIC KEY").ok_or(KeyError::PublicNotPem)?;
        VerifyingKey::from_der(&pkcs1)
    }

    /// Reads DER: SubjectPublicKeyInfo or PKCS#1 `RSAPublicKey`.
    pub fn from_der(der: &[u8]) -> Result<VerifyingKey, KeyError> {
        let key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map_err(|e| KeyError::Rejected(e.description_()))?;
        Ok(VerifyingKey { key })
    }

    /// The key as `-----BEGIN PUBLIC KEY-----` PEM (SubjectPublicKeyInfo).
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let der = self.key.as_der().map_err(|_| KeyError::Export)?;
        Ok(pem_encode("PUBLIC KEY", der.as_ref()).to_string())
    }

    /// Whether `signature` is this key's RS256 signature of `message`.
    pub fn verify_rs256(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifyingKey(RSA)")
    }
}

/// PEM text for `der` under `label`, built in a zeroizing buffer (the `pem` crate would
/// leave an unzeroized base64 copy of a private key behind).
fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(
        body.len() + body.len() / PEM_LINE + 64,
    ));
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for line in body.as_bytes().chunks(PEM_LINE) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the first `label` block of a public-key PEM (rustls-pki-types has no type
/// for PKCS#1 public keys).
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let len = pem[start..].find(&end)?;
    let body: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
