use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, "gw.toml", |name| match name {
        "ECKO_DATA_DIR" => Some("/data".into()),
        _ => None,
    })
}

const MINIMAL: &str = r#"
[journal]
path = "${ECKO_DATA_DIR:-./var}/journal.db"

[[endpoint]]
name = "drop"
type = "file-drop"
path = "/tmp/in"

[[endpoint]]
name = "archive"
type = "file"
path = "/tmp/out"

[[route]]
name = "all"
from = ["drop"]
to = ["archive"]
"#;

fn messages(errors: ConfigErrors) -> Vec<String> {
    errors.0.iter().map(ToString::to_string).collect()
}

#[test]
fn a_minimal_file_loads_with_documented_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.journal.path, PathBuf::from("/data/journal.db"));
    assert_eq!(
        c.journal.retention,
        std::time::Duration::from_secs(90 * 86400)
    );
    assert_eq!(c.endpoints.len(), 2);
    assert_eq!(c.endpoints[0].direction, Direction::Inbound);
    assert_eq!(c.endpoints[1].retry, RetryPolicy::default());
    assert_eq!(c.routes[0].transform, "none");
    assert!(c.routes[0].message_types[0].matches("ORU^R01"));
}

/// The default configuration loads, and routes every inbound MLLP and ASTM
/// endpoint through the matching FHIR transform to the hub at
/// `${ECKO_FHIR_URL}`; a sample of each kind transforms into a transaction
/// Bundle through the transform its route names.
#[test]
fn the_shipped_default_configuration_is_valid() {
    let text = include_str!("../../../config/gateway.toml");
    let hub_url = "https://hub.example/fhir/R4";
    let c = Config::parse(text, "config/gateway.toml", |name| {
        (name == "ECKO_FHIR_URL").then(|| hub_url.to_string())
    })
    .unwrap();
    let hubs: Vec<&Endpoint> = c
        .endpoints
        .iter()
        .filter(|e| matches!(&e.kind, EndpointKind::Fhir(f) if f.url == hub_url))
        .collect();
    let [hub] = hubs[..] else {
        panic!("one FHIR endpoint at ECKO_FHIR_URL: {hubs:?}")
    };
    let router = crate::router::Router::new(&c);
    let oru = include_bytes!("../../../protocol/src/hl7/testdata/oru_r01_v251.hl7");
    let astm = include_bytes!("../../../protocol/src/astm/testdata/chemistry_results.astm");
    let mut inbound = 0;
    for e in &c.endpoints {
        let (types, transform, sample): (&[&str], &str, &[u8]) = match &e.kind {
            EndpointKind::Mllp(m) if m.listen.is_some() => (
                &[
                    "ORU^R01", "OUL^R22", "ADT^A01", "ADT^A40", "ORM^O01", "OML^O21", "RDE^O11",
                    "SIU^S12", "DFT^P03",
                ],
                "hl7v2-fhir",
                oru,
            ),
            EndpointKind::AstmTcp(_) | EndpointKind::AstmSerial(_) => {
                (&["ASTM"], "astm-fhir", astm)
            }
            _ => continue,
        };
        inbound += 1;
        for ty in types {
            let message = ecko_message::Envelope {
                source: e.name.clone(),
                message_type: ty.to_string(),
                ..Default::default()
            };
            let to_hub: Vec<_> = router
                .destinations(&message)
                .into_iter()
                .filter(|d| d.endpoint == hub.name)
                .collect();
            assert_eq!(to_hub.len(), 1, "{} {ty} reaches the hub once", e.name);
            assert_eq!(to_hub[0].transform, transform, "{} {ty}", e.name);
        }
        let stored = ecko_message::StoredMessage {
            id: 1,
            received_at: 0,
            envelope: ecko_message::Envelope {
                source: e.name.clone(),
                dedup_key: Some("k".into()),
                message_type: types[0].into(),
                content_type: String::new(),
                control_id: None,
                patient_id: None,
                payload: sample.to_vec(),
                ack: None,
                hints: Default::default(),
            },
        };
        let out = ecko_fhir::apply(transform, &stored, &Default::default()).unwrap();
        let bundle: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(bundle["type"], "transaction", "{}", e.name);
    }
    assert!(inbound >= 2, "an MLLP listener and an ASTM endpoint");
}

#[test]
fn an_unknown_key_is_reported_at_its_line_and_column() {
    let text = MINIMAL.replace("path = \"/tmp/out\"", "path = \"/tmp/out\"\npaht = 1");
    let errs = messages(parse(&text).unwrap_err());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("gw.toml:14:1:"), "{}", errs[0]);
    assert!(errs[0].contains("unknown field `paht`"), "{}", errs[0]);
}

