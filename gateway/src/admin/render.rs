//! HTML building blocks: escaping, the page frame, payload rendering (HL7 v2
//! segments and fields, ASTM records, pretty JSON) and small inline SVG
//! charts. The embedded stylesheet and script are served from `/assets`
//! (the CSP forbids inline script).

use super::auth::Caller;
use super::auth::Role;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
}

pub async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        JS,
    )
}

/// Escapes text for HTML content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Unix ms as local time of the site.
pub fn time(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => ms.to_string(),
    }
}

pub fn opt_time(ms: Option<i64>, tz: &jiff::tz::TimeZone) -> String {
    ms.map_or_else(|| "—".to_string(), |m| time(m, tz))
}

/// The page frame: navigation by role, the CSRF token for the script, the
/// content.
pub fn page(title: &str, caller: Option<&Caller>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(c) = caller {
        let mut links = vec![
            ("/", "Dashboard"),
            ("/endpoints", "Endpoints"),
            ("/logs", "Logs"),
            ("/errors", "Errors"),
            ("/stats", "Statistics"),
            ("/settings", "Settings"),
        ];
        if c.role >= Role::Admin {
            links.push(("/users", "Users"));
            links.push(("/audit", "Audit log"));
        }
        nav.push_str("<nav>");
        for (href, label) in links {
            let _ = write!(nav, "<a href=\"{href}\">{label}</a>");
        }
        let _ = write!(
            nav,
            "<form method=\"post\" action=\"/logout\" class=\"logout\">{}<span>{} ({})</span> <button>Log out</button></form></nav>",
            csrf_field(c),
            esc(c.name()),
            c.role.as_str()
        );
    }
    let csrf = caller.and_then(|c| c.csrf.as_deref()).unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf\" content=\"{csrf}\"><title>{t} · Ecko Edge</title><link rel=\"stylesheet\" href=\"/assets/app.css\">\
         <script src=\"/assets/app.js\" defer></script></head><body><header><strong>Ecko Edge</strong>{nav}</header><main><h1>{t}</h1>{body}</main></body></html>",
        csrf = esc(csrf),
        t = esc(title),
    )
}

pub fn csrf_field(c: &Caller) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(c.csrf.as_deref().unwrap_or_default())
    )
}

/// The format a payload is in, from what the journal recorded about it
/// (content type, message type) and, failing that, from how it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Hl7,
    Astm,
    Json,
    Other,
}

pub fn format_of(content_type: &str, message_type: &str, text: &str) -> Format {
    let ct = content_type.to_ascii_lowercase();
    let start =
        text.trim_start_matches(|c: char| c.is_whitespace() || c.is_control() || c == '\u{feff}');
    if ct.contains("hl7") || ct.contains("er7") {
        return Format::Hl7;
    }
    if ct.contains("astm") {
        return Format::Astm;
    }
    if ct.contains("json") {
        return Format::Json;
    }
    // HL7 message types are `ORU^R01`; ASTM records start with `H|`.
    let hl7_type = message_type.split_once('^').is_some_and(|(a, b)| {
        a.len() == 3 && !b.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if (hl7_type && hl7_header(text).is_some())
        || ["MSH", "FHS", "BHS"].iter().any(|h| start.starts_with(h))
    {
        return Format::Hl7;
    }
    if is_astm(start) {
        return Format::Astm;
    }
    if start.starts_with('{') || start.starts_with('[') {
        return Format::Json;
    }
    Format::Other
}

/// A payload rendered for reading, by the format the journal recorded.
pub fn payload(content_type: &str, message_type: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let start =
        text.trim_start_matches(|c: char| c.is_whitespace() || c.is_control() || c == '\u{feff}');
    match format_of(content_type, message_type, &text) {
        Format::Hl7 => {
            if let Some(at) = hl7_header(&text).filter(|at| text.len() > at + 8) {
                return hl7(&text[at..]);
            }
        }
        Format::Json if serde_json::from_str::<serde_json::Value>(start).is_ok() => {
            return format!("<pre class=\"json\">{}</pre>", esc(&pretty_json(start)));
        }
        Format::Astm => return astm(start),
        _ => {}
    }
    format!("<pre class=\"raw\">{}</pre>", esc(&printable(&text)))
}

/// Valid JSON re-indented by two spaces, keys in the order they were sent
/// (a parsed value would sort them).
fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.trim().chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Skip whitespace to see whether the container is empty.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}') | Some(']')) {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Where the first header segment (`MSH`, or a batch's `FHS`/`BHS`) starts:
/// at the beginning or at the start of a line.
fn hl7_header(text: &str) -> Option<usize> {
    let starts_segment =
        |i: usize| i == 0 || matches!(text.as_bytes()[i - 1], b'\r' | b'\n' | 0x0b);
    ["FHS", "BHS", "MSH"]
        .iter()
        .filter_map(|h| {
            text.match_indices(h)
                .map(|(i, _)| i)
                .find(|i| starts_segment(*i))
        })
        .min()
}

