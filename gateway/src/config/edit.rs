//! Editing the configuration file in place, keeping what the operator wrote.
//!
//! An edit (from the admin page) changes a few keys of one table; everything
//! else of the file must come back byte for byte: comments, blank lines, key
//! order, quoting, and `${NAME:-default}` references. The file is edited with
//! `toml_edit`, which keeps all of that, and the result is validated by the
//! same [`Config::parse`](super::Config::parse) that reads the file at start.
//!
//! `${...}` may stand outside a string (`port = ${ECKO_PORT:-2575}`), which
//! is not TOML until expanded. Before parsing, every such bare reference is
//! replaced by a unique placeholder string; writing the text back puts the
//! reference itself back. References inside strings are plain string
//! content to TOML and survive as they are. A value shown for editing is
//! what the file holds (the reference, not its expansion), so an untouched
//! field is written back untouched.

use super::env::inside_string;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, TableLike, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the configuration file cannot be edited here: {0}")]
    Unreadable(String),
    #[error("there is no endpoint `{0}` in the configuration file")]
    UnknownEndpoint(String),
    #[error("there is no route `{0}` in the configuration file")]
    UnknownRoute(String),
    #[error("an endpoint named `{0}` exists already")]
    Exists(String),
    #[error("a route named `{0}` exists already")]
    RouteExists(String),
    #[error("`{0}` is written in a shape the editor does not change; edit the file")]
    Shape(String),
}

/// A new value for one key.
#[derive(Debug, Clone, PartialEq)]
pub enum EditValue {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// A bare `${NAME:-default}` reference, written without quotes.
    Reference(String),
    Strings(Vec<String>),
}

/// What an edit does to one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Remove the key (the setting goes back to its default).
    Remove,
    Set(EditValue),
    /// Replace the tables `[[endpoint.<key>]]` with these rows, each its
    /// keys and values; none removes them. A row keeps the place (and so
    /// the comments) of the table it replaces.
    Tables(Vec<Vec<(String, EditValue)>>),
}

/// The configuration file, parsed for editing.
#[derive(Debug, Clone)]
pub struct ConfigDocument {
    doc: DocumentMut,
    marker: String,
    /// Bare references, by placeholder number.
    references: Vec<String>,
}

/// Where a key sits in a text: its dotted name and the (line, column) of its
/// first and last character, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpan {
    pub key: String,
    pub start: (usize, usize),
    pub end: (usize, usize),
}

impl ConfigDocument {
    pub fn parse(text: &str) -> Result<ConfigDocument, EditError> {
        let marker = format!("__ecko_ref_{:08x}_", rand::random::<u32>());
        let (protected, references) = protect(text, &marker);
        let doc: DocumentMut = protected
            .parse()
            .map_err(|e: toml_edit::TomlError| EditError::Unreadable(e.message().to_string()))?;
        Ok(ConfigDocument {
            doc,
            marker,
            references,
        })
    }

    /// The file's text, with every bare reference back in place.
    pub fn to_text(&self) -> String {
        self.restore(&self.doc.to_string())
    }

    fn endpoints(&self) -> Option<&toml_edit::ArrayOfTables> {
        self.doc.get("endpoint").and_then(Item::as_array_of_tables)
    }