#[test]
fn a_wrong_type_names_what_was_expected() {
    let text = MINIMAL.replace("[journal]", "[journal]\nretention_days = \"ninety\"");
    let errs = messages(parse(&text).unwrap_err());
    assert!(errs[0].starts_with("gw.toml:3:18:"), "{errs:?}");
    assert!(errs[0].contains("u32"), "{errs:?}");
}

#[test]
fn a_duplicate_endpoint_name_points_at_the_second_definition() {
    let text = MINIMAL.replace("name = \"archive\"", "name = \"drop\"");
    let errs = messages(parse(&text).unwrap_err());
    assert!(
        errs.iter().any(|e| e
            .starts_with("gw.toml:11:8: duplicate endpoint name `drop` (first defined on line 5)")),
        "{errs:?}"
    );
}

#[test]
fn a_duplicate_route_name_points_at_the_second_name() {
    let text =
        format!("{MINIMAL}\n[[route]]\nname = \"all\"\nfrom = [\"drop\"]\nto = [\"archive\"]\n");
    let errs = messages(parse(&text).unwrap_err());
    assert_eq!(
        errs,
        vec!["gw.toml:21:8: duplicate route name `all` (first defined on line 15)"]
    );
}

#[test]
fn journal_limits_are_reported_at_their_own_keys() {
    let text = MINIMAL.replace(
        "[journal]",
        "[journal]\nretention_days = 0\nmax_size = \"10KB\"\npurge_interval = \"0s\"",
    );
    let errs = messages(parse(&text).unwrap_err());
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(
        errs[0].starts_with("gw.toml:3:18: [journal]: `retention_days`"),
        "{errs:?}"
    );
    assert!(
        errs[1].starts_with("gw.toml:4:12: [journal]: `max_size`"),
        "{errs:?}"
    );
    assert!(
        errs[2].starts_with("gw.toml:5:18: [journal]: `purge_interval`"),
        "{errs:?}"
    );
}

#[test]
fn a_zero_endpoint_timeout_is_refused_at_its_key() {
    let text = MINIMAL.replace(
        "path = \"/tmp/out\"",
        "path = \"/tmp/out\"\ntimeout = \"0s\"",
    );
    let errs = messages(parse(&text).unwrap_err());
    assert_eq!(
        errs,
        vec!["gw.toml:14:11: endpoint `archive`: `timeout` must be longer than zero"]
    );
}

#[test]
fn a_route_to_an_unknown_endpoint_is_an_error_at_its_to_key() {
    let text = MINIMAL.replace("to = [\"archive\"]", "to = [\"archve\"]");
    let errs = messages(parse(&text).unwrap_err());
    assert_eq!(
        errs,
        vec!["gw.toml:18:6: route `all`: `to` names unknown endpoint `archve`"]
    );
}

#[test]
fn a_route_cannot_send_to_an_inbound_endpoint() {
    let text = MINIMAL.replace("to = [\"archive\"]", "to = [\"drop\"]");
    let errs = messages(parse(&text).unwrap_err());
    assert!(
        errs[0].contains("cannot be a route's destination"),
        "{errs:?}"
    );
}

#[test]
fn impossible_retry_policies_are_refused() {
    for (retry, why) in [
        ("initial = \"0s\"", "`initial` must be longer than zero"),
        (
            "initial = \"10s\"\nmax = \"1s\"",
            "is shorter than `initial`",
        ),
        (
            "multiplier = 0.5",
            "`multiplier` 0.5 must be between 1 and 16",
        ),
        ("jitter = 1.5", "`jitter` 1.5 must be between 0 and 1"),
        ("max_attempts = 0", "`max_attempts` must be at least 1"),
        (
            "max_age = \"100ms\"",
            "`max_age` is shorter than the first backoff",
        ),
    ] {
        let text = MINIMAL.replace(
            "path = \"/tmp/out\"",
            &format!("path = \"/tmp/out\"\n[endpoint.retry]\n{retry}"),
        );
        let errs = messages(parse(&text).unwrap_err());
        assert!(
            errs[0].contains("impossible retry policy") && errs[0].contains(why),
            "{retry}: {errs:?}"
        );
    }
}

#[test]
fn an_unset_variable_without_default_is_reported_where_it_is_used() {
    let text = MINIMAL.replace("\"/tmp/in\"", "\"${INBOX}\"");
    let errs = messages(parse(&text).unwrap_err());
    assert!(
        errs[0].starts_with("gw.toml:8:9: environment variable `INBOX` is not set"),
        "{errs:?}"
    );
}

