//! MLLP endpoint settings and the route option `application_ack`.

use super::*;
use std::time::Duration;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, "gw.toml", |_| None)
}

fn with(listener: &str, sender: &str, route: &str) -> String {
    format!(
        r#"
[journal]
path = "j.db"

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:2575"
{listener}

[[endpoint]]
name = "lis"
type = "mllp"
connect = "lis.example:2575"
{sender}

[[endpoint]]
name = "his-replies"
type = "mllp"
connect = "his.example:2576"

[[endpoint]]
name = "archive"
type = "file"
path = "out"

[[route]]
name = "forward"
from = ["lab"]
to = ["lis"]
{route}
"#
    )
}

fn errors(text: &str) -> Vec<String> {
    parse(text)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn mllp<'a>(c: &'a Config, name: &str) -> &'a MllpConfig {
    match &c.endpoint(name).unwrap().kind {
        EndpointKind::Mllp(m) => m,
        _ => panic!("{name} is not mllp"),
    }
}

#[test]
fn mllp_endpoints_get_the_documented_defaults() {
    let c = parse(&with("", "", "")).unwrap();
    let l = mllp(&c, "lab");
    assert_eq!(l.max_message_size.0, 16 << 20);
    assert_eq!(l.frame_timeout.0, Duration::from_secs(60));
    assert_eq!(l.idle_timeout.0, Duration::from_secs(600));
    assert_eq!(l.max_connections, 64);
    assert_eq!(l.max_connections_per_address, 8);
    assert!(l.allow.is_empty());
    assert_eq!(l.min_data_rate, 512);
    assert_eq!(l.rate_window.0, Duration::from_secs(10));
    assert_eq!(l.charset, "windows-1252");
    assert_eq!(l.on_invalid_text, InvalidText::Refuse);
    assert_eq!(
        l.keepalive,
        Keepalive {
            enabled: true,
            idle: Span(Duration::from_secs(60)),
            interval: Span(Duration::from_secs(15)),
            probes: 4,
        }
    );
    let s = mllp(&c, "lis");
    assert_eq!(s.connect_timeout.0, Duration::from_secs(10));
    assert_eq!(s.send_timeout.0, Duration::from_secs(10));
    assert_eq!(s.ack_timeout.0, Duration::from_secs(30));
    assert_eq!(s.application_error, ApplicationErrorHandling::Permanent);
    // The whole exchange fits in the endpoint timeout, with room to spare.
    assert_eq!(c.endpoint("lis").unwrap().timeout, Duration::from_secs(55));
    assert_eq!(c.endpoint("lab").unwrap().timeout, DEFAULT_TIMEOUT);
    assert_eq!(c.routes[0].application_ack, None);
}

#[test]
fn keepalive_can_be_tuned_or_turned_off() {
    let c = parse(&with(
        "[endpoint.keepalive]\nidle = \"2m\"\ninterval = \"10s\"\nprobes = 6",
        "",
        "",
    ))
    .unwrap();
    let k = mllp(&c, "lab").keepalive;
    assert_eq!(
        (k.idle.0, k.interval.0, k.probes),
        (Duration::from_secs(120), Duration::from_secs(10), 6)
    );
    let c = parse(&with("keepalive = { enabled = false }", "", "")).unwrap();
    assert!(!mllp(&c, "lab").keepalive.enabled);
    let errs = errors(&with("keepalive = { probes = 0 }", "", ""));
    assert!(errs[0].contains("`keepalive` needs"), "{errs:?}");
}

#[test]
fn an_endpoint_timeout_not_longer_than_the_senders_own_timeouts_is_refused_where_it_is_written() {
    let text = with("", "timeout = \"30s\"", "");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let line = text
        .lines()
        .position(|l| l.starts_with("timeout = \"30s\""))
        .unwrap()
        + 1;
    assert!(errs[0].starts_with(&format!("gw.toml:{line}:")), "{errs:?}");
    assert!(
        errs[0].contains(
            "must be longer than `connect_timeout` + `send_timeout` + `ack_timeout` (50s)"
        ),
        "{errs:?}"
    );
    let c = parse(&with(
        "",
        "timeout = \"30s\"\nconnect_timeout = \"5s\"\nsend_timeout = \"5s\"\nack_timeout = \"15s\"",
        "",
    ))
    .unwrap();
    assert_eq!(c.endpoint("lis").unwrap().timeout, Duration::from_secs(30));
    let errs = errors(&with("", "send_timeout = \"0s\"", ""));
    assert!(
        errs[0].contains("`send_timeout` must be longer than 0s"),
        "{errs:?}"
    );
}