    pub fn endpoint_names(&self) -> Vec<String> {
        self.endpoints()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.get("name").and_then(Item::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn endpoint(&self, name: &str) -> Option<&Table> {
        self.endpoints()?
            .iter()
            .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
    }

    fn endpoint_mut(&mut self, name: &str) -> Result<&mut Table, EditError> {
        self.doc
            .get_mut("endpoint")
            .and_then(Item::as_array_of_tables_mut)
            .and_then(|a| {
                a.iter_mut()
                    .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
            })
            .ok_or_else(|| EditError::UnknownEndpoint(name.to_string()))
    }

    /// Every key of an endpoint as the file writes it: nested tables as
    /// dotted keys (`tls.cert`), the tables of an array of tables by their
    /// number (`paths.0.path`), references as references, strings without
    /// their quotes, arrays and deeper tables as TOML.
    pub fn endpoint_settings(&self, name: &str) -> Option<Vec<(String, String)>> {
        let table = self.endpoint(name)?;
        let mut out = Vec::new();
        self.flatten(table, "", &mut out);
        Some(out)
    }

    fn flatten(&self, table: &dyn TableLike, prefix: &str, out: &mut Vec<(String, String)>) {
        for (key, item) in table.iter() {
            let dotted = format!("{prefix}{key}");
            match item {
                Item::Value(Value::InlineTable(t)) if prefix.is_empty() => {
                    self.flatten(t, &format!("{dotted}."), out)
                }
                Item::Table(t) if prefix.is_empty() => self.flatten(t, &format!("{dotted}."), out),
                Item::Value(v) => out.push((dotted, self.display(v))),
                Item::Table(t) => out.push((dotted, t.to_string().trim().to_string())),
                Item::ArrayOfTables(tables) if prefix.is_empty() => {
                    for (i, t) in tables.iter().enumerate() {
                        self.flatten(t, &format!("{dotted}.{i}."), out);
                    }
                }
                Item::ArrayOfTables(_) | Item::None => {}
            }
        }
    }

    /// A value as the operator wrote it.
    fn display(&self, v: &Value) -> String {
        match v {
            Value::String(s) => {
                let s = s.value();
                match s
                    .strip_prefix(&self.marker)
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(n) => self.references.get(n).cloned().unwrap_or_default(),
                    None => s.to_string(),
                }
            }
            other => {
                let mut v = other.clone();
                v.decor_mut().clear();
                self.restore(&v.to_string())
            }
        }
    }

    fn restore(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (n, r) in self.references.iter().enumerate() {
            text = text.replace(&format!("\"{}{n}\"", self.marker), r);
        }
        text
    }

    fn value(&mut self, v: &EditValue) -> Value {
        match v {
            EditValue::String(s) => Value::from(s.as_str()),
            EditValue::Integer(i) => Value::from(*i),
            EditValue::Float(f) => Value::from(*f),
            EditValue::Bool(b) => Value::from(*b),
            EditValue::Reference(r) => {
                self.references.push(r.clone());
                Value::from(format!("{}{}", self.marker, self.references.len() - 1))
            }
            EditValue::Strings(items) => {
                let mut a = Array::new();
                for i in items {
                    a.push(i.as_str());
                }
                Value::Array(a)
            }
        }
    }

    /// Applies `changes` (dotted keys, one level of nesting) to an endpoint.
    pub fn edit_endpoint(
        &mut self,
        name: &str,
        changes: &[(String, Change)],
    ) -> Result<(), EditError> {
        enum Prepared {
            Value(Option<Value>),
            Tables(Vec<Vec<(String, Value)>>),
        }
        let changes: Vec<(String, Prepared)> = changes
            .iter()
            .map(|(k, c)| {
                let prepared = match c {
                    Change::Remove => Prepared::Value(None),
                    Change::Set(v) => Prepared::Value(Some(self.value(v))),
                    Change::Tables(rows) => Prepared::Tables(
                        rows.iter()
                            .map(|row| {
                                row.iter()
                                    .map(|(k, v)| (k.clone(), self.value(v)))
                                    .collect()
                            })
                            .collect(),
                    ),
                };
                (k.clone(), prepared)
            })
            .collect();
        let table = self.endpoint_mut(name)?;
        for (key, change) in changes {
            match change {
                Prepared::Value(value) => set_dotted(table, &key, value)?,
                Prepared::Tables(rows) => set_tables(table, &key, rows)?,
            }
        }
        Ok(())
    }

    /// Sets (or, with no targets, removes) `code` in the table
    /// `[endpoint.code_map_by_source.<source>]` of the endpoint `name`:
    /// one LOINC without display or unit as a string, one with them as an
    /// inline table, several as an array of inline tables. The table is
    /// created (as its own `[...]` header) when missing.
    pub fn set_code_map(
        &mut self,
        name: &str,
        source: &str,
        code: &str,
        targets: &[super::LoincTarget],
    ) -> Result<(), EditError> {
        let value = match targets {
            [] => None,
            [only] if only.display.is_none() && only.unit.is_none() => {
                Some(Value::from(only.code.as_str()))
            }
            [only] => Some(Value::InlineTable(target_table(only))),
            many => {
                let mut a = Array::new();
                for t in many {
                    a.push(target_table(t));
                }
                Some(Value::Array(a))
            }
        };
        let endpoint = self.endpoint_mut(name)?;
        let by_source = endpoint.entry("code_map_by_source").or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        let Some(by_source) = by_source.as_table_like_mut() else {
            return Err(EditError::Shape("code_map_by_source".into()));
        };
        let map = by_source.entry(source).or_insert(Item::Table(Table::new()));
        let Some(map) = map.as_table_like_mut() else {
            return Err(EditError::Shape(format!("code_map_by_source.{source}")));
        };
        match value {
            Some(v) => {
                map.insert(code, Item::Value(v));
            }
            None => {
                map.remove(code);
            }
        }
        Ok(())
    }

    /// Appends a new `[[endpoint]]` after the last one.
    pub fn add_endpoint(
        &mut self,
        name: &str,
        kind: &str,
        changes: &[(String, Change)],
    ) -> Result<(), EditError> {
        if self.endpoint(name).is_some() {
            return Err(EditError::Exists(name.to_string()));
        }
        let mut table = Table::new();
        table.decor_mut().set_prefix("\n");
        table.insert("name", toml_edit::value(name));
        table.insert("type", toml_edit::value(kind));
        let item = self
            .doc
            .entry("endpoint")
            .or_insert_with(|| Item::ArrayOfTables(toml_edit::ArrayOfTables::new()));
        let Some(array) = item.as_array_of_tables_mut() else {
            return Err(EditError::Shape("endpoint".into()));
        };
        array.push(table);
        self.edit_endpoint(name, changes)
    }

    /// Sets `enabled` of an endpoint; `enabled = true` is written only where
    /// the file said otherwise, since it is the default.
    pub fn set_enabled(&mut self, name: &str, enabled: bool) -> Result<(), EditError> {
        let table = self.endpoint_mut(name)?;
        if enabled && !table.contains_key("enabled") {
            return Ok(());
        }
        set_dotted(table, "enabled", Some(Value::from(enabled)))
    }

    /// A key of a top-level section (`[journal]`, `[site]`) as written.
    pub fn section_value(&self, section: &str, key: &str) -> Option<String> {
        let v = self
            .doc
            .get(section)?
            .as_table_like()?
            .get(key)?
            .as_value()?;
        Some(self.display(v))
    }

    /// The top-level tables `names` of this file (those it has) as a text
    /// of their own, comments and references as written, without the
    /// sub-tables `without` names as `(table, key)`.
    pub fn tables_text(&self, names: &[&str], without: &[(&str, &str)]) -> String {
        let mut out = DocumentMut::new();
        for name in names {
            let Some(item) = self.doc.get(name) else {
                continue;
            };
            let mut item = item.clone();
            if let Some(table) = item.as_table_like_mut() {
                for (_, key) in without.iter().filter(|(t, _)| t == name) {
                    table.remove(key);
                }
            }
            out.insert(name, item);
        }
        self.restore(&out.to_string())
    }

    /// Sets or removes a key of a top-level section, creating the section
    /// when needed.
    pub fn set_section_value(
        &mut self,
        section: &str,
        key: &str,
        change: &Change,
    ) -> Result<(), EditError> {
        let value = match change {
            Change::Remove => None,
            Change::Set(v) => Some(self.value(v)),
            Change::Tables(_) => return Err(EditError::Shape(format!("{section}.{key}"))),
        };
        if value.is_none() && self.doc.get(section).is_none() {
            return Ok(());
        }
        let item = self.doc.entry(section).or_insert_with(|| {
            let mut t = Table::new();
            t.decor_mut().set_prefix("\n");
            Item::Table(t)
        });
        let Some(table) = item.as_table_like_mut() else {
            return Err(EditError::Shape(section.to_string()));
        };
        set_in(table, key, value);
        Ok(())
    }

    pub fn route_names(&self) -> Vec<String> {
        self.doc
            .get("route")
            .and_then(Item::as_array_of_tables)
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.get("name").and_then(Item::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Adds `endpoint` to the `from` (or `to`) list of a route.
    pub fn attach_to_route(
        &mut self,
        route: &str,
        side: &str,
        endpoint: &str,
    ) -> Result<(), EditError> {
        let table = self
            .doc
            .get_mut("route")
            .and_then(Item::as_array_of_tables_mut)
            .and_then(|a| {
                a.iter_mut()
                    .find(|t| t.get("name").and_then(Item::as_str) == Some(route))
            })
            .ok_or_else(|| EditError::UnknownRoute(route.to_string()))?;
        let list = table
            .entry(side)
            .or_insert_with(|| toml_edit::value(Array::new()));
        let Some(array) = list.as_array_mut() else {
            return Err(EditError::Shape(format!("route `{route}` `{side}`")));
        };
        if !array.iter().any(|v| v.as_str() == Some(endpoint)) {
            array.push(endpoint);
        }
        Ok(())
    }

    /// Every `[[route]]` as TOML text, comments included.
    pub fn routes_text(&self) -> String {
        let mut doc = DocumentMut::new();
        if let Some(routes) = self.doc.get("route") {
            doc.insert("route", routes.clone());
        }
        self.restore(doc.to_string().trim_start())
    }

    /// Replaces every `[[route]]` with those of `fragment`, TOML holding only
    /// `[[route]]` tables. The new routes take the place of the first old
    /// one (at the end of the file when there were none).
    /// `fragment` parsed with its bare references numbered after this
    /// document's own, so its tables can move into this document.
    fn parse_fragment(&mut self, fragment: &str, what: &str) -> Result<DocumentMut, EditError> {
        let (protected, references) = protect(fragment, &self.marker);
        let offset = self.references.len();
        let mut protected = protected;
        for n in (0..references.len()).rev() {
            protected = protected.replace(
                &format!("\"{}{n}\"", self.marker),
                &format!("\"{}{}\"", self.marker, n + offset),
            );
        }
        self.references.extend(references);
        protected.parse().map_err(|e: toml_edit::TomlError| {
            EditError::Unreadable(format!("{what}: {}", e.message()))
        })
    }

    pub fn replace_routes(&mut self, fragment: &str) -> Result<(), EditError> {
        let parsed = self.parse_fragment(fragment, "routes")?;
        if let Some(other) = parsed.iter().map(|(k, _)| k).find(|k| *k != "route") {
            return Err(EditError::Shape(format!(
                "`{other}` in the routes text (only [[route]] tables belong there)"
            )));
        }
        let start = self
            .doc
            .get("route")
            .and_then(Item::as_array_of_tables)
            .and_then(|a| a.iter().next())
            .and_then(Table::position);
        let mut routes = match parsed.get("route") {
            Some(Item::ArrayOfTables(a)) => a.clone(),
            Some(_) => return Err(EditError::Shape("route".into())),
            None => toml_edit::ArrayOfTables::new(),
        };
        // Keep the routes together where the old ones began; a position
        // shared with the tables that follow still sorts them first, since
        // the document orders equal positions as it visits them.
        for t in routes.iter_mut() {
            t.set_position(start);
        }
        // A blank line between the tables before and the first route.
        if let Some(first) = routes.iter_mut().next() {
            let prefix = first
                .decor()
                .prefix()
                .and_then(|p| p.as_str())
                .unwrap_or("")
                .to_string();
            if !prefix.starts_with('\n') {
                first.decor_mut().set_prefix(format!("\n{prefix}"));
            }
        }
        if routes.is_empty() {
            self.doc.remove("route");
        } else {
            self.doc.insert("route", Item::ArrayOfTables(routes));
        }
        Ok(())
    }
}

impl ConfigDocument {
    /// Appends the `[[endpoint]]` and `[[route]]` tables of `fragment` (an
    /// integration template filled in) after the file's own, each with the
    /// comments written above and inside it; a `[template]` table is
    /// dropped, anything else refused. Nothing changes when a name is
    /// taken (by the file or twice in the fragment). Returns the names of
    /// the endpoints and the routes added.
    pub fn add_fragment(
        &mut self,
        fragment: &str,
    ) -> Result<(Vec<String>, Vec<String>), EditError> {
        let mut candidate = self.clone();
        let parsed = candidate.parse_fragment(fragment, "template")?;
        if let Some(other) = parsed
            .iter()
            .map(|(k, _)| k)
            .find(|k| !["endpoint", "route", "template"].contains(k))
        {
            return Err(EditError::Shape(format!(
                "`{other}` in a template (only [[endpoint]] and [[route]] tables belong there)"
            )));
        }
        let mut endpoints = candidate.endpoint_names();
        let mut routes = candidate.route_names();
        let (mut new_endpoints, mut new_routes) = (Vec::new(), Vec::new());
        for (key, taken, added, clash) in [
            (
                "endpoint",
                &mut endpoints,
                &mut new_endpoints,
                EditError::Exists as fn(String) -> EditError,
            ),
            (
                "route",
                &mut routes,
                &mut new_routes,
                EditError::RouteExists,
            ),
        ] {
            let Some(item) = parsed.get(key) else {
                continue;
            };
            let Some(tables) = item.as_array_of_tables() else {
                return Err(EditError::Shape(format!("`{key}` in a template")));
            };
            for table in tables.iter() {
                let name = table
                    .get("name")
                    .and_then(Item::as_str)
                    .unwrap_or_default()
                    .to_string();
                if taken.contains(&name) {
                    return Err(clash(name));
                }
                taken.push(name.clone());
                added.push(name);
                let mut table = table.clone();
                // Placed after the file's last table of the same kind.
                clear_positions(&mut table);
                let array = candidate
                    .doc
                    .entry(key)
                    .or_insert_with(|| Item::ArrayOfTables(toml_edit::ArrayOfTables::new()));
                let Some(array) = array.as_array_of_tables_mut() else {
                    return Err(EditError::Shape(key.to_string()));
                };
                if let Some(first) = table.decor().prefix().and_then(|p| p.as_str()) {
                    if !first.starts_with('\n') {
                        let spaced = format!("\n{first}");
                        table.decor_mut().set_prefix(spaced);
                    }
                }
                array.push(table);
            }
        }
        *self = candidate;
        Ok((new_endpoints, new_routes))
    }
}

/// Forgets where a table and its sub-tables stood in the text they were
/// parsed from, so that they print after the table before them.
fn clear_positions(table: &mut Table) {
    table.set_position(None);
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(t) => clear_positions(t),
            Item::ArrayOfTables(a) => a.iter_mut().for_each(clear_positions),
            _ => {}
        }
    }
}

/// Sets (or with `None` removes) one dotted key (`retry.initial`) in an
/// endpoint table, keeping the decor of a replaced value.
fn target_table(t: &super::LoincTarget) -> InlineTable {
    let mut table = InlineTable::new();
    table.insert("code", Value::from(t.code.as_str()));
    if let Some(d) = &t.display {
        table.insert("display", Value::from(d.as_str()));
    }
    if let Some(u) = &t.unit {
        table.insert("unit", Value::from(u.as_str()));
    }
    table
}

fn set_dotted(table: &mut Table, key: &str, value: Option<Value>) -> Result<(), EditError> {
    match key.split_once('.') {
        None => {
            set_in(table, key, value);
            Ok(())
        }
        Some((outer, inner)) => {
            if value.is_none() && !table.contains_key(outer) {
                return Ok(());
            }
            let nested = table
                .entry(outer)
                .or_insert_with(|| toml_edit::value(InlineTable::new()));
            let Some(nested_table) = nested.as_table_like_mut() else {
                return Err(EditError::Shape(outer.to_string()));
            };
            if inner.contains('.') {
                return Err(EditError::Shape(key.to_string()));
            }
            set_in(nested_table, inner, value);
            if nested_table.is_empty() {
                table.remove(outer);
            }
            Ok(())
        }
    }
}

/// Replaces the array of tables `key` of `table` with `rows`; each row
/// that replaces a table keeps its place in the file, its comments and the
/// spelling of the values it leaves as they were.
fn set_tables(
    table: &mut Table,
    key: &str,
    rows: Vec<Vec<(String, Value)>>,
) -> Result<(), EditError> {
    if key.contains('.') {
        return Err(EditError::Shape(key.to_string()));
    }
    if rows.is_empty() {
        table.remove(key);
        return Ok(());
    }
    let old: Vec<Table> = match table.get(key) {
        None => Vec::new(),
        Some(Item::ArrayOfTables(a)) => a.iter().cloned().collect(),
        Some(_) => return Err(EditError::Shape(key.to_string())),
    };
    let mut array = toml_edit::ArrayOfTables::new();
    for (i, row) in rows.into_iter().enumerate() {
        let mut t = old.get(i).cloned().unwrap_or_default();
        let keep: Vec<String> = t.iter().map(|(k, _)| k.to_string()).collect();
        for k in keep {
            if !row.iter().any(|(r, _)| *r == k) {
                t.remove(&k);
            }
        }
        for (k, v) in row {
            let same = t
                .get(&k)
                .and_then(Item::as_value)
                .is_some_and(|old| old.to_string().trim() == v.to_string().trim());
            if !same {
                set_in(&mut t, &k, Some(v));
            }
        }
        array.push(t);
    }
    table.insert(key, Item::ArrayOfTables(array));
    Ok(())
}

fn set_in(table: &mut dyn TableLike, key: &str, value: Option<Value>) {
    match value {
        None => {
            table.remove(key);
        }
        Some(mut v) => match table.get_mut(key) {
            Some(Item::Value(old)) => {
                let decor = old.decor().clone();
                *v.decor_mut() = decor;
                *old = v;
            }
            Some(other) => *other = Item::Value(v),
            None => {
                table.insert(key, Item::Value(v));
            }
        },
    }
}

/// Replaces every bare `${...}` (outside strings and comments) by a quoted
/// placeholder `"<marker><n>"`; returns the references by number.
fn protect(text: &str, marker: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut references = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with('#') && !inside_string(text, i) {
            let end = rest.find('\n').map_or(text.len(), |n| i + n);
            out.push_str(&text[i..end]);
            i = end;
            continue;
        }
        if rest.starts_with("$${") {
            out.push_str("$${");
            i += 3;
            continue;
        }
        if rest.starts_with("${") && !inside_string(text, i) {
            if let Some(close) = rest.find('}') {
                out.push_str(&format!("\"{marker}{}\"", references.len()));
                references.push(rest[..=close].to_string());
                i += close + 1;
                continue;
            }
        }
        let c = rest.chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + c]);
        i += c;
    }
    (out, references)
}