#[test]
fn positions_after_an_expanded_variable_still_point_into_the_written_file() {
    let text = MINIMAL.replace(
        "path = \"/tmp/in\"",
        "path = \"${ECKO_DATA_DIR:-x}/in\"\npoll_interval = \"${ECKO_DATA_DIR}\"",
    );
    let errs = messages(parse(&text).unwrap_err());
    assert!(errs[0].starts_with("gw.toml:9:17:"), "{errs:?}");
}

#[test]
fn several_problems_are_all_reported_in_file_order() {
    let text = MINIMAL
        .replace("type = \"file-drop\"", "type = \"file-drop\"\nbogus = true")
        .replace("to = [\"archive\"]", "to = [\"nowhere\"]")
        .replace("[journal]", "[journal]\nretention_days = 0");
    let errs = messages(parse(&text).unwrap_err());
    assert!(errs.len() >= 2, "{errs:?}");
    let lines: Vec<usize> = errs
        .iter()
        .map(|e| e.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted);
}

#[test]
fn an_unknown_endpoint_type_lists_the_known_ones() {
    let text = MINIMAL.replace("type = \"file\"", "type = \"fax\"");
    let errs = messages(parse(&text).unwrap_err());
    assert!(
        errs[0].contains("unknown type `fax`, expected one of file, file-drop"),
        "{errs:?}"
    );
}

#[test]
fn a_toml_syntax_error_has_a_location() {
    let errs = messages(parse("[journal\npath = 1").unwrap_err());
    assert!(errs[0].starts_with("gw.toml:1:"), "{errs:?}");
}

#[test]
fn an_unknown_time_zone_is_refused() {
    let text = format!("[site]\ntime_zone = \"Mars/Olympus\"\n{MINIMAL}");
    let errs = messages(parse(&text).unwrap_err());
    assert!(errs[0].contains("unknown time zone"), "{errs:?}");
}

#[test]
fn message_type_patterns_match_codes_and_triggers() {
    let p = MessageTypePattern::parse("ORU^*").unwrap();
    assert!(p.matches("ORU^R01") && p.matches("oru^r30") && !p.matches("ADT^A01"));
    let p = MessageTypePattern::parse("ADT^A01").unwrap();
    assert!(p.matches("ADT^A01") && !p.matches("ADT^A08"));
    assert!(MessageTypePattern::parse("*").unwrap().matches("anything"));
    assert!(MessageTypePattern::parse("OR U").is_err());
}

const ASTM: &str = r#"
[journal]
path = "/tmp/j.db"

[[endpoint]]
name = "chem"
type = "astm-serial"
device = "/dev/ttyUSB0"
baud = 19200
parity = "even"
data_bits = 7
flow_control = "software"

[[endpoint]]
name = "haem"
type = "astm-tcp"
role = "client"
address = "10.0.0.5:5000"
framing = "raw"
line_terminator = "crlf"
checksum_required = false
orders = "broadcast"
"#;

#[test]
fn astm_endpoints_load_with_their_line_and_profile_settings() {
    let c = parse(ASTM).unwrap();
    let EndpointKind::AstmSerial(s) = &c.endpoints[0].kind else {
        panic!("astm-serial expected")
    };
    assert_eq!((s.baud, s.data_bits, s.stop_bits), (19200, 7, 1));
    assert_eq!(s.parity, SerialParity::Even);
    assert_eq!(s.flow_control, SerialFlowControl::Software);
    assert_eq!(s.profile().max_frame_text, 240);
    assert!(s.profile().checksum_required);
    assert_eq!(c.endpoints[0].direction, Direction::Inbound);
    let EndpointKind::AstmTcp(t) = &c.endpoints[1].kind else {
        panic!("astm-tcp expected")
    };
    assert_eq!(t.role, TcpRole::Client);
    assert_eq!(t.framing, AstmFraming::Raw);
    assert_eq!(t.line_terminator, AstmLineTerminator::Crlf);
    assert!(!t.checksum_required);
    assert_eq!(t.orders, AstmOrderMode::Broadcast);
}

#[test]
fn impossible_astm_line_settings_are_reported_at_their_endpoint() {
    let text = ASTM.replace("data_bits = 7", "data_bits = 9");
    let errs = messages(parse(&text).unwrap_err());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("`data_bits` 9"), "{errs:?}");
    let text = ASTM.replace("role = \"client\"", "role = \"peer\"");
    let errs = messages(parse(&text).unwrap_err());
    assert!(errs[0].contains("haem"), "{errs:?}");
    let text = ASTM.replace("baud = 19200", "baud = 19200\nbuad = 1");
    let errs = messages(parse(&text).unwrap_err());
    assert!(errs[0].contains("buad"), "{errs:?}");
}

