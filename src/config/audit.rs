//! `audit:` in keygate.yaml: when `audit.jsonl` is rotated and how many files are kept.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::Parsed;
use super::limits::Count;
use crate::audit::Rotation;

/// The smallest `max_bytes` accepted: 1 KiB.
pub const MIN_MAX_BYTES: u64 = 1024;
/// The largest `max_bytes` accepted: 1 TiB.
pub const MAX_MAX_BYTES: u64 = 1 << 40;

/// A size written as bytes (`67108864`) or with a unit: `512KiB`, `64MiB`, `1GiB` (also
/// `K`, `M`, `G`, `KB`, `MB`, `GB`, all powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a size; write e.g. 64MiB, 512KiB or 1GiB"))?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            other => {
                return Err(format!(
                    "`{s}`: unknown unit `{other}` (use KiB, MiB or GiB)"
                ));
            }
        };
        let bytes = n
            .checked_mul(1 << shift)
            .filter(|b| (MIN_MAX_BYTES..=MAX_MAX_BYTES).contains(b))
            .ok_or_else(|| format!("`{s}` must be from 1KiB to 1024GiB"))?;
        Ok(Size(bytes))
    }
}

/// Written in the largest unit that divides it.
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        match b {
            _ if b.is_multiple_of(1 << 30) => write!(f, "{}GiB", b >> 30),
            _ if b.is_multiple_of(1 << 20) => write!(f, "{}MiB", b >> 20),
            _ if b.is_multiple_of(1 << 10) => write!(f, "{}KiB", b >> 10),
            _ => write!(f, "{b}"),
        }
    }
}

/// `audit:` as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    max_bytes: Option<Parsed<Size>>,
    keep: Option<Parsed<Count<1000>>>,
}

impl RawAudit {
    /// The effective rotation: each given field replaces its default.
    pub fn resolve(&self) -> Rotation {
        let d = Rotation::default();
        Rotation {
            max_bytes: self.max_bytes.as_ref().map_or(d.max_bytes, |p| p.0.0),
            keep: self
                .keep
                .as_ref()
                .map_or(d.keep, |p| u32::try_from(p.0.0).unwrap_or(d.keep)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_bytes_or_binary_units_within_bounds() {
        assert_eq!("67108864".parse::<Size>(), Ok(Size(64 << 20)));
        assert_eq!("64MiB".parse::<Size>(), Ok(Size(64 << 20)));
        assert_eq!("512 KiB".parse::<Size>(), Ok(Size(512 << 10)));
        assert_eq!("1g".parse::<Size>(), Ok(Size(1 << 30)));
        assert!("10".parse::<Size>().unwrap_err().contains("1KiB"));
        assert!("5TiB".parse::<Size>().unwrap_err().contains("unknown unit"));
        assert!("lots".parse::<Size>().is_err());
        assert_eq!(Size(64 << 20).to_string(), "64MiB");
    }
}
