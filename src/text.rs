//! Small wording helpers for what people read: a count and its noun.

/// `n` and the noun that agrees with it: `no secrets`, `1 secret`, `2 secrets`.
///
/// `one` is the singular, `many` the plural (given whole, so irregular plurals work).
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    match n.into() {
        0 => format!("no {many}"),
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

/// [`count`] for a `usize`, the type collections report their length in.
pub fn count_of(n: usize, one: &str, many: &str) -> String {
    count(u64::try_from(n).unwrap_or(u64::MAX), one, many)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_number() {
        assert_eq!(count_of(0, "secret", "secrets"), "no secrets");
        assert_eq!(count_of(1, "secret", "secrets"), "1 secret");
        assert_eq!(count_of(2, "secret", "secrets"), "2 secrets");
        assert_eq!(count(1u32, "entry", "entries"), "1 entry");
        assert_eq!(count(12u64, "entry", "entries"), "12 entries");
    }
}