#[test]
fn where_the_test_code_sits_is_auto_by_default_and_may_be_named_as_number_or_text() {
    use ecko_protocol::astm::message::TestIdComponent;
    let at = |extra: &str| {
        let c = parse(&ASTM.replace("orders = \"broadcast\"", extra)).unwrap();
        let EndpointKind::AstmTcp(t) = &c.endpoints[1].kind else {
            panic!("astm-tcp expected")
        };
        t.profile().test_id_component
    };
    assert_eq!(at(""), TestIdComponent::Auto);
    assert_eq!(at("test_id_component = \"auto\""), TestIdComponent::Auto);
    assert_eq!(at("test_id_component = 5"), TestIdComponent::At(5));
    assert_eq!(at("test_id_component = \"6\""), TestIdComponent::At(6));
    let text = ASTM.replace("orders = \"broadcast\"", "test_id_component = 3");
    let errs = messages(parse(&text).unwrap_err());
    assert!(
        errs[0].contains("`test_id_component` is `3`: it must be \"auto\", 4, 5 or 6"),
        "{errs:?}"
    );
}

#[test]
fn every_example_configuration_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.display().to_string();
            // The REST example's API key has no default, by design.
            let env = |n: &str| (n == "ECKO_REST_KEY").then(|| "example-key".to_string());
            if let Err(e) = Config::parse(&text, &name, env) {
                panic!("{e}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 4, "{seen} examples");
}

#[test]
fn a_hub_section_turns_the_uplink_on_with_topics_under_its_site_and_device() {
    let text = format!(
        "{MINIMAL}\n[hub]\nurl = \"mqtt://broker.lan\"\nsite = \"north\"\ndevice = \"lab-1\"\n"
    );
    let c = parse(&text).unwrap();
    assert!(c.hub.enabled);
    assert_eq!(c.hub.topic_prefix(), "ecko/north/lab-1/");
    assert_eq!(c.hub.client_id(), "ecko-north-lab-1");
    let b = c.hub.broker().unwrap();
    assert_eq!(
        (b.host.as_str(), b.port, b.tls),
        ("broker.lan", 1883, false)
    );
    assert!(
        !parse(MINIMAL).unwrap().hub.enabled,
        "no section, no uplink"
    );
    assert_eq!(c.hub.protocol, crate::config::MqttProtocol::Auto);
    assert_eq!(c.hub.session_expiry.0.as_secs(), 7 * 24 * 3600);
    let v311 = parse(&format!("{text}protocol = \"3.1.1\"\n")).unwrap();
    assert_eq!(v311.hub.protocol, crate::config::MqttProtocol::V311);
    let v5 = parse(&format!(
        "{text}protocol = \"5\"\nsession_expiry = \"1h\"\n"
    ))
    .unwrap();
    assert_eq!(v5.hub.protocol, crate::config::MqttProtocol::V5);
    assert_eq!(v5.hub.session_expiry.0.as_secs(), 3600);
    assert!(parse(&format!("{text}protocol = \"4\"\n")).is_err());
}

#[test]
fn hub_settings_that_cannot_work_are_refused_at_their_key() {
    for (keys, expected) in [
        ("url = \"http://broker\"", "mqtt:// or mqtts://"),
        ("url = \"mqtt://broker:0\"", "bad port"),
        ("site = \"a/b\"", "`site` must be a name"),
        ("prefix = \"ecko/+/\"", "wildcards"),
        (
            "health_interval = \"0s\"",
            "`health_interval` must be at least 1s",
        ),
        ("ca_file = \"ca.pem\"", "need an mqtts:// url"),
        (
            "url = \"mqtts://b\"\ncert = \"c.pem\"",
            "`cert` and `key` go together",
        ),
        (
            "reconnect_min = \"10s\"\nreconnect_max = \"5s\"",
            "reconnect_max",
        ),
        (
            "session_expiry = \"200000d\"",
            "`session_expiry` must be at most",
        ),
    ] {
        let text = format!("{MINIMAL}\n[hub]\n{keys}\n");
        let errs = messages(parse(&text).unwrap_err());
        assert!(errs[0].contains(expected), "{keys}: {errs:?}");
        assert!(errs[0].contains("[hub]"), "{errs:?}");
    }
}

#[test]
fn a_command_policy_that_cannot_work_is_refused_in_the_hub_section() {
    for (keys, expected) in [
        ("config_key = \"not base64!\"", "`config_key` is not base64"),
        ("config_key = \"AAAA\"", "32 bytes, not 3"),
        ("commands = { allow = [\"reboot\"] }", "`reboot` is not a command"),
        ("commands = { role = \"root\" }", "`commands.role` must be one of"),
        ("commands = { max_age = \"2d\" }", "between 1s and 24h"),
        (
            "commands = { allow = [\"config.push\"], role = \"admin\" }",
            "needs `config_key`",
        ),
        (
            "config_key = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\ncommands = { allow = [\"config.push\"] }",
            "needs `commands.role = \"admin\"`",
        ),
    ] {
        let text = format!("{MINIMAL}\n[hub]\n{keys}\n");
        let errs = messages(parse(&text).unwrap_err());
        assert!(errs[0].contains(expected), "{keys}: {errs:?}");
        assert!(errs[0].contains("[hub]"), "{errs:?}");
    }
}

#[test]
fn a_hub_commands_table_sets_the_policy_and_its_absence_keeps_patient_data_off() {
    let text = format!(
        "{MINIMAL}\n[hub]\nconfig_key = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n\
         [hub.commands]\nallow = [\"config.push\", \"message.get\"]\nrole = \"admin\"\n\
         actor = \"hub:central\"\nmax_age = \"1m\"\npatient_data = true\n"
    );
    let c = parse(&text).unwrap();
    let p = &c.hub.commands;
    assert!(p.allows("config.push") && !p.allows("messages.retry"));
    assert_eq!(
        (p.role.as_str(), p.actor.as_str()),
        ("admin", "hub:central")
    );
    assert_eq!(p.max_age.0, std::time::Duration::from_secs(60));
    assert!(p.patient_data);
    assert_eq!(c.hub.config_key_bytes().unwrap().map(|k| k.len()), Some(32));
    let default = parse(&format!("{MINIMAL}\n[hub]\n")).unwrap();
    assert!(!default.hub.commands.patient_data);
    assert!(!default.hub.commands.allows("config.push"));
}

#[test]
fn a_code_map_for_an_unknown_source_is_refused() {
    let text = format!(
        "{MINIMAL}\n[[endpoint]]\nname = \"hub\"\ntype = \"fhir\"\nurl = \"https://hub.example/fhir\"\n[endpoint.code_map_by_source.c311]\nGLU = \"2345-7\"\n"
    );
    let errs = messages(parse(&text).unwrap_err());
    assert!(
        errs.iter()
            .any(|e| e.contains("`code_map_by_source` names `c311`")),
        "{errs:?}"
    );
    let ok = text.replace("code_map_by_source.c311", "code_map_by_source.drop");
    assert!(parse(&ok).is_ok());
}

fn template_route(extra: &str) -> String {
    MINIMAL.replace(
        "[[route]]\nname = \"all\"\nfrom = [\"drop\"]\nto = [\"archive\"]",
        &format!("[[route]]\nname = \"all\"\nfrom = [\"drop\"]\nto = [\"archive\"]\n{extra}"),
    )
}

#[test]
fn a_template_route_names_a_readable_template_and_check_config_says_where_not() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.j2");
    std::fs::write(&good, "{{ msg.id }}").unwrap();
    let c = parse(&template_route(&format!(
        "transform = \"template\"\ntemplate = \"{}\"",
        good.display()
    )))
    .unwrap();
    assert_eq!(
        c.routes[0].transform,
        format!("template:{}", good.display())
    );

    let missing = dir.path().join("missing.j2");
    let errs = messages(
        parse(&template_route(&format!(
            "transform = \"template\"\ntemplate = \"{}\"",
            missing.display()
        )))
        .unwrap_err(),
    );
    assert!(
        errs[0].starts_with("gw.toml:20:12: route `all`: template "),
        "{errs:?}"
    );
    assert!(errs[0].contains("missing.j2: cannot read"), "{errs:?}");

    let broken = dir.path().join("broken.j2");
    std::fs::write(&broken, "{\n  {% for x in msg %}\n").unwrap();
    let errs = messages(
        parse(&template_route(&format!(
            "transform = \"template\"\ntemplate = \"{}\"",
            broken.display()
        )))
        .unwrap_err(),
    );
    assert!(
        errs[0].contains("route `all`: template `broken.j2` line "),
        "{errs:?}"
    );

    let errs = messages(parse(&template_route("transform = \"template\"")).unwrap_err());
    assert!(errs[0].contains("needs `template = "), "{errs:?}");
    let errs =
        messages(parse(&template_route("transform = \"none\"\ntemplate = \"x.j2\"")).unwrap_err());
    assert!(errs[0].contains("only read with transform"), "{errs:?}");
}

