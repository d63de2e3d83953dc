//! Charges (HL7 v2 DFT^P03) as import files for accounting software such
//! as Tally or QuickBooks: `charges-csv` and `charges-json`.
//!
//! Both read the ChargeItems the `hl7v2-fhir` map makes of the message
//! (one per coded FT1, [`crate::hl7v2`]), so a charge means the same in
//! the FHIR hub and in the accounts. One row per charge:
//!
//! | column | from |
//! | --- | --- |
//! | `date` | FT1-4 (the start of a range) |
//! | `transaction` | FT1-2, else MSH-10 `/` FT1-1 |
//! | `patient_id`, `patient_name` | PID-3, PID-5 (`Family, Given`) |
//! | `visit` | PV1-19 |
//! | `code`, `description` | FT1-7 (code and text), else FT1-8 |
//! | `quantity` | FT1-10 |
//! | `amount`, `currency` | FT1-11 (`85.00&INR`) |
//! | `performer` | FT1-20 |
//!
//! CSV has a header row and quotes as RFC 4180 does; a cell a spreadsheet
//! would run as a formula (`=`, `+`, `-`, `@` before a letter) starts with
//! `'`. JSON is `{"message": control id, "charges": [row objects]}`, with
//! numbers as numbers. A DFT with no charge is refused, as by
//! `hl7v2-fhir`.

use crate::r4::{Bundle, ChargeItem, HumanName, Identifier, Reference, Resource};
use crate::{TransformContext, TransformError};
use ecko_message::StoredMessage;

/// The transform names.
pub const CSV: &str = "charges-csv";
pub const JSON: &str = "charges-json";

const COLUMNS: [&str; 11] = [
    "date",
    "transaction",
    "patient_id",
    "patient_name",
    "visit",
    "code",
    "description",
    "quantity",
    "amount",
    "currency",
    "performer",
];

/// One charge as the import files write it.
#[derive(Debug, Clone, PartialEq, Default)]
struct Row {
    date: String,
    transaction: String,
    patient_id: String,
    patient_name: String,
    visit: String,
    code: String,
    description: String,
    quantity: Option<serde_json::Number>,
    amount: Option<serde_json::Number>,
    currency: String,
    performer: String,
}

impl Row {
    fn cells(&self) -> [String; 11] {
        let number =
            |n: &Option<serde_json::Number>| n.as_ref().map_or(String::new(), |n| n.to_string());
        [
            self.date.clone(),
            self.transaction.clone(),
            self.patient_id.clone(),
            self.patient_name.clone(),
            self.visit.clone(),
            self.code.clone(),
            self.description.clone(),
            number(&self.quantity),
            number(&self.amount),
            self.currency.clone(),
            self.performer.clone(),
        ]
    }

    fn json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        for (column, cell) in COLUMNS.iter().zip(self.cells()) {
            let value = match *column {
                "quantity" => self.quantity.clone().map(serde_json::Value::Number),
                "amount" => self.amount.clone().map(serde_json::Value::Number),
                _ => (!cell.is_empty()).then_some(serde_json::Value::String(cell)),
            };
            object.insert(column.to_string(), value.unwrap_or(serde_json::Value::Null));
        }
        serde_json::Value::Object(object)
    }
}

/// The charges of a DFT^P03 as CSV.
pub fn to_csv(message: &StoredMessage, cx: &TransformContext) -> Result<Vec<u8>, TransformError> {
    let rows = rows(message, cx)?;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let fail = |e: csv::Error| TransformError::Unreadable(e.to_string());
    w.write_record(COLUMNS).map_err(fail)?;
    for row in &rows {
        w.write_record(row.cells().iter().map(|c| defused(c)))
            .map_err(fail)?;
    }
    w.into_inner()
        .map_err(|e| TransformError::Unreadable(e.to_string()))
}

