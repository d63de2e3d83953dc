//! `${NAME}` and `${NAME:-default}` references in the configuration text.
//!
//! Expansion happens on the raw text before TOML parsing, so a variable may
//! stand anywhere a value may (`port = ${ECKO_MLLP_PORT:-2575}` stays an
//! integer). Error locations must still point into the file the operator
//! wrote, so the expansion keeps a map from every expanded byte offset back to
//! the original one. A value may not contain a line break: that keeps line
//! numbers identical before and after expansion. `$${` writes a literal `${`.

/// The expanded text and the way back to the original offsets.
#[derive(Debug)]
pub struct Expanded {
    pub text: String,
    /// (expanded offset, original offset) at the start of every piece; pieces
    /// that came from a variable map every byte to the `$` of the reference.
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    expanded_start: usize,
    original_start: usize,
    len: usize,
    literal: bool,
}

/// A reference that could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    pub offset: usize,
    pub message: String,
}

impl Expanded {
    /// Maps an offset in the expanded text back to the operator's file.
    pub fn original_offset(&self, expanded: usize) -> usize {
        let idx = self
            .pieces
            .partition_point(|p| p.expanded_start <= expanded)
            .saturating_sub(1);
        match self.pieces.get(idx) {
            Some(p) if p.literal => p.original_start + (expanded - p.expanded_start).min(p.len),
            Some(p) => p.original_start,
            None => expanded,
        }
    }
}