#[test]
fn the_service_section_chooses_the_watchdog_and_defaults_to_systemd() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.service, ServiceConfig::default());
    assert_eq!(c.service.watchdog, WatchdogKind::Systemd);
    let c = parse(&format!(
        "{MINIMAL}\n[service]\nwatchdog = \"device\"\nwatchdog_device = \"/dev/watchdog1\"\nwatchdog_timeout = \"20s\"\n"
    ))
    .unwrap();
    assert_eq!(c.service.watchdog, WatchdogKind::Device);
    assert_eq!(c.service.watchdog_device, PathBuf::from("/dev/watchdog1"));
    assert_eq!(
        c.service.watchdog_timeout.0,
        std::time::Duration::from_secs(20)
    );
    let errors =
        messages(parse(&format!("{MINIMAL}\n[service]\nwatchdog = \"cron\"\n")).unwrap_err());
    assert!(errors[0].contains("[service]"), "{errors:?}");
}

#[test]
fn the_metrics_scrape_token_counts_only_when_it_is_not_empty() {
    let with = |token: &str| {
        parse(&format!(
            "{MINIMAL}\n[admin]\nmetrics_token = \"{token}\"\n"
        ))
        .unwrap()
        .admin
    };
    assert_eq!(with("s3cret").metrics_token(), Some("s3cret"));
    assert_eq!(with("").metrics_token(), None);
    assert_eq!(parse(MINIMAL).unwrap().admin.metrics_token(), None);
}

