//! [`SecretValue`]: a real secret in memory. Zeroized on drop, never printable.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Longest secret value keygate accepts, in bytes.
pub const MAX_SECRET_LEN: usize = 8 * 1024;

/// A real secret value. `Debug` is redacted, there is no `Display`, and the bytes are
/// wiped when it is dropped. Read it only at the point of use with [`SecretValue::expose`].
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SecretValue(String);

/// Why a value cannot be a secret. The messages never contain the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Nothing was given.
    #[error("the secret value is empty")]
    Empty,
    /// Longer than [`MAX_SECRET_LEN`].
    #[error("the secret value is longer than {MAX_SECRET_LEN} bytes")]
    TooLong,
    /// Contains a byte that cannot travel in an HTTP header (control characters, CR/LF,
    /// non-ASCII): it would break or smuggle headers.
    #[error(
        "the secret value contains a character that cannot appear in an HTTP header (position {0}); API keys are printable ASCII"
    )]
    BadCharacter(usize),
}

impl SecretValue {
    /// Validates and wraps a value. One trailing newline (as `echo` adds) is removed.
    pub fn new(mut value: String) -> Result<SecretValue, ValueError> {
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        let checked = SecretValue(value);
        let text = checked.expose();
        if text.is_empty() {
            return Err(ValueError::Empty);
        }
        if text.len() > MAX_SECRET_LEN {
            return Err(ValueError::TooLong);
        }
        if let Some(i) = text.bytes().position(|b| !(b' '..=b'~').contains(&b)) {
            return Err(ValueError::BadCharacter(i));
        }
        Ok(checked)
    }

    /// The value itself. Every call site is a place where the secret is used on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<redacted, {} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let v = SecretValue::new("sk-real-value-123".into()).unwrap();
        let shown = format!("{v:?} {:?}", Some(&v));
        assert!(!shown.contains("sk-real"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn validation() {
        assert_eq!(SecretValue::new("abc\n".into()).unwrap().expose(), "abc");
        assert_eq!(SecretValue::new("abc\r\n".into()).unwrap().expose(), "abc");
        assert_eq!(SecretValue::new("\n".into()), Err(ValueError::Empty));
        assert_eq!(
            SecretValue::new("a\r\nb".into()),
            Err(ValueError::BadCharacter(1))
        );
        assert_eq!(
            SecretValue::new("a\0".into()),
            Err(ValueError::BadCharacter(1))
        );
        assert_eq!(
            SecretValue::new("clé".into()),
            Err(ValueError::BadCharacter(2))
        );
        assert_eq!(
            SecretValue::new("x".repeat(MAX_SECRET_LEN + 1)),
            Err(ValueError::TooLong)
        );
        let err = SecretValue::new("sk-live\u{7}".into())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("sk-live"));
    }
}
