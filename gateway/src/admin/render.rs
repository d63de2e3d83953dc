//! HTML building blocks: escaping and the page frame. The embedded stylesheet and script are served from `/assets`
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
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
}