/// The charges of a DFT^P03 as JSON.
pub fn to_json(message: &StoredMessage, cx: &TransformContext) -> Result<Vec<u8>, TransformError> {
    let rows = rows(message, cx)?;
    let body = serde_json::json!({
        "message": message.control_id,
        "charges": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&body).map_err(|e| TransformError::Unreadable(e.to_string()))
}

/// A cell a spreadsheet would take for a formula, made text.
fn defused(cell: &str) -> String {
    let mut chars = cell.chars();
    let formula = match chars.next() {
        Some('=' | '@') => true,
        // A negative amount is a number, not a formula.
        Some('+' | '-') => chars
            .next()
            .is_some_and(|c| !c.is_ascii_digit() && c != '.'),
        _ => false,
    };
    if formula {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

fn rows(message: &StoredMessage, cx: &TransformContext) -> Result<Vec<Row>, TransformError> {
    if !message.message_type.starts_with("DFT") && !is_dft(&message.payload) {
        return Err(TransformError::Unreadable(format!(
            "{} is not a DFT^P03: only charges become accounting rows",
            message.message_type
        )));
    }
    let bundle = crate::hl7v2::to_bundle(message, cx)?;
    let rows: Vec<Row> = bundle
        .entry
        .iter()
        .filter_map(|e| match &e.resource {
            Resource::ChargeItem(c) => Some(row(&bundle, c)),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Err(TransformError::Empty("the DFT holds no charge".into()));
    }
    Ok(rows)
}

/// Whether the MSH of an HL7 v2 message says DFT (a message journalled
/// under another type, such as a file drop's `file`).
fn is_dft(payload: &[u8]) -> bool {
    let Some(msh) = payload.split(|b| *b == b'\r' || *b == b'\n').next() else {
        return false;
    };
    let text = String::from_utf8_lossy(msh);
    let Some(sep) = text.chars().nth(3) else {
        return false;
    };
    text.split(sep).nth(8).is_some_and(|t| t.starts_with("DFT"))
}

fn row(bundle: &Bundle, c: &ChargeItem) -> Row {
    let resource = |r: &Reference| {
        let url = r.reference.as_deref()?;
        bundle
            .entry
            .iter()
            .find(|e| e.full_url == url)
            .map(|e| &e.resource)
    };
    let first_value =
        |ids: &[Identifier]| ids.iter().find_map(|i| i.value.clone()).unwrap_or_default();
    let (patient_id, patient_name) = match resource(&c.subject) {
        Some(Resource::Patient(p)) => (
            first_value(&p.identifier),
            p.name.first().map(name).unwrap_or_default(),
        ),
        _ => Default::default(),
    };
    let visit = match c.context.as_ref().and_then(resource) {
        Some(Resource::Encounter(e)) => first_value(&e.identifier),
        _ => String::new(),
    };
    let coding = c.code.coding.first();
    // FT1-20 is a display reference (`Given Family`): no resource of its own.
    let performer = c
        .performer
        .first()
        .and_then(|p| {
            p.actor
                .display
                .clone()
                .or_else(|| p.actor.reference.clone())
        })
        .unwrap_or_default();
    let money = c.price_override.as_ref();
    Row {
        date: c
            .occurrence_date_time
            .clone()
            .or_else(|| c.occurrence_period.as_ref().and_then(|p| p.start.clone()))
            .unwrap_or_default(),
        transaction: first_value(&c.identifier),
        patient_id,
        patient_name,
        visit,
        code: coding.and_then(|k| k.code.clone()).unwrap_or_default(),
        description: coding
            .and_then(|k| k.display.clone())
            .or_else(|| c.code.text.clone())
            .unwrap_or_default(),
        quantity: c.quantity.as_ref().and_then(|q| q.value.clone()),
        amount: money.and_then(|m| m.value.clone()),
        currency: money.and_then(|m| m.currency.clone()).unwrap_or_default(),
        performer,
    }
}

/// `Family, Given Middle`.
fn name(n: &HumanName) -> String {
    let given = n.given.join(" ");
    match (n.family.as_deref().unwrap_or(""), given.as_str()) {
        ("", g) => g.to_string(),
        (f, "") => f.to_string(),
        (f, g) => format!("{f}, {g}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(payload: &str) -> StoredMessage {
        StoredMessage {
            id: 7,
            received_at: 1_773_477_015_000,
            envelope: ecko_message::Envelope {
                source: "his".into(),
                dedup_key: None,
                message_type: "DFT^P03".into(),
                content_type: "application/hl7-v2".into(),
                control_id: Some("F-1".into()),
                patient_id: None,
                payload: payload.replace('\n', "\r").into_bytes(),
                ack: None,
                hints: Default::default(),
            },
        }
    }

    const DFT: &str = "MSH|^~\\&|HIS|H|ECKO|L|20260405100000||DFT^P03|F-1|P|2.5\n\
        PID|||P-77^^^H||Sharma^Asha^K\n\
        PV1|1|O|OPD||||||||||||||||V-9\n\
        FT1|1|T-1||20260403||CG|LAB-GLU^Glucose, fasting^LOCAL|||2|150.00&INR|||||||||1234^Rao^Vikram\n\
        FT1|2|||20260403||CG||Dressing, \"large\"||1|-20.50&INR\n\
        FT1|3|||20260403||CG||=HYPERLINK(\"x\")||1\n";

    #[test]
    fn each_charge_of_a_dft_becomes_a_csv_row_with_its_patient_visit_and_amount() {
        let csv =
            String::from_utf8(to_csv(&stored(DFT), &TransformContext::default()).unwrap()).unwrap();
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "date,transaction,patient_id,patient_name,visit,code,description,quantity,amount,currency,performer"
        );
        assert_eq!(
            lines[1],
            "2026-04-03,T-1,P-77,\"Sharma, Asha K\",V-9,LAB-GLU,\"Glucose, fasting\",2,150.0,INR,Vikram Rao"
        );
        assert_eq!(
            lines[2],
            "2026-04-03,F-1/2,P-77,\"Sharma, Asha K\",V-9,,\"Dressing, \"\"large\"\"\",1,-20.5,INR,"
        );
        assert_eq!(
            lines[3],
            "2026-04-03,F-1/3,P-77,\"Sharma, Asha K\",V-9,,\"'=HYPERLINK(\"\"x\"\")\",1,,,"
        );
        assert_eq!(lines.len(), 5, "{csv}");
    }

    #[test]
    fn the_json_form_has_the_same_rows_with_numbers_as_numbers() {
        let json = to_json(&stored(DFT), &TransformContext::default()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["message"], "F-1");
        assert_eq!(v["charges"].as_array().unwrap().len(), 3);
        assert_eq!(v["charges"][0]["amount"], serde_json::json!(150.0));
        assert_eq!(v["charges"][0]["quantity"], serde_json::json!(2));
        assert_eq!(v["charges"][0]["patient_name"], "Sharma, Asha K");
        assert_eq!(v["charges"][1]["code"], serde_json::Value::Null);
        assert_eq!(v["charges"][1]["description"], "Dressing, \"large\"");
    }

    #[test]
    fn a_message_that_is_no_dft_or_holds_no_charge_is_refused() {
        let mut oru = stored("MSH|^~\\&|LAB|L|ECKO|H|20260405100000||ORU^R01|9|P|2.5\nPID|||77\n");
        oru.envelope.message_type = "ORU^R01".into();
        let e = to_csv(&oru, &TransformContext::default()).unwrap_err();
        assert!(e.to_string().contains("not a DFT"), "{e}");
        let empty = stored("MSH|^~\\&|HIS|H|ECKO|L|20260405100000||DFT^P03|9|P|2.5\nPID|||77\n");
        assert!(to_json(&empty, &TransformContext::default()).is_err());
    }

    #[test]
    fn a_dft_journalled_under_another_type_is_still_read_by_its_msh() {
        let mut m = stored(DFT);
        m.envelope.message_type = "file".into();
        assert!(to_csv(&m, &TransformContext::default()).is_ok());
    }
}