#[test]
fn application_ack_names_an_mllp_sender() {
    let c = parse(&with("", "", "application_ack = \"his-replies\"")).unwrap();
    assert_eq!(c.routes[0].application_ack.as_deref(), Some("his-replies"));

    let text = with("", "", "application_ack = \"nowhere\"");
    let errs = errors(&text);
    let line = text
        .lines()
        .position(|l| l.starts_with("application_ack"))
        .unwrap()
        + 1;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with(&format!("gw.toml:{line}:")), "{errs:?}");
    assert!(errs[0].contains("unknown endpoint `nowhere`"), "{errs:?}");

    let errs = errors(&with("", "", "application_ack = \"archive\""));
    assert!(errs[0].contains("must name an MLLP sender"), "{errs:?}");
    let errs = errors(&with("", "", "application_ack = \"lab\""));
    assert!(errs[0].contains("must name an MLLP sender"), "{errs:?}");
}

#[test]
fn application_ack_needs_a_route_with_one_destination() {
    let text = with("", "", "application_ack = \"his-replies\"")
        .replace("to = [\"lis\"]", "to = [\"lis\", \"archive\"]");
    let errs = errors(&text);
    assert!(
        errs[0].contains("reports one destination's outcome; the route has 2"),
        "{errs:?}"
    );
}

#[test]
fn listener_limits_that_cannot_work_are_errors_at_their_keys() {
    let e = errors(&with(
        "allow = [\"10.1.2.3\", \"10.1.0.0/33\"]\nmax_connections_per_address = 0",
        "",
        "",
    ));
    let text = e.join("\n");
    assert!(
        text.contains("`10.1.0.0/33` is not an address or network"),
        "{text}"
    );
    assert!(
        text.contains("`max_connections_per_address` must be at least 1"),
        "{text}"
    );
    let c = parse(&with("allow = [\"10.1.2.3\", \"10.1.0.0/16\"]", "", "")).unwrap();
    let rules = mllp(&c, "lab").admission();
    assert!(rules.allow.allows("10.1.200.9".parse().unwrap()));
    assert!(!rules.allow.allows("10.2.0.1".parse().unwrap()));
}

#[test]
fn the_admin_pages_former_lockout_keys_are_read_as_the_throttle() {
    let c = parse("[journal]\npath = \"j.db\"\n[admin]\nlockout_after = 7\nlockout = \"2m\"\n")
        .unwrap();
    assert_eq!(c.admin.throttle_after, 7);
    assert_eq!(c.admin.throttle_max.0, Duration::from_secs(120));
    let d = parse("[journal]\npath = \"j.db\"\n[admin]\n").unwrap();
    assert_eq!(
        (
            d.admin.throttle_after,
            d.admin.throttle_delay.0,
            d.admin.max_connections,
            d.admin.max_connections_per_address,
            d.admin.header_timeout.0
        ),
        (3, Duration::from_secs(1), 64, 16, Duration::from_secs(10))
    );
    let e = parse("[journal]\npath = \"j.db\"\n[admin]\nallow = [\"nowhere\"]\n")
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        e.contains("[admin]: `nowhere` is not an address or network"),
        "{e}"
    );
}

#[test]
fn on_invalid_text_is_refuse_or_replace_and_nothing_else() {
    let c = parse(&with("on_invalid_text = \"replace\"", "", "")).unwrap();
    assert_eq!(mllp(&c, "lab").on_invalid_text, InvalidText::Replace);
    let e = errors(&with("on_invalid_text = \"drop\"", "", ""));
    assert!(
        e.iter()
            .any(|m| m.contains("on_invalid_text") || m.contains("drop")),
        "{e:?}"
    );
}
