use super::*;

#[test]
fn times_without_an_offset_take_the_site_zone_and_dates_stay_dates() {
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    assert_eq!(
        date_time("20260115083012", &berlin).unwrap(),
        "2026-01-15T08:30:12+01:00"
    );
    assert_eq!(
        date_time("202607010830", &berlin).unwrap(),
        "2026-07-01T08:30:00+02:00"
    );
    assert_eq!(
        date_time("20260115083012.1234-0500", &berlin).unwrap(),
        "2026-01-15T08:30:12.123-05:00"
    );
    assert_eq!(date_time("19700412", &berlin).unwrap(), "1970-04-12");
    assert_eq!(date_time("", &berlin), None);
    assert_eq!(date_time("2026011", &berlin), None);
    assert_eq!(date_time("20261345", &berlin), None);
}

#[test]
fn numbers_are_read_strictly_and_units_get_ucum_only_when_they_are_ucum() {
    let q = quantity("5.4", "mmol/L").unwrap();
    assert_eq!(
        serde_json::to_string(&q).unwrap(),
        r#"{"value":5.4,"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}"#
    );
    let q = quantity(".5", "cells").unwrap();
    assert_eq!(
        serde_json::to_string(&q).unwrap(),
        r#"{"value":0.5,"unit":"cells"}"#
    );
    assert!(quantity("positive", "").is_none());
    assert!(quantity("1.2.3", "").is_none());
}

#[test]
fn reference_ranges_are_read_in_the_usual_spellings() {
    let r = reference_range("3.9 to 6.1", "mmol/L").unwrap();
    assert_eq!(r.low.unwrap().value.unwrap().to_string(), "3.9");
    let r = reference_range("3.5-5.1", "").unwrap();
    assert_eq!(r.high.unwrap().value.unwrap().to_string(), "5.1");
    let r = reference_range("-2-2", "").unwrap();
    assert_eq!(r.low.unwrap().value.unwrap().to_string(), "-2");
    let r = reference_range("<5", "").unwrap();
    assert!(r.low.is_none() && r.high.is_some());
    assert_eq!(
        reference_range("negative", "").unwrap().text.as_deref(),
        Some("negative")
    );
    assert!(reference_range(" ", "").is_none());
}

#[test]
fn the_same_identifier_always_gives_the_same_entry() {
    let mut b = BundleBuilder::new();
    let key = identifier("urn:x".into(), "A 1|2");
    let a = b.put(Resource::Patient(Patient::default()), &key);
    let again = b.put(
        Resource::Patient(Patient {
            active: Some(true),
            ..Default::default()
        }),
        &key,
    );
    assert_eq!(a, again);
    let bundle = b.finish();
    assert_eq!(bundle.entry.len(), 1);
    assert_eq!(
        bundle.entry[0].request.url,
        "Patient?identifier=urn:x|A%201%7C2"
    );
    assert_eq!(
        bundle.entry[0].resource,
        Resource::Patient(Patient {
            active: Some(true),
            ..Default::default()
        })
    );
}
