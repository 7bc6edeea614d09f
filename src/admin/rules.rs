//! `POST /api/rules`: a pattern added to `network.allow` or `network.deny` in
//! keygate.yaml, as a human would add it: the file edited line by line (comments, order
//! and quoting of everything else kept), checked by parsing the result, then written
//! atomically.

use std::path::Path;

use crate::config::RawConfig;
use crate::policy::HostPattern;

/// Which list a rule goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// `network.allow`.
    Allow,
    /// `network.deny`.
    Deny,
}

impl List {
    /// The key in keygate.yaml.
    pub fn key(self) -> &'static str {
        match self {
            List::Allow => "allow",
            List::Deny => "deny",
        }
    }
}

/// What [`add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    /// The text with the rule in it.
    Changed(String),
    /// The list already had it.
    AlreadyThere,
}

/// Why [`write`] left the file alone.
#[derive(Debug)]
pub enum WriteError {
    /// The file could not be read.
    Unreadable(String),
    /// The pattern, or the file's way of writing the list, does not allow the edit.
    Bad(String),
    /// The edited file could not be written.
    Unwritable(String),
}

/// Adds `pattern` to `list` in the keygate.yaml at `path` (a missing file is empty),
/// atomically, comments kept: the text before the edit, or `None` when the pattern was
/// already there.
pub fn write(
    path: &std::path::Path,
    list: List,
    pattern: &str,
) -> Result<Option<String>, WriteError> {
    let before = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(WriteError::Unreadable(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let after = match add(&before, list, pattern).map_err(WriteError::Bad)? {
        Added::Changed(text) => text,
        Added::AlreadyThere => return Ok(None),
    };
    crate::home::write_atomic(path, after.as_bytes(), crate::home::FILE_MODE)
        .map_err(|e| WriteError::Unwritable(format!("cannot write {}: {e}", path.display())))?;
    Ok(Some(before))
}

/// `text` (keygate.yaml, possibly empty) with `pattern` added to `list`. `Err` says why
/// the file could not be edited safely.
pub fn add(text: &str, list: List, pattern: &str) -> Result<Added, String> {
    let parsed = HostPattern::parse(pattern).map_err(|e| e.to_string())?;
    let canonical = parsed.to_string();
    if listed(text, list)?
        .iter()
        .any(|p| p.to_string() == canonical)
    {
        return Ok(Added::AlreadyThere);
    }
    let quoted = serde_json::to_string(&canonical).map_err(|e| e.to_string())?;
    let edited = insert(text, list.key(), &quoted);
    let after = listed(&edited, list)?;
    if !after.iter().any(|p| p.to_string() == canonical) {
        return Err(format!(
            "keygate.yaml's network.{} is written in a way keygate cannot edit safely; add {quoted} to it by hand",
            list.key()
        ));
    }
    Ok(Added::Changed(edited))
}

/// The patterns of `list` in `text`.
fn listed(text: &str, list: List) -> Result<Vec<HostPattern>, String> {
    let raw = RawConfig::parse(text, Path::new("keygate.yaml")).map_err(|e| e.to_string())?;
    Ok(match list {
        List::Allow => raw.allow_patterns(),
        List::Deny => raw.deny_patterns(),
    })
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The line-based edit: into an existing list (flow `[a, b]` or block `- a`), or a new
/// `key:` under `network:`, or a new `network:` section.
fn insert(text: &str, key: &str, quoted: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let network = lines.iter().position(|l| {
        l.trim_end() == "network:" || l.starts_with("network:") && l.trim_end().ends_with(':')
    });
    let Some(network) = network else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("network:\n  {key}: [{quoted}]\n"));
        return out;
    };
    // The block under `network:`: the following lines indented more (blank and comment
    // lines included), up to the first line that is not.
    let mut end = network + 1;
    let mut child_indent = None;
    while end < lines.len() {
        let line = &lines[end];
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            end += 1;
            continue;
        }
        if indent_of(line) == 0 {
            break;
        }
        child_indent.get_or_insert(indent_of(line));
        end += 1;
    }
    let child = child_indent.unwrap_or(2);
    let prefix = format!("{key}:");
    let key_line = (network + 1..end)
        .find(|&i| indent_of(&lines[i]) == child && lines[i].trim_start().starts_with(&prefix));
    let Some(at) = key_line else {
        lines.insert(
            network + 1,
            format!("{}{key}: [{quoted}]", " ".repeat(child)),
        );
        return join(lines, text);
    };
    let rest = lines[at].trim_start()[prefix.len()..].to_string();
    let value = rest.split(" #").next().unwrap_or("").trim().to_string();
    if value.starts_with('[') {
        // Flow style on one line: before the closing bracket.
        if let Some(close) = lines[at].rfind(']') {
            let inside = lines[at][..close].trim_end();
            let sep = if inside.ends_with('[') { "" } else { ", " };
            let line = &lines[at];
            let new = format!("{}{sep}{quoted}{}", &line[..close], &line[close..]);
            lines[at] = new;
        }
        return join(lines, text);
    }
    if value.is_empty() {
        // Block style: after the last `- item` of the list.
        let mut last = at;
        let mut item_indent = None;
        for (i, line) in lines.iter().enumerate().take(end).skip(at + 1) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if trimmed.starts_with("- ") || trimmed == "-" {
                if indent_of(line) < child {
                    break;
                }
                item_indent.get_or_insert(indent_of(line));
                last = i;
                continue;
            }
            break;
        }
        let indent = item_indent.unwrap_or(child + 2);
        lines.insert(last + 1, format!("{}- {quoted}", " ".repeat(indent)));
        return join(lines, text);
    }
    // Some other form (`allow: null`, an anchor): replaced by a flow list with the
    // rule, which the check after the edit confirms or refuses.
    lines[at] = format!("{}{key}: [{quoted}]", " ".repeat(child));
    join(lines, text)
}