/// Expands every reference using `lookup` for the environment.
pub fn expand(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Expanded, Vec<EnvError>> {
    let mut text = String::with_capacity(input.len());
    let mut pieces = Vec::new();
    let mut errors = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    let bytes = input.as_bytes();

    let push_literal = |text: &mut String, pieces: &mut Vec<Piece>, from: usize, to: usize| {
        if to > from {
            pieces.push(Piece {
                expanded_start: text.len(),
                original_start: from,
                len: to - from,
                literal: true,
            });
            text.push_str(&input[from..to]);
        }
    };

    while i < bytes.len() {
        if bytes[i] == b'#' && !inside_string(input, i) {
            // Comments are copied verbatim: a `${` in a comment is prose.
            let end = input[i..].find('\n').map_or(input.len(), |n| i + n);
            i = end;
            continue;
        }
        if input[i..].starts_with("$${") {
            push_literal(&mut text, &mut pieces, literal_start, i);
            literal_start = i + 1;
            i += 3;
            continue;
        }
        if !input[i..].starts_with("${") {
            i += input[i..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        push_literal(&mut text, &mut pieces, literal_start, i);
        let Some(close) = input[i..].find('}').map(|n| i + n) else {
            errors.push(EnvError {
                offset: i,
                message: "`${` is not closed by `}`".into(),
            });
            literal_start = input.len();
            break;
        };
        let inner = &input[i + 2..close];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let value = if !is_variable_name(name) {
            errors.push(EnvError {
                offset: i,
                message: format!(
                    "`{name}` is not a variable name (expected letters, digits and `_`)"
                ),
            });
            None
        } else {
            match (lookup(name), default) {
                (Some(v), _) if !v.is_empty() => Some(v),
                (_, Some(d)) => Some(d.to_string()),
                (Some(v), None) => Some(v),
                (None, None) => {
                    errors.push(EnvError {
                        offset: i,
                        message: format!(
                            "environment variable `{name}` is not set and has no default (write `${{{name}:-default}}`)"
                        ),
                    });
                    None
                }
            }
        };
        let value = value.and_then(|value| match string_at(input, i) {
            // Inside a quoted value the variable's text is data, never TOML:
            // a secret with a quote or a backslash must arrive unchanged.
            Some('"') => Some(escape_basic(&value)),
            Some(_) if value.contains('\'') => {
                errors.push(EnvError {
                    offset: i,
                    message: format!(
                        "the value of `{name}` contains `'`, which a '...' string cannot hold (use \"...\")"
                    ),
                });
                None
            }
            _ => Some(value),
        });
        if let Some(value) = value {
            if value.contains(['\n', '\r']) {
                errors.push(EnvError {
                    offset: i,
                    message: format!("the value of `{name}` contains a line break"),
                });
            } else {
                pieces.push(Piece {
                    expanded_start: text.len(),
                    original_start: i,
                    len: value.len(),
                    literal: false,
                });
                text.push_str(&value);
            }
        }
        i = close + 1;
        literal_start = i;
    }
    push_literal(&mut text, &mut pieces, literal_start, input.len());

    if errors.is_empty() {
        Ok(Expanded { text, pieces })
    } else {
        Err(errors)
    }
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether byte `at` lies inside a basic or literal string on its line.
pub(super) fn inside_string(input: &str, at: usize) -> bool {
    string_at(input, at).is_some()
}

/// The quote of the string byte `at` lies in on its line, if any.
/// Multi-line strings are rare in this file and are treated as plain text.
fn string_at(input: &str, at: usize) -> Option<char> {
    let line_start = input[..at].rfind('\n').map_or(0, |n| n + 1);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in input[line_start..at].chars() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {}
        }
    }
    quote
}

/// `value` written so that a TOML basic string reads it back unchanged.
fn escape_basic(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && c != '\n' && c != '\r' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("2600".into()),
            "EMPTY" => Some(String::new()),
            "MULTI" => Some("a\nb".into()),
            "SECRET" => Some(r#"p"a\ss'w"#.into()),
            _ => None,
        }
    }

    #[test]
    fn a_set_variable_replaces_its_reference() {
        let e = expand("port = ${PORT}\n", env).unwrap();
        assert_eq!(e.text, "port = 2600\n");
    }

    #[test]
    fn an_unset_variable_takes_its_default() {
        let e = expand("port = ${NOPE:-2575}", env).unwrap();
        assert_eq!(e.text, "port = 2575");
    }

    #[test]
    fn an_empty_variable_takes_its_default_like_the_shell() {
        let e = expand("x = \"${EMPTY:-d}\"", env).unwrap();
        assert_eq!(e.text, "x = \"d\"");
    }

    #[test]
    fn an_unset_variable_without_default_is_an_error_at_its_reference() {
        let errs = expand("a = 1\nb = ${NOPE}", env).unwrap_err();
        assert_eq!(errs[0].offset, 10);
        assert!(errs[0].message.contains("NOPE"));
    }

    #[test]
    fn a_double_dollar_writes_a_literal_reference() {
        let e = expand("x = \"$${HOME}\"", env).unwrap();
        assert_eq!(e.text, "x = \"${HOME}\"");
    }

    #[test]
    fn references_in_comments_are_left_alone() {
        let e = expand("# uses ${NOPE}\nx = 1", env).unwrap();
        assert_eq!(e.text, "# uses ${NOPE}\nx = 1");
    }

    #[test]
    fn a_hash_inside_a_string_does_not_start_a_comment() {
        let e = expand("x = \"#${PORT}\"", env).unwrap();
        assert_eq!(e.text, "x = \"#2600\"");
    }

    #[test]
    fn a_secret_with_quotes_and_backslashes_arrives_unchanged_in_a_quoted_value() {
        let e = expand("key = \"${SECRET}\"\n", env).unwrap();
        let table: toml::Table = toml::from_str(&e.text).unwrap();
        assert_eq!(table["key"].as_str(), Some(r#"p"a\ss'w"#));
    }

    #[test]
    fn a_quote_cannot_go_into_a_literal_string_and_says_so() {
        let errs = expand("key = '${SECRET}'", env).unwrap_err();
        assert!(errs[0].message.contains("'...'"), "{}", errs[0].message);
    }

    #[test]
    fn an_unquoted_reference_is_toml_text_so_a_port_stays_an_integer() {
        let e = expand("port = ${PORT}", env).unwrap();
        let table: toml::Table = toml::from_str(&e.text).unwrap();
        assert_eq!(table["port"].as_integer(), Some(2600));
    }

    #[test]
    fn a_value_with_a_line_break_is_refused() {
        assert!(expand("x = \"${MULTI}\"", env).is_err());
    }

    #[test]
    fn offsets_after_an_expansion_map_back_to_the_original_text() {
        let src = "a = ${PORT:-1} # c\nbad";
        let e = expand(src, env).unwrap();
        let expanded_bad = e.text.find("bad").unwrap();
        assert_eq!(e.original_offset(expanded_bad), src.find("bad").unwrap());
        let expanded_value = e.text.find("2600").unwrap();
        assert_eq!(e.original_offset(expanded_value), src.find("${").unwrap());
    }
}
