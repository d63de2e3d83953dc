//! The service's `EnvironmentFile=` (`/etc/ecko/environment`), read the way
//! systemd reads it, for tools that must see the configuration as the
//! service will: `ecko-gateway low-ports`, run by the unit's generator
//! before the service has an environment.
//!
//! The subset read: one `NAME=value` per line; blank lines and lines
//! starting with `#` or `;` are skipped; spaces around the name and the
//! value are dropped; a value in single quotes is taken as written, one in
//! double quotes with `\"`, `\\` and `\$` unescaped. A line without `=` or
//! with a name that is not `[A-Za-z_][A-Za-z0-9_]*` is skipped, as systemd
//! skips it (with a warning in its log).

use std::collections::BTreeMap;

/// The variables `text` sets; a later line wins over an earlier one.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if !is_name(name) {
            continue;
        }
        vars.insert(name.to_string(), unquote(value.trim()));
    }
    vars
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_string();
    }
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next @ ('"' | '\\' | '$'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_read_with_comments_quotes_and_spaces_dropped() {
        let vars = parse(
            "# ports\n; also a comment\n\nECKO_ADMIN_PORT=443\n  ECKO_MLLP_PORT = 104 \n\
             QUOTED=\"a \\\"b\\\" \\\\ \\$c\"\nSINGLE='x \\\" y'\nEMPTY=\n",
        );
        assert_eq!(vars["ECKO_ADMIN_PORT"], "443");
        assert_eq!(vars["ECKO_MLLP_PORT"], "104");
        assert_eq!(vars["QUOTED"], "a \"b\" \\ $c");
        assert_eq!(vars["SINGLE"], "x \\\" y");
        assert_eq!(vars["EMPTY"], "");
        assert_eq!(vars.len(), 5);
    }

    #[test]
    fn lines_systemd_skips_are_skipped_and_the_last_assignment_wins() {
        let vars = parse("no equals sign\n1BAD=x\nBAD NAME=x\n=x\nA=1\nA=2\n\"Q\"=3\n");
        assert_eq!(vars.len(), 1, "{vars:?}");
        assert_eq!(vars["A"], "2");
    }

    #[test]
    fn a_lone_quote_is_kept_as_written() {
        assert_eq!(parse("A=\"\nB='\n")["A"], "\"");
        assert_eq!(parse("B='\n")["B"], "'");
    }
}