/// Which table of the file a list of key positions is about.
#[derive(Debug, Clone, Copy)]
pub enum TablePath<'a> {
    /// The `[[endpoint]]` with this name.
    Endpoint(&'a str),
    /// A top-level section such as `[journal]`.
    Section(&'a str),
}

/// Where each key of one table is written in `text`: keys of nested tables
/// dotted (`tls.cert`). Empty when the text does not parse or has no such
/// table.
pub fn key_spans(text: &str, path: TablePath<'_>) -> Vec<KeySpan> {
    let (protected, _) = protect(text, "__ecko_span_");
    let Ok(doc) = toml_edit::Document::parse(protected.as_str()) else {
        return Vec::new();
    };
    let table: Option<&dyn TableLike> = match path {
        TablePath::Endpoint(name) => doc
            .get("endpoint")
            .and_then(Item::as_array_of_tables)
            .and_then(|a| {
                a.iter()
                    .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
            })
            .map(|t| t as &dyn TableLike),
        TablePath::Section(name) => doc.get(name).and_then(Item::as_table_like),
    };
    let Some(table) = table else {
        return Vec::new();
    };
    let position = |offset: usize| {
        let offset = offset.min(protected.len());
        let before = &protected[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |n| n + 1);
        (line, protected[line_start..offset].chars().count() + 1)
    };
    let mut out = Vec::new();
    let mut add = |key: String, k: &toml_edit::Key, item: &Item| {
        let start = k.span().map(|s| s.start);
        let end = item.span().map(|s| s.end.saturating_sub(1)).or(start);
        if let (Some(start), Some(end)) = (start, end) {
            out.push(KeySpan {
                key,
                start: position(start),
                end: position(end),
            });
        }
    };
    let mut arrays: Vec<(String, (usize, usize))> = Vec::new();
    for (key, item) in table.iter() {
        let Some((k, _)) = table.get_key_value(key) else {
            continue;
        };
        add(key.to_string(), k, item);
        // An array of tables (`[[endpoint.paths]]`): the whole array as
        // its key, each table's keys by the table's number.
        if let Some(tables) = item.as_array_of_tables() {
            let mut whole: Option<(usize, usize)> = None;
            for (i, t) in tables.iter().enumerate() {
                let mut widen = |start: usize, end: usize| {
                    whole = Some(whole.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
                };
                if let Some(span) = t.span() {
                    widen(span.start, span.end.saturating_sub(1));
                }
                for (inner, inner_item) in t.iter() {
                    if let Some((ik, _)) = t.get_key_value(inner) {
                        if let (Some(ks), Some(vs)) = (ik.span(), inner_item.span()) {
                            widen(ks.start, vs.end.saturating_sub(1));
                        }
                        add(format!("{key}.{i}.{inner}"), ik, inner_item);
                    }
                }
            }
            if let Some(whole) = whole {
                arrays.push((key.to_string(), whole));
            }
            continue;
        }
        if let Some(nested) = item.as_table_like() {
            for (inner, inner_item) in nested.iter() {
                if let Some((ik, _)) = nested.get_key_value(inner) {
                    add(format!("{key}.{inner}"), ik, inner_item);
                }
            }
        }
    }
    out.extend(arrays.into_iter().map(|(key, (start, end))| KeySpan {
        key,
        start: position(start),
        end: position(end),
    }));
    out
}

/// [`key_spans`] of the endpoint `name`.
pub fn endpoint_key_spans(text: &str, name: &str) -> Vec<KeySpan> {
    key_spans(text, TablePath::Endpoint(name))
}

#[cfg(test)]
mod tests;
