//! LIVD files (IICC's LOINC mapping for IVD test codes) read into rows of
//! vendor analyte code → LOINC, per instrument model.
//!
//! Two forms are read, told apart by their first byte:
//! - The FHIR Bundle of the HL7 LIVD IG. Its ConceptMap elements name the
//!   ObservationDefinition of a vendor analyte (by id, as in the IG's
//!   examples) or carry the vendor code itself; the ObservationDefinition's
//!   `code` is the analyzer's code and its `ext-device` extensions name the
//!   DeviceDefinitions (`modelNumber`) it runs on. A target's `dependsOn`
//!   says for which specimen (`specimen`) and result unit (`result`) the
//!   LOINC holds: one vendor code often has a LOINC per unit.
//! - The CSV derived from the IICC spreadsheet: a header row naming at
//!   least `Vendor Analyte Code` and `LOINC Code`; `Model`, `Vendor Analyte
//!   Name`, `Vendor Specimen Description`, `Vendor Result Description` (the
//!   unit) and `LOINC Long Name` are read when present. Comma or semicolon
//!   separated, as spreadsheets export it.
//!
//! Every row is kept, with where it came from, so that the importer can
//! report conflicts rather than pick one silently.

use serde_json::Value;
use std::collections::HashMap;

/// One mapping of a vendor analyte code to a LOINC code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LivdRow {
    /// The instrument model (DeviceDefinition.modelNumber, CSV `Model`);
    /// empty when the file names none.
    pub model: String,
    pub vendor_code: String,
    pub vendor_name: String,
    /// The specimen the LOINC holds for (`Serum/Plasma`, `Urine`); empty:
    /// any.
    pub specimen: String,
    /// The result unit the LOINC holds for (`mmol/L`); empty: any.
    pub unit: String,
    pub loinc: String,
    pub loinc_display: String,
    /// Where in the file: `ConceptMap/<id> element 3` or `line 12`.
    pub at: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LivdError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not a LIVD Bundle: {0}")]
    NotLivd(String),
    #[error("line {line}: {message}")]
    Csv { line: u64, message: String },
    #[error("the file holds no mapping")]
    Empty,
}

/// The rows of a LIVD file, FHIR JSON or CSV.
pub fn read(bytes: &[u8]) -> Result<Vec<LivdRow>, LivdError> {
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let rows = if text.trim_ascii_start().starts_with(b"{") {
        let v: Value = serde_json::from_slice(text).map_err(|e| LivdError::Json(e.to_string()))?;
        from_bundle(&v)?
    } else {
        from_csv(text)?
    };
    if rows.is_empty() {
        return Err(LivdError::Empty);
    }
    Ok(rows)
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("").trim()
}

fn array<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// `Type/id` and the entry's `fullUrl` both find a resource: the IG's
/// examples refer by `Type/id` inside a transaction of `urn:uuid:` entries.
fn index(bundle: &Value) -> HashMap<String, &Value> {
    let mut by = HashMap::new();
    for e in array(bundle, "entry") {
        let Some(r) = e.get("resource") else { continue };
        let (kind, id) = (str_at(r, "resourceType"), str_at(r, "id"));
        if !kind.is_empty() && !id.is_empty() {
            by.insert(format!("{kind}/{id}"), r);
        }
        let url = str_at(e, "fullUrl");
        if !url.is_empty() {
            by.insert(url.to_string(), r);
            if let Some(id) = url.strip_prefix("urn:uuid:") {
                by.entry(format!("{kind}/{id}")).or_insert(r);
            }
        }
    }
    by
}

fn model_of(device: &Value) -> String {
    let number = str_at(device, "modelNumber");
    if !number.is_empty() {
        return number.to_string();
    }
    array(device, "deviceName")
        .map(|n| str_at(n, "name"))
        .find(|n| !n.is_empty())
        .unwrap_or("")
        .to_string()
}