fn join(lines: Vec<String>, original: &str) -> String {
    let mut out = lines.join("\n");
    if original.ends_with('\n') || original.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(text: &str, list: List, pattern: &str) -> String {
        match add(text, list, pattern).unwrap() {
            Added::Changed(t) => t,
            Added::AlreadyThere => panic!("already there"),
        }
    }

    #[test]
    fn flow_lists_get_the_rule_before_the_bracket_and_comments_stay() {
        let text = "# my proxy\nlisten: 127.0.0.1:8877\nnetwork:\n  mode: custom  # careful\n  allow: [\"a.example.com\"]  # ours\n  deny: []\n";
        let out = changed(text, List::Allow, "b.example.com");
        assert!(
            out.contains("  allow: [\"a.example.com\", \"b.example.com\"]  # ours\n"),
            "{out}"
        );
        assert!(
            out.starts_with("# my proxy\n") && out.contains("# careful"),
            "{out}"
        );
        let out = changed(&out, List::Deny, "gist.github.com");
        assert!(out.contains("  deny: [\"gist.github.com\"]\n"), "{out}");
        assert_eq!(
            add(&out, List::Allow, "B.example.com.").unwrap(),
            Added::AlreadyThere
        );
    }

    #[test]
    fn block_lists_get_a_new_item_after_the_last() {
        let text = "network:\n  allow:\n    - a.example.com   # first\n    # a comment\n    - c.example.com\n  intercept: secrets\nrefusals: tls\n";
        let out = changed(text, List::Allow, "*.b.example.com");
        assert!(
            out.contains("    - c.example.com\n    - \"*.b.example.com\"\n  intercept: secrets\n"),
            "{out}"
        );
        assert!(out.contains("# first") && out.contains("# a comment"));
    }

    #[test]
    fn a_missing_list_or_section_is_created() {
        let out = changed("network:\n  mode: custom\n", List::Deny, "x.example.com");
        assert!(
            out.contains("network:\n  deny: [\"x.example.com\"]\n  mode: custom\n"),
            "{out}"
        );
        let out = changed("listen: 127.0.0.1:0", List::Allow, "x.example.com");
        assert_eq!(
            out,
            "listen: 127.0.0.1:0\nnetwork:\n  allow: [\"x.example.com\"]\n"
        );
        let out = changed("", List::Allow, "x.example.com:8443");
        assert_eq!(out, "network:\n  allow: [\"x.example.com:8443\"]\n");
    }

    #[test]
    fn bad_patterns_and_bad_files_are_refused() {
        assert!(add("", List::Allow, "exa*mple.com").is_err());
        assert!(add("network: [oops", List::Allow, "a.example.com").is_err());
    }
}