#[test]
fn the_hub_example_is_the_shipped_default_plus_the_uplink_moved_by_its_environment() {
    let shipped = include_str!("../../../config/gateway.toml");
    let text = include_str!("../../../config/examples/hub.toml");
    let plain = Config::parse(text, "hub.toml", |_| None).unwrap();
    let default = Config::parse(shipped, "gateway.toml", |_| None).unwrap();
    let names = |c: &Config| {
        c.endpoints
            .iter()
            .map(|e| e.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&plain), names(&default));
    assert_eq!(plain.routes.len(), default.routes.len());
    assert!(plain.hub.enabled);
    assert_eq!(plain.hub.url, "mqtt://127.0.0.1:1883");
    assert_eq!(plain.hub.topic_prefix(), "ecko/site/gateway/");
    assert_eq!(plain.hub.format, PayloadFormat::Cbor);
    assert_eq!(
        plain.hub.health_interval.0,
        std::time::Duration::from_secs(30)
    );

    let moved = Config::parse(text, "hub.toml", |name| {
        Some(
            match name {
                "ECKO_HUB_URL" => "mqtts://hub.example:8883",
                "ECKO_SITE" => "north",
                "ECKO_DEVICE" => "lab-1",
                "ECKO_HUB_FORMAT" => "json",
                "ECKO_HUB_HEALTH" => "5s",
                _ => return None,
            }
            .to_string(),
        )
    })
    .unwrap();
    let b = moved.hub.broker().unwrap();
    assert_eq!(
        (b.host.as_str(), b.port, b.tls),
        ("hub.example", 8883, true)
    );
    assert_eq!(moved.hub.topic_prefix(), "ecko/north/lab-1/");
    assert_eq!(moved.hub.format, PayloadFormat::Json);
    assert_eq!(
        moved.hub.health_interval.0,
        std::time::Duration::from_secs(5)
    );
}

const ALERTS: &str = r#"
[alerts]
check_every = "5s"

[alerts.channels.oncall]
type = "email"
host = "smtp.lab.example"
from = "Ecko <gateway@lab.example>"
to = ["lab-it@lab.example"]
username = "gateway"
password = "secret"

[alerts.channels.pager]
type = "webhook"
url = "https://pager.lab.example/hook"
secret = "0123456789abcdef"

[[alerts.rule]]
name = "archive-down"
when = "endpoint_down"
endpoint = "archive"
for = "2m"
repeat = "1h"
quiet_hours = "22:00-06:30"
channels = ["oncall", "pager"]

[[alerts.rule]]
name = "disk"
when = "disk_low"
channels = ["oncall"]
"#;