fn from_bundle(bundle: &Value) -> Result<Vec<LivdRow>, LivdError> {
    if str_at(bundle, "resourceType") != "Bundle" {
        return Err(LivdError::NotLivd(format!(
            "resourceType is {:?}, not \"Bundle\"",
            str_at(bundle, "resourceType")
        )));
    }
    let by = index(bundle);
    let resources: Vec<&Value> = array(bundle, "entry")
        .filter_map(|e| e.get("resource"))
        .collect();
    let all_models: Vec<String> = resources
        .iter()
        .filter(|r| str_at(r, "resourceType") == "DeviceDefinition")
        .map(|d| model_of(d))
        .filter(|m| !m.is_empty())
        .collect();
    let maps: Vec<&&Value> = resources
        .iter()
        .filter(|r| str_at(r, "resourceType") == "ConceptMap")
        .collect();
    if maps.is_empty() {
        return Err(LivdError::NotLivd("it has no ConceptMap".into()));
    }
    let mut rows = Vec::new();
    for map in maps {
        let map_id = str_at(map, "id");
        let elements = array(map, "group").flat_map(|g| array(g, "element"));
        for (n, element) in elements.enumerate() {
            let at = format!("ConceptMap/{map_id} element {}", n + 1);
            let code = str_at(element, "code");
            // The IG's examples name the ObservationDefinition; a map may
            // also carry the vendor code itself.
            let definition = by
                .get(&format!("ObservationDefinition/{code}"))
                .or_else(|| by.get(code))
                .filter(|r| str_at(r, "resourceType") == "ObservationDefinition");
            let (vendor_code, vendor_name, models) = match definition {
                Some(d) => {
                    let coding = array(&d["code"], "coding").next();
                    let models: Vec<String> = array(d, "extension")
                        .filter(|x| str_at(x, "url").ends_with("/ext-device"))
                        .filter_map(|x| by.get(str_at(&x["valueReference"], "reference")))
                        .map(|dev| model_of(dev))
                        .filter(|m| !m.is_empty())
                        .collect();
                    (
                        coding.map_or("", |c| str_at(c, "code")).to_string(),
                        coding
                            .map(|c| str_at(c, "display"))
                            .filter(|s| !s.is_empty())
                            .unwrap_or(str_at(element, "display"))
                            .to_string(),
                        models,
                    )
                }
                None => (
                    code.to_string(),
                    str_at(element, "display").to_string(),
                    all_models.clone(),
                ),
            };
            if vendor_code.is_empty() {
                continue;
            }
            for target in array(element, "target") {
                let loinc = str_at(target, "code");
                if loinc.is_empty() {
                    continue;
                }
                let depends = |property: &str| {
                    array(target, "dependsOn")
                        .find(|d| str_at(d, "property").eq_ignore_ascii_case(property))
                        .map_or("", |d| str_at(d, "value"))
                        .to_string()
                };
                let row = LivdRow {
                    model: String::new(),
                    vendor_code: vendor_code.clone(),
                    vendor_name: vendor_name.clone(),
                    specimen: depends("specimen"),
                    unit: depends("result"),
                    loinc: loinc.to_string(),
                    loinc_display: str_at(target, "display").to_string(),
                    at: at.clone(),
                };
                if models.is_empty() {
                    rows.push(row);
                } else {
                    for model in &models {
                        rows.push(LivdRow {
                            model: model.clone(),
                            ..row.clone()
                        });
                    }
                }
            }
        }
    }
    Ok(rows)
}

fn from_csv(text: &[u8]) -> Result<Vec<LivdRow>, LivdError> {
    let first_line = text.split(|&b| b == b'\n').next().unwrap_or(b"");
    let commas = first_line.iter().filter(|&&b| b == b',').count();
    let semicolons = first_line.iter().filter(|&&b| b == b';').count();
    let delimiter = if semicolons > commas { b';' } else { b',' };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(text);
    let csv_error = |e: csv::Error| LivdError::Csv {
        line: e.position().map_or(0, |p| p.line()),
        message: e.to_string(),
    };
    let headers: Vec<String> = reader
        .headers()
        .map_err(csv_error)?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(vendor_code), Some(loinc)) = (column("vendor analyte code"), column("loinc code"))
    else {
        return Err(LivdError::Csv {
            line: 1,
            message: "the header must name `Vendor Analyte Code` and `LOINC Code`".into(),
        });
    };
    let model = column("model");
    let vendor_name = column("vendor analyte name");
    let specimen = column("vendor specimen description");
    let unit = column("vendor result description");
    let loinc_name = column("loinc long name");
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line());
        let cell = |i: Option<usize>| {
            i.and_then(|i| record.get(i))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let row = LivdRow {
            model: cell(model),
            vendor_code: cell(Some(vendor_code)),
            vendor_name: cell(vendor_name),
            specimen: cell(specimen),
            unit: cell(unit),
            loinc: cell(Some(loinc)),
            loinc_display: cell(loinc_name),
            at: format!("line {line}"),
        };
        if row.vendor_code.is_empty() && row.loinc.is_empty() {
            continue;
        }
        if row.vendor_code.is_empty() || row.loinc.is_empty() {
            return Err(LivdError::Csv {
                line,
                message: "a row needs both a vendor analyte code and a LOINC code".into(),
            });
        }
        rows.push(row);
    }
    Ok(rows)
}

/// A LOINC code's shape: digits, a hyphen, one check digit (`2345-7`), or
/// a LOINC part (`LP1234-5`), with its mod-10 check digit right.
pub fn is_loinc(code: &str) -> bool {
    let body = code.strip_prefix("LP").unwrap_or(code);
    let Some((number, check)) = body.split_once('-') else {
        return false;
    };
    if number.is_empty()
        || number.len() > 7
        || !number.bytes().all(|b| b.is_ascii_digit())
        || check.len() != 1
    {
        return false;
    }
    if code.starts_with("LP") {
        return check.bytes().all(|b| b.is_ascii_digit());
    }
    check.parse::<u32>().ok() == Some(mod10(number))
}

/// LOINC's check digit (the Luhn variant LOINC documents: double every
/// other digit from the right, starting with the rightmost).
fn mod10(number: &str) -> u32 {
    let mut sum = 0;
    for (i, d) in number
        .bytes()
        .rev()
        .map(|b| u32::from(b - b'0'))
        .enumerate()
    {
        sum += if i % 2 == 0 {
            let x = d * 2;
            x / 10 + x % 10
        } else {
            d
        };
    }
    (10 - sum % 10) % 10
}

#[cfg(test)]
mod tests;
