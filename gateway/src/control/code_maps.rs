//! Importing a LIVD file as the code map of one inbound endpoint: what the
//! import would change, decided before anything is written.
//!
//! The map is written where the FHIR destinations read it:
//! `[endpoint.code_map_by_source.<inbound endpoint>]` of each FHIR endpoint
//! that a route from the inbound endpoint reaches (or those named). Nothing
//! is overwritten silently: a code the destination maps already to another
//! LOINC, here or in its `code_map` for every source (which the per-source
//! map would shadow), is a conflict, and a plan with conflicts is written
//! only when asked to replace. A vendor code with several LOINC for the
//! same unit (they differ by specimen, which results do not say in a form
//! the map can match) is skipped and reported: a wrong LOINC is worse than
//! none.

use crate::config::{Config, EndpointKind, LoincTarget};
use ecko_fhir::livd::{is_loinc, LivdRow};
use std::collections::{BTreeMap, BTreeSet};

/// What an import would do.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportPlan {
    pub source: String,
    /// The FHIR endpoints written to.
    pub into: Vec<String>,
    /// Vendor code → its LOINC targets, for every code of the file.
    pub codes: BTreeMap<String, Vec<LoincTarget>>,
    /// Codes every destination maps the same way already.
    pub unchanged: Vec<String>,
    pub conflicts: Vec<Conflict>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub destination: String,
    pub code: String,
    /// What the destination maps the code to now, as it reads.
    pub current: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub code: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("there is no endpoint `{0}`")]
    UnknownEndpoint(String),
    #[error("`{0}` is not an inbound endpoint: code maps are kept per source of messages")]
    NotInbound(String),
    #[error("`{0}` is not a FHIR endpoint")]
    NotFhir(String),
    #[error("no FHIR endpoint receives messages from `{0}` through a route; name one with --into")]
    NoDestination(String),
    #[error(
        "the file covers the models {models} with different mappings; choose one with --model"
    )]
    ModelNeeded { models: String },
    #[error("the file has no rows for the model `{model}`; it covers {models}")]
    UnknownModel { model: String, models: String },
    #[error("{0}")]
    BadLoinc(String),
}