#[test]
fn alerts_load_with_their_channels_rules_and_defaults() {
    let c = parse(&format!("{MINIMAL}{ALERTS}")).unwrap();
    assert!(c.alerts.enabled);
    assert_eq!(c.alerts.check_every.0, std::time::Duration::from_secs(5));
    let Some(AlertChannel::Email(e)) = c.alerts.channels.get("oncall") else {
        panic!("{:?}", c.alerts.channels);
    };
    assert_eq!((e.security, e.port()), (SmtpSecurity::Starttls, 587));
    let [down, disk] = &c.alerts.rules[..] else {
        panic!("{:?}", c.alerts.rules);
    };
    assert_eq!(down.hold(), std::time::Duration::from_secs(120));
    assert_eq!(
        AlertsConfig::quiet_hours(down),
        Some(QuietHours {
            start: 22 * 60,
            end: 6 * 60 + 30
        })
    );
    assert_eq!(disk.hold(), std::time::Duration::from_secs(60));
    assert!(
        !parse(MINIMAL).unwrap().alerts.enabled,
        "no section, no alerts"
    );
}

#[test]
fn alert_mistakes_are_reported_where_they_are_written() {
    for (from, to, expected) in [
        (
            "channels = [\"oncall\", \"pager\"]",
            "channels = [\"oncall\", \"pagr\"]",
            "rule `archive-down`: unknown channel `pagr` (configured: `oncall`, `pager`)",
        ),
        (
            "endpoint = \"archive\"",
            "endpoint = \"archiv\"",
            "rule `archive-down`: unknown endpoint `archiv`",
        ),
        (
            "quiet_hours = \"22:00-06:30\"",
            "quiet_hours = \"22-6\"",
            "`quiet_hours` must be written \"HH:MM-HH:MM\"",
        ),
        (
            "repeat = \"1h\"",
            "repeat = \"10s\"",
            "`repeat` must be at least 1m",
        ),
        (
            "secret = \"0123456789abcdef\"",
            "secret = \"short\"",
            "channel `pager`: `secret` must be at least 16 characters",
        ),
        (
            "to = [\"lab-it@lab.example\"]",
            "to = [\"lab-it\"]",
            "channel `oncall`: `lab-it` is not an e-mail address",
        ),
        (
            "username = \"gateway\"",
            "security = \"none\"\nusername = \"gateway\"",
            "would send the password in clear",
        ),
        (
            "when = \"disk_low\"",
            "when = \"disk_low\"\nabove = 3",
            "rule `disk`: `above` does not apply to `when = \"disk_low\"`",
        ),
        (
            "when = \"disk_low\"",
            "when = \"disk_full\"",
            "unknown variant `disk_full`",
        ),
        (
            "type = \"webhook\"\nurl = \"https://pager.lab.example/hook\"\nsecret = \"0123456789abcdef\"",
            "type = \"hub\"",
            "type `hub` sends on the hub uplink's events topic, which needs a [hub] section",
        ),
    ] {
        let text = format!("{MINIMAL}{ALERTS}").replace(from, to);
        let errs = messages(parse(&text).unwrap_err());
        assert!(
            errs.iter().any(|e| e.contains(expected) && e.contains("[alerts]")),
            "{to}: {errs:?}"
        );
        // Located on the offending line, not the section's first.
        let line: usize = errs[0].split(':').nth(1).unwrap().parse().unwrap();
        let first_line_of_to = text[..text.find(to).unwrap()].matches('\n').count() + 1;
        assert!(
            line >= first_line_of_to.saturating_sub(6),
            "{to}: {errs:?} (written on line {first_line_of_to})"
        );
    }
}

