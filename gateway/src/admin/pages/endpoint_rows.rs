//! The rows of an endpoint form: settings written as arrays of tables
//! (a REST listener's `[[endpoint.paths]]`), one table a row, each cell a
//! control named `<key>.<row>.<field>` — the name the file's settings
//! have (`paths.0.path`), so a form shown, sent back and shown again with
//! its errors reads the same map.
//!
//! A row without its first field (the path) is no table: emptying it
//! removes the table, and the blank rows at the end add none until typed
//! in. Rows sent back as the file has them change nothing; otherwise the
//! whole array is written again, each row keeping the place and comments
//! of the table it replaces. As for the fields, the loader judges the
//! values.

use crate::config::edit::Change;
use crate::control::config::{typed_value, FieldError};
use crate::endpoints::form::{Kind, Rows};
use minijinja::{context, Value};
use std::collections::BTreeMap;

/// The row groups of an endpoint type.
pub fn groups(kind: &str) -> &'static [Rows] {
    crate::endpoints::named(kind).map_or(&[], |t| t.rows())
}

fn cell(rows: &Rows, row: usize, field: &str) -> String {
    format!("{}.{row}.{field}", rows.key)
}

/// How many rows `values` has of `rows` (the highest number used, plus
/// one).
fn count(rows: &Rows, values: &BTreeMap<String, String>) -> usize {
    let prefix = format!("{}.", rows.key);
    values
        .keys()
        .filter_map(|k| {
            k.strip_prefix(&prefix)?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .map(|n| n + 1)
        .max()
        .unwrap_or(0)
}

/// The tables `values` gives: each row's non-empty cells, rows without
/// their first field left out.
fn tables(
    rows: &Rows,
    values: &BTreeMap<String, String>,
) -> Vec<Vec<(&'static str, Kind, String)>> {
    (0..count(rows, values))
        .filter_map(|i| {
            let row: Vec<(&'static str, Kind, String)> = rows
                .fields
                .iter()
                .filter_map(|f| {
                    let v = values.get(&cell(rows, i, f.key))?.trim();
                    (!v.is_empty()).then(|| (f.key, f.kind, v.to_string()))
                })
                .collect();
            let first = rows.fields.first()?.key;
            row.iter().any(|(k, _, _)| *k == first).then_some(row)
        })
        .collect()
}

/// The changes the submitted rows make to an endpoint whose settings are
/// now `current`: one per group whose tables differ from the file's.
pub fn changes(
    kind: &str,
    submitted: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> Vec<(String, Change)> {
    let mut out = Vec::new();
    for rows in groups(kind) {
        // A form without the group's controls (an API client) leaves it.
        let prefix = format!("{}.", rows.key);
        if !submitted.keys().any(|k| k.starts_with(&prefix)) {
            continue;
        }
        let wanted = tables(rows, submitted);
        if wanted == tables(rows, current) {
            continue;
        }
        let written = wanted
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(k, kind, v)| (k.to_string(), typed_value(kind, &v)))
                    .collect()
            })
            .collect();
        out.push((rows.key.to_string(), Change::Tables(written)));
    }
    out
}

/// Whether an error is about a group's setting.
pub fn is_about(rows: &Rows, error: &FieldError) -> bool {
    error
        .field
        .as_deref()
        .is_some_and(|f| f == rows.key || f.starts_with(&format!("{}.", rows.key)))
}

/// The settings of `settings` that are cells of `kind`'s rows.
pub fn cells_of(kind: &str, settings: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let prefixes: Vec<String> = groups(kind).iter().map(|r| format!("{}.", r.key)).collect();
    settings
        .iter()
        .filter(|(k, _)| prefixes.iter().any(|p| k.starts_with(p.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What `endpoint_form.html` draws of each group: its header, its rows
/// with the values of `values` and blank ones to add, and its errors.
pub fn values(kind: &str, values: &BTreeMap<String, String>, errors: &[FieldError]) -> Vec<Value> {
    groups(kind)
        .iter()
        .map(|rows| {
            let drawn = count(rows, values) + rows.blank;
            let lines: Vec<Vec<Value>> = (0..drawn)
                .map(|i| {
                    rows.fields
                        .iter()
                        .map(|f| {
                            let name = cell(rows, i, f.key);
                            context! {
                                value => values.get(&name).map_or("", String::as_str),
                                name,
                                label => f.label,
                                default => f.default,
                                options => super::endpoint_form::options(f.kind),
                            }
                        })
                        .collect()
                })
                .collect();
            let errors: Vec<&str> = errors
                .iter()
                .filter(|e| is_about(rows, e))
                .map(|e| e.message.as_str())
                .collect();
            context! {
                key => rows.key,
                label => rows.label,
                hint => rows.hint,
                headers => rows.fields.iter().map(|f| f.label).collect::<Vec<_>>(),
                rows => lines,
                errors,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::endpoint_form::tests::map;
    use super::*;
    use crate::config::edit::EditValue;

    #[test]
    fn rows_as_the_file_has_them_change_nothing_and_an_emptied_path_removes_its_table() {
        let current = map(&[
            ("paths.0.path", "/fhir"),
            ("paths.1.path", "/notes"),
            ("paths.1.accept", "text"),
        ]);
        let same = map(&[
            ("paths.0.path", "/fhir"),
            ("paths.0.accept", ""),
            ("paths.1.path", "/notes"),
            ("paths.1.accept", "text"),
            ("paths.2.path", ""),
            ("paths.2.accept", ""),
        ]);
        assert!(changes("rest", &same, &current).is_empty());
        let mut removed = same.clone();
        removed.insert("paths.0.path".into(), " ".into());
        removed.insert("paths.2.path".into(), "/orders".into());
        removed.insert("paths.2.accept".into(), "json".into());
        assert_eq!(
            changes("rest", &removed, &current),
            [(
                "paths".to_string(),
                Change::Tables(vec![
                    vec![
                        ("path".into(), EditValue::String("/notes".into())),
                        ("accept".into(), EditValue::String("text".into())),
                    ],
                    vec![
                        ("path".into(), EditValue::String("/orders".into())),
                        ("accept".into(), EditValue::String("json".into())),
                    ],
                ])
            )]
        );
        // Without the group's controls (the JSON API), the rows stay.
        assert!(changes("rest", &map(&[("listen", "127.0.0.1:1")]), &current).is_empty());
        assert!(groups("mllp").is_empty());
    }
}
