//! Dummy values: what the sandbox holds instead of the real key.
//!
//! Templates keep a provider's key shape (prefix, length, alphabet) so client-side
//! format checks pass: literal text plus `{random:N}` (N letters and digits) and
//! `{hex:N}` (N lowercase hex digits), `{upper:N}` (N upper-case letters and digits), e.g. `ghp_keygateDummy{random:24}`.

/// The template used when neither a recipe nor `--dummy` gives one.
pub const DEFAULT_TEMPLATE: &str = "keygate-dummy-{name}-{random:32}";
/// The shortest dummy accepted: shorter ones could occur by chance in real traffic.
pub const MIN_DUMMY_LEN: usize = 16;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
/// Upper-case letters and digits (the shape of an AWS access key id).
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Expands a template for secret `name`.
pub fn expand(template: &str, name: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("dummy template `{template}`: unclosed '{{'"))?;
        let field = &rest[open + 1..open + close];
        out.push_str(
            &field_value(field, name).map_err(|e| format!("dummy template `{template}`: {e}"))?,
        );
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn field_value(field: &str, name: &str) -> Result<String, String> {
    if field == "name" {
        return Ok(name.to_string());
    }
    let (kind, count) = field.split_once(':').ok_or_else(|| {
        format!(
            "unknown field `{{{field}}}` (use {{random:N}}, {{hex:N}}, {{upper:N}} or {{name}})"
        )
    })?;
    let count: usize = count
        .parse()
        .ok()
        .filter(|n| (1..=512).contains(n))
        .ok_or_else(|| format!("`{{{field}}}`: the count must be 1 to 512"))?;
    let alphabet = match kind {
        "random" => ALNUM,
        "hex" => HEX,
        "upper" => UPPER,
        other => {
            return Err(format!(
                "unknown field `{{{other}:…}}` (use random, hex or upper)"
            ));
        }
    };
    random_string(alphabet, count)
}

fn random_string(alphabet: &[u8], count: usize) -> Result<String, String> {
    // 256 is not a multiple of 62: reject the top values to keep the draw uniform.
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(count);
    let mut batch = [0u8; 64];
    while out.len() < count {
        getrandom::fill(&mut batch).map_err(|e| format!("no randomness available: {e}"))?;
        let usable = batch.iter().map(|b| usize::from(*b)).filter(|b| *b < limit);
        for b in usable.take(count - out.len()) {
            out.push(char::from(alphabet[b % alphabet.len()]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_fields_and_keeps_shape() {
        let d = expand("ghp_keygateDummy{random:24}", "github").unwrap();
        assert_eq!(d.len(), 40);
        assert!(d.starts_with("ghp_keygateDummy"));
        assert!(d[16..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let h = expand("x-{hex:8}-{name}", "demo").unwrap();
        assert_eq!(h.len(), 2 + 8 + 5);
        assert!(h.ends_with("-demo"));
        assert!(
            h[2..10]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn dummies_are_unique() {
        let a = expand(DEFAULT_TEMPLATE, "x").unwrap();
        let b = expand(DEFAULT_TEMPLATE, "x").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn bad_templates() {
        assert!(expand("a{random:0}", "n").unwrap_err().contains("1 to 512"));
        assert!(expand("a{random:x}", "n").is_err());
        assert!(expand("a{other:3}", "n").unwrap_err().contains("unknown"));
        assert!(expand("a{random:3", "n").unwrap_err().contains("unclosed"));
        assert!(expand("a{bogus}", "n").is_err());
    }
}
