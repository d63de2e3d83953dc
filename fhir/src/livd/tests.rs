use super::*;

const BUNDLE: &[u8] = include_bytes!("../../../tests/data/livd/chemistry_analyzer.livd.json");
const CSV: &[u8] = include_bytes!("../../../tests/data/livd/chemistry_analyzer.livd.csv");

fn short(rows: &[LivdRow]) -> Vec<(String, String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r.model.clone(),
                r.vendor_code.clone(),
                r.unit.clone(),
                r.loinc.clone(),
            )
        })
        .collect()
}

fn t(a: &str, b: &str, c: &str, d: &str) -> (String, String, String, String) {
    (a.into(), b.into(), c.into(), d.into())
}

#[test]
fn a_livd_bundle_gives_a_row_per_model_unit_and_loinc_through_its_observation_definitions() {
    let rows = read(BUNDLE).unwrap();
    assert_eq!(
        short(&rows),
        [
            t("CHEM 400", "GLU", "mmol/L", "14749-6"),
            t("CHEM 800", "GLU", "mmol/L", "14749-6"),
            t("CHEM 400", "GLU", "mg/dL", "2345-7"),
            t("CHEM 800", "GLU", "mg/dL", "2345-7"),
            t("CHEM 800", "CREA", "umol/L", "14682-9"),
        ]
    );
    assert_eq!(rows[0].vendor_name, "Glucose");
    assert_eq!(rows[0].specimen, "Serum/Plasma");
    assert_eq!(
        rows[0].loinc_display,
        "Glucose [Moles/volume] in Serum or Plasma"
    );
    assert_eq!(rows[4].at, "ConceptMap/chem-testcodes element 3");
}

#[test]
fn a_concept_map_that_carries_the_vendor_code_itself_is_read_for_every_model_of_the_bundle() {
    let text = br#"{"resourceType":"Bundle","type":"collection","entry":[
      {"resource":{"resourceType":"DeviceDefinition","id":"d1","modelNumber":"XN-350"}},
      {"resource":{"resourceType":"ConceptMap","id":"m","group":[{"element":[
        {"code":"WBC","display":"White cells","target":[{"code":"6690-2"}]}]}]}}]}"#;
    let rows = read(text).unwrap();
    assert_eq!(short(&rows), [t("XN-350", "WBC", "", "6690-2")]);
    assert_eq!(rows[0].vendor_name, "White cells");
}

#[test]
fn the_spreadsheet_csv_is_read_by_its_header_names_with_either_separator() {
    let rows = read(CSV).unwrap();
    assert_eq!(
        short(&rows),
        [
            t("CHEM 400", "NA", "mmol/L", "2951-2"),
            t("CHEM 400", "K", "mmol/L", "2823-3"),
            t("CHEM 400", "GLU", "mmol/L", "14749-6"),
        ]
    );
    assert_eq!(rows[2].at, "line 5");
    let commas = "LOINC Code,Vendor Analyte Code\n2345-7,GLU\n";
    assert_eq!(
        short(&read(commas.as_bytes()).unwrap()),
        [t("", "GLU", "", "2345-7")]
    );
}

#[test]
fn files_that_are_not_livd_are_refused_with_the_reason() {
    assert!(matches!(
        read(b"{\"resourceType\":\"Patient\"}"),
        Err(LivdError::NotLivd(_))
    ));
    assert!(matches!(
        read(b"{\"resourceType\":\"Bundle\",\"entry\":[]}"),
        Err(LivdError::NotLivd(_))
    ));
    assert!(matches!(read(b"{ not json"), Err(LivdError::Json(_))));
    assert_eq!(
        read(b"Code;Name\nGLU;Glucose\n"),
        Err(LivdError::Csv {
            line: 1,
            message: "the header must name `Vendor Analyte Code` and `LOINC Code`".into()
        })
    );
    assert_eq!(
        read(b"Vendor Analyte Code,LOINC Code\nGLU,\n"),
        Err(LivdError::Csv {
            line: 2,
            message: "a row needs both a vendor analyte code and a LOINC code".into()
        })
    );
    assert_eq!(
        read(b"Vendor Analyte Code,LOINC Code\n"),
        Err(LivdError::Empty)
    );
}

#[test]
fn loinc_codes_are_checked_by_their_check_digit() {
    for good in [
        "2345-7",
        "14749-6",
        "2951-2",
        "2823-3",
        "14682-9",
        "6690-2",
        "LP14635-4",
    ] {
        assert!(is_loinc(good), "{good}");
    }
    for bad in ["2345-6", "2345", "GLU", "-7", "12345678-9", "2345-77", ""] {
        assert!(!is_loinc(bad), "{bad}");
    }
}