#[test]
fn the_rest_example_is_the_shipped_default_plus_a_fhir_listener_that_needs_its_key() {
    let shipped = include_str!("../../../config/gateway.toml");
    let text = include_str!("../../../config/examples/rest.toml");
    let default = Config::parse(shipped, "gateway.toml", |_| None).unwrap();
    let env = |n: &str| match n {
        "ECKO_REST_KEY" => Some("k-1".to_string()),
        "ECKO_REST_PORT" => Some("18081".to_string()),
        _ => None,
    };
    let c = Config::parse(text, "rest.toml", env).unwrap();
    let mut names: Vec<String> = default.endpoints.iter().map(|e| e.name.clone()).collect();
    names.push("rest-in".into());
    assert_eq!(
        c.endpoints
            .iter()
            .map(|e| e.name.clone())
            .collect::<Vec<_>>(),
        names
    );
    let EndpointKind::Rest(r) = &c.endpoint("rest-in").unwrap().kind else {
        panic!("rest-in is a rest endpoint")
    };
    assert_eq!(r.listen.as_deref(), Some("127.0.0.1:18081"));
    assert_eq!(r.paths[0].path, "/fhir");
    assert_eq!(
        r.auth,
        crate::config::RestAuth::ApiKey {
            header: "X-API-Key".into(),
            key: "k-1".into()
        }
    );
    let route = c
        .routes
        .iter()
        .find(|r| r.name == "rest-to-archive")
        .unwrap();
    assert_eq!(route.to, ["archive"]);
    let e = Config::parse(text, "rest.toml", |_| None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ECKO_REST_KEY"), "{e}");
}

#[test]
fn a_dicom_scps_worklist_must_name_a_worklist_endpoint() {
    let base = |worklist: &str| {
        format!(
            "[journal]\npath = \"j.db\"\n\n[[endpoint]]\nname = \"scp\"\ntype = \"dicom\"\nlisten = \"127.0.0.1:0\"\nworklist = \"{worklist}\"\n\n[[endpoint]]\nname = \"wl\"\ntype = \"worklist\"\nmodality = \"CT\"\n\n[[endpoint]]\nname = \"out\"\ntype = \"file\"\npath = \"out\"\n"
        )
    };
    assert!(parse(&base("wl")).is_ok());
    let errs = messages(parse(&base("wk")).unwrap_err());
    assert_eq!(
        errs,
        vec!["gw.toml:5:8: endpoint `scp`: `worklist` names unknown endpoint `wk`"]
    );
    let errs = messages(parse(&base("out")).unwrap_err());
    assert!(
        errs[0].contains("must name a `worklist` endpoint; `out` is a `file` endpoint"),
        "{errs:?}"
    );
    let bad = base("wl").replace(
        "modality = \"CT\"",
        "modality = \"ct scan\"\nkeep_for = \"0s\"",
    );
    let errs = messages(parse(&bad).unwrap_err());
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].contains("not a modality code"), "{errs:?}");
}

#[test]
fn without_an_update_section_updates_are_not_managed_and_with_one_its_defaults_and_problems_are_located(
) {
    assert_eq!(parse(MINIMAL).unwrap().update, None);
    let c = parse(&format!(
        "{MINIMAL}\n[update]\nslots = \"/data/slots\"\nhardware = \"ecko-gw-2\"\n"
    ))
    .unwrap();
    let u = c.update.unwrap();
    assert_eq!(u.boot, BootKind::File);
    assert_eq!(u.trust, std::path::PathBuf::from("/etc/ecko/keys"));
    assert_eq!(u.grace.0, std::time::Duration::from_secs(300));
    let e = messages(
        parse(&format!(
            "{MINIMAL}\n[update]\nslots = \"/data/slots\"\nhardware = \"\"\nboot = \"grub\"\n"
        ))
        .unwrap_err(),
    );
    assert!(e.iter().any(|m| m.contains("[update]")), "{e:?}");
    let e = messages(
        parse(&format!(
            "{MINIMAL}\n[update]\nslots = \"/data/slots\"\nhardware = \" \"\n"
        ))
        .unwrap_err(),
    );
    assert!(
        e.iter()
            .any(|m| m.contains("gw.toml:") && m.contains("`hardware` must not be empty")),
        "{e:?}"
    );
    // The alert on a failed update needs the slots it watches.
    let e = messages(
        parse(&format!(
            "{MINIMAL}\n[alerts]\n[alerts.channels.c]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"a secret of some length\"\n[[alerts.rule]]\nname = \"fw\"\nwhen = \"update_failed\"\nchannels = [\"c\"]\n"
        ))
        .unwrap_err(),
    );
    assert!(
        e.iter().any(|m| m.contains("needs an [update] section")),
        "{e:?}"
    );
}

#[test]
fn a_route_of_accounting_files_or_abdm_documents_to_a_fhir_destination_is_refused() {
    for transform in ["charges-csv", "charges-json", "abdm-diagnostic-report"] {
        let text = format!(
            r#"[journal]
path = "j.db"
[[endpoint]]
name = "in"
type = "file-drop"
path = "in"
[[endpoint]]
name = "hub"
type = "fhir"
url = "http://127.0.0.1:9/fhir"
[[endpoint]]
name = "out"
type = "file"
path = "out"
[[route]]
name = "r"
from = ["in"]
transform = "{transform}"
to = ["hub"]
[[route]]
name = "files"
from = ["in"]
transform = "{transform}"
to = ["out"]
"#
        );
        let errors = messages(parse(&text).unwrap_err());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains(&format!(
                "route `r`: transform `{transform}` makes no FHIR transaction, so the fhir endpoint `hub` cannot take it"
            )),
            "{errors:?}"
        );
    }
}