/// `v` percent-encoded for a query string or a path segment.
pub fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `given` if it is a path on this site to return to after a form: starts
/// with one `/`, no scheme or host (`//evil`, `/\\evil`), no control
/// characters. Anything else is refused, so a form cannot send a person
/// elsewhere.
pub fn safe_back(given: &str) -> Option<&str> {
    let ok = given.starts_with('/')
        && !given.starts_with("//")
        && !given.contains('\\')
        && given.len() <= 2048
        && !given.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then_some(given)
}

/// Control characters made visible (`<CR>`, `<0x1C>`...), lines kept.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' => out.push_str("<CR>\n"),
            '\n' => out.push('\n'),
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let _ = write!(out, "<0x{:02X}>", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn segments(text: &str) -> impl Iterator<Item = &str> {
    text.split(['\r', '\n'])
        .map(|s| s.trim_matches(|c: char| c.is_control()))
        .filter(|s| !s.is_empty())
}

/// HL7 v2: one table per segment, one row per field, with its position
/// (`PID-3`), name where known, and components split on the separators
/// the message declares in MSH-1 and MSH-2.
pub fn hl7(text: &str) -> String {
    let mut chars = text.chars().skip(3);
    let field_sep = chars.next().unwrap_or('|');
    let component_sep = chars.next().unwrap_or('^');
    let mut out = String::from("<div class=\"hl7\">");
    for segment in segments(text) {
        let mut fields: Vec<&str> = segment.split(field_sep).collect();
        let name = fields.remove(0);
        let _ = write!(
            out,
            "<table class=\"segment\"><caption>{}</caption>",
            esc(name)
        );
        // In MSH the separator itself is field 1.
        let offset = if name == "MSH" {
            let _ = write!(
                out,
                "<tr><th>MSH-1</th><td class=\"fname\">Field Separator</td><td>{}</td></tr>",
                esc(&field_sep.to_string())
            );
            2
        } else {
            1
        };
        for (i, f) in fields.iter().enumerate() {
            if f.is_empty() {
                continue;
            }
            let pos = i + offset;
            let value = if name == "MSH" && pos == 2 {
                esc(f)
            } else {
                f.split(component_sep)
                    .map(esc)
                    .collect::<Vec<_>>()
                    .join("<span class=\"sep\">^</span>")
            };
            let _ = write!(
                out,
                "<tr><th>{}-{pos}</th><td class=\"fname\">{}</td><td>{value}</td></tr>",
                esc(name),
                ecko_protocol::hl7::fields::field_name(name, pos).unwrap_or("")
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</div>");
    out
}

fn is_astm(text: &str) -> bool {
    let t = text.trim_start_matches(|c: char| c.is_control() || c.is_ascii_digit());
    t.starts_with("H|")
}

/// ASTM E1394: one record per line, indented by level (H, P, O, R, C, L).
pub fn astm(text: &str) -> String {
    let mut out = String::from("<div class=\"astm\">");
    for record in segments(text) {
        let r = record.trim_start_matches(|c: char| c.is_ascii_digit());
        let level = match r.chars().next() {
            Some('H') | Some('L') => 0,
            Some('P') => 1,
            Some('O') => 2,
            Some('R') | Some('C') | Some('M') => 3,
            _ => 1,
        };
        let _ = write!(
            out,
            "<div class=\"rec l{level}\"><code>{}</code></div>",
            esc(&printable(record))
        );
    }
    out.push_str("</div>");
    out
}

/// A bar chart of `values` as inline SVG, `w` × `h` pixels.
pub fn bars(values: &[u64], w: u32, h: u32, label: &str) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let n = values.len().max(1) as f64;
    let bw = f64::from(w) / n;
    let mut out = format!(
        "<svg class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        esc(label),
        esc(label)
    );
    for (i, v) in values.iter().enumerate() {
        let bh = (*v as f64 / max as f64) * f64::from(h - 2);
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#3b82c4\"><title>{v}</title></rect>",
            i as f64 * bw + 0.5,
            f64::from(h) - bh,
            (bw - 1.0).max(0.5),
            bh
        );
    }
    let _ = write!(
        out,
        "<line x1=\"0\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\" stroke=\"#888\"/></svg>"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hl7_fields_are_numbered_from_the_separators_msh_declares() {
        let html = hl7("MSH#~*\\&#LAB#X#GW#Y#20240101##ORU~R01#C1#P#2.5\rPID###P123~~~HOSP\r");
        assert!(html.contains("MSH-9"), "{html}");
        assert!(html.contains("Message Type"));
        assert!(html.contains("PID-3"));
        assert!(html.contains("Patient Identifier List"));
        assert!(html.contains("P123"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
        let html = payload("text/plain", "unknown", b"<script>alert(1)</script>");
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn the_format_comes_from_what_the_journal_recorded_first() {
        let hl7 = "MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5\r";
        assert_eq!(
            format_of("x-application/hl7-v2+er7", "ORU^R01", hl7),
            Format::Hl7
        );
        // A drop folder's octet-stream with an HL7 type and a leading newline.
        assert_eq!(
            format_of("application/octet-stream", "ORU^R01", &format!("\n{hl7}")),
            Format::Hl7
        );
        assert_eq!(
            format_of("application/x-astm", "ASTM", "1H|\\^&\r"),
            Format::Astm
        );
        assert_eq!(
            format_of("application/fhir+json", "Bundle", "{}"),
            Format::Json
        );
        assert_eq!(format_of("text/plain", "note", "hello"), Format::Other);
        let html = payload(
            "application/octet-stream",
            "ORU^R01",
            format!("\r\n{hl7}").as_bytes(),
        );
        assert!(html.contains("MSH-9"), "{html}");
    }

    #[test]
    fn json_is_indented_with_its_keys_in_the_order_sent() {
        let text = r#"{"z":1,"a":{"s":"x, \"y\": [z]","e":[]},"l":[1,{}]}"#;
        assert_eq!(
            pretty_json(text),
            "{\n  \"z\": 1,\n  \"a\": {\n    \"s\": \"x, \\\"y\\\": [z]\",\n    \"e\": []\n  },\n  \"l\": [\n    1,\n    {}\n  ]\n}"
        );
    }

    #[test]
    fn only_paths_on_this_site_are_places_to_go_back_to() {
        for ok in ["/errors", "/errors?endpoint=hub&status=dead", "/messages/7"] {
            assert_eq!(safe_back(ok), Some(ok));
        }
        for bad in [
            "",
            "errors",
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "/a\nb",
            "/a b",
            "javascript:alert(1)",
        ] {
            assert_eq!(safe_back(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_query_value_is_percent_encoded() {
        assert_eq!(query_value("lab 1&x=/"), "lab%201%26x%3D%2F");
    }

    #[test]
    fn astm_records_are_one_per_line_by_level() {
        let html = astm("H|\\^&\rP|1\rO|1|S1\rR|1|^^^GLU|5.2\rL|1\r");
        assert_eq!(html.matches("class=\"rec").count(), 5);
        assert!(html.contains("rec l3"));
    }

    #[test]
    fn a_chart_has_one_bar_per_value() {
        let svg = bars(&[1, 0, 5], 90, 30, "x");
        assert_eq!(svg.matches("<rect").count(), 3);
    }
}