fn targets_text(targets: &[LoincTarget]) -> String {
    targets
        .iter()
        .map(|t| match &t.unit {
            Some(u) => format!("{} ({u})", t.code),
            None => t.code.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Same LOINC for the same units, whatever the displays say.
fn same(a: &[LoincTarget], b: &[LoincTarget]) -> bool {
    let key = |t: &[LoincTarget]| {
        let mut k: Vec<(String, Option<String>)> = t
            .iter()
            .map(|t| {
                (
                    t.code.clone(),
                    t.unit.as_ref().map(|u| u.to_ascii_lowercase()),
                )
            })
            .collect();
        k.sort();
        k
    };
    key(a) == key(b)
}

/// Decides what importing `rows` for the inbound endpoint `source` does.
pub fn plan_import(
    config: &Config,
    rows: &[LivdRow],
    source: &str,
    model: Option<&str>,
    into: &[String],
) -> Result<ImportPlan, ImportError> {
    let endpoint = config
        .endpoint(source)
        .ok_or_else(|| ImportError::UnknownEndpoint(source.to_string()))?;
    if endpoint.direction != crate::config::Direction::Inbound {
        return Err(ImportError::NotInbound(source.to_string()));
    }
    let into = destinations(config, source, into)?;

    let bad: Vec<String> = rows
        .iter()
        .filter(|r| !is_loinc(&r.loinc))
        .map(|r| {
            format!(
                "{}: `{}` is not a LOINC code (its check digit is wrong or it has no `-`)",
                r.at, r.loinc
            )
        })
        .collect();
    if !bad.is_empty() {
        return Err(ImportError::BadLoinc(bad.join("; ")));
    }

    let (chosen, models) = rows_for_model(rows, model)?;

    // Vendor code → unit → the LOINC codes (and a display) the file gives.
    let mut by_code: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>> = BTreeMap::new();
    for r in &chosen {
        by_code
            .entry(r.vendor_code.clone())
            .or_default()
            .entry(r.unit.trim().to_string())
            .or_default()
            .entry(r.loinc.clone())
            .or_insert_with(|| r.loinc_display.clone());
    }
    // Models of one family usually share their mappings; when they do
    // not, the file cannot be read for "the" analyzer without its model.
    if model.is_none() && models.len() > 1 && models_disagree(&chosen) {
        return Err(ImportError::ModelNeeded {
            models: models.join(", "),
        });
    }
    let mut codes = BTreeMap::new();
    let mut skipped = Vec::new();
    for (code, units) in by_code {
        if let Some((unit, loincs)) = units.iter().find(|(_, l)| l.len() > 1) {
            skipped.push(Skipped {
                code: code.clone(),
                reason: format!(
                    "{} LOINC codes ({}) for {}: they differ by specimen",
                    loincs.len(),
                    loincs.keys().cloned().collect::<Vec<_>>().join(", "),
                    if unit.is_empty() {
                        "any unit".to_string()
                    } else {
                        format!("results in {unit}")
                    }
                ),
            });
            continue;
        }
        let targets: Vec<LoincTarget> = units
            .into_iter()
            .flat_map(|(unit, loincs)| {
                loincs.into_iter().map(move |(loinc, display)| LoincTarget {
                    code: loinc,
                    display: Some(display).filter(|d| !d.is_empty()),
                    unit: Some(unit.clone()).filter(|u| !u.is_empty()),
                })
            })
            .collect();
        codes.insert(code, targets);
    }

    let mut conflicts = Vec::new();
    let mut unchanged = Vec::new();
    for (code, targets) in &codes {
        let mut everywhere_same = true;
        for dest in &into {
            let Some(EndpointKind::Fhir(f)) = config.endpoint(dest).map(|e| &e.kind) else {
                continue;
            };
            let current = f
                .code_map_by_source
                .get(source)
                .and_then(|m| m.get(code))
                .or_else(|| f.code_map.get(code))
                .map(|e| e.targets());
            match current {
                Some(current) if same(&current, targets) => {}
                Some(current) => {
                    everywhere_same = false;
                    conflicts.push(Conflict {
                        destination: dest.clone(),
                        code: code.clone(),
                        current: targets_text(&current),
                    });
                }
                None => everywhere_same = false,
            }
        }
        if everywhere_same {
            unchanged.push(code.clone());
        }
    }
    Ok(ImportPlan {
        source: source.to_string(),
        into,
        codes,
        unchanged,
        conflicts,
        skipped,
    })
}

/// The FHIR endpoints an import writes to: those named, each checked to be
/// one, or every FHIR endpoint a route from `source` reaches.
fn destinations(
    config: &Config,
    source: &str,
    named: &[String],
) -> Result<Vec<String>, ImportError> {
    if !named.is_empty() {
        for name in named {
            match config.endpoint(name).map(|e| &e.kind) {
                None => return Err(ImportError::UnknownEndpoint(name.clone())),
                Some(EndpointKind::Fhir(_)) => {}
                Some(_) => return Err(ImportError::NotFhir(name.clone())),
            }
        }
        return Ok(named.to_vec());
    }
    let mut found: Vec<String> = config
        .routes
        .iter()
        .filter(|r| r.from.iter().any(|f| f == source))
        .flat_map(|r| r.to.iter())
        .filter(|to| {
            matches!(
                config.endpoint(to).map(|e| &e.kind),
                Some(EndpointKind::Fhir(_))
            )
        })
        .cloned()
        .collect();
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Err(ImportError::NoDestination(source.to_string()));
    }
    Ok(found)
}

/// The rows for `model` (and those naming no model), and every model the
/// file names, sorted.
fn rows_for_model<'a>(
    rows: &'a [LivdRow],
    model: Option<&str>,
) -> Result<(Vec<&'a LivdRow>, Vec<&'a str>), ImportError> {
    let mut models: Vec<&str> = rows
        .iter()
        .map(|r| r.model.as_str())
        .filter(|m| !m.is_empty())
        .collect();
    models.sort_unstable();
    models.dedup();
    let Some(m) = model else {
        return Ok((rows.iter().collect(), models));
    };
    let taken: Vec<&LivdRow> = rows
        .iter()
        .filter(|r| r.model.is_empty() || r.model.eq_ignore_ascii_case(m))
        .collect();
    if !taken.iter().any(|r| r.model.eq_ignore_ascii_case(m)) {
        return Err(ImportError::UnknownModel {
            model: m.to_string(),
            models: models.join(", "),
        });
    }
    Ok((taken, models))
}

/// Whether two models give one vendor code and unit different LOINC codes.
fn models_disagree(rows: &[&LivdRow]) -> bool {
    let mut per: BTreeMap<(&str, &str), BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for r in rows {
        per.entry((r.vendor_code.as_str(), r.unit.trim()))
            .or_default()
            .entry(r.model.as_str())
            .or_default()
            .insert(r.loinc.as_str());
    }
    per.values().any(|by_model| {
        let mut sets = by_model.values();
        let first = sets.next();
        sets.any(|s| Some(s) != first)
    })
}

impl ImportPlan {
    /// The codes the import writes: new ones, and with `replace` the
    /// conflicting ones too.
    pub fn writes(&self, replace: bool) -> Vec<(&str, &[LoincTarget])> {
        self.codes
            .iter()
            .filter(|(code, _)| !self.unchanged.contains(code))
            .filter(|(code, _)| replace || !self.conflicts.iter().any(|c| &c.code == *code))
            .map(|(code, t)| (code.as_str(), t.as_slice()))
            .collect()
    }

    /// One line per code: what it maps to and what the import does.
    pub fn lines(&self, replace: bool) -> Vec<String> {
        let mut out = Vec::new();
        for (code, targets) in &self.codes {
            let what = if self.unchanged.contains(code) {
                "unchanged".to_string()
            } else if let Some(c) = self.conflicts.iter().find(|c| &c.code == code) {
                let verb = if replace {
                    "replaces"
                } else {
                    "conflicts with"
                };
                format!("{verb} {} in `{}`", c.current, c.destination)
            } else {
                "added".to_string()
            };
            out.push(format!("{code} → {}: {what}", targets_text(targets)));
        }
        for s in &self.skipped {
            out.push(format!("{}: skipped, {}", s.code, s.reason));
        }
        out
    }
}

/// Writes the plan into the configuration document.
pub fn apply(
    plan: &ImportPlan,
    doc: &mut crate::config::edit::ConfigDocument,
    replace: bool,
) -> Result<usize, crate::config::edit::EditError> {
    let writes = plan.writes(replace);
    for dest in &plan.into {
        for (code, targets) in &writes {
            doc.set_code_map(dest, &plan.source, code, targets)?;
        }
    }
    Ok(writes.len())
}
