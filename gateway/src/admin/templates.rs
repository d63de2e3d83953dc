//! The pages' templates: minijinja with HTML auto-escaping, embedded in the
//! binary (`templates/*.html`) and loaded once into [`Templates`], which the
//! admin state keeps. Every page extends `layout.html` (navigation by role,
//! the CSRF token for the script); pieces that pages share are macros in
//! the `_*.html` templates. Rust code hands templates values, never markup.
//!
//! Every value is escaped for HTML text and quoted attributes alike
//! (`& < > " '`, see [`write_escaped`]); `/` is left as it is, unlike
//! minijinja's own escaping, so that links and paths read the same in the
//! page source. Only a macro's output (itself escaped) passes unescaped.

use super::auth::{Caller, Role};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{context, AutoEscape, Environment, Value};

/// Every template, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("audit.html", include_str!("templates/audit.html")),
    ("_chart.html", include_str!("templates/_chart.html")),
    ("stats.html", include_str!("templates/stats.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("_dashboard.html", include_str!("templates/_dashboard.html")),
    ("users.html", include_str!("templates/users.html")),
    ("account.html", include_str!("templates/account.html")),
    ("setup.html", include_str!("templates/setup.html")),
    ("login.html", include_str!("templates/login.html")),
    ("_filters.html", include_str!("templates/_filters.html")),
    ("_messages.html", include_str!("templates/_messages.html")),
    ("logs.html", include_str!("templates/logs.html")),
    ("errors.html", include_str!("templates/errors.html")),
    ("problem.html", include_str!("templates/problem.html")),
    ("_actions.html", include_str!("templates/_actions.html")),
    ("_payload.html", include_str!("templates/_payload.html")),
    ("message.html", include_str!("templates/message.html")),
    ("delivery.html", include_str!("templates/delivery.html")),
    ("_form.html", include_str!("templates/_form.html")),
    ("_routes.html", include_str!("templates/_routes.html")),
    ("_endpoint.html", include_str!("templates/_endpoint.html")),
    (
        "_certificates.html",
        include_str!("templates/_certificates.html"),
    ),
    ("endpoints.html", include_str!("templates/endpoints.html")),
    ("endpoint.html", include_str!("templates/endpoint.html")),
    (
        "endpoint_types.html",
        include_str!("templates/endpoint_types.html"),
    ),
    (
        "endpoint_form.html",
        include_str!("templates/endpoint_form.html"),
    ),
    (
        "endpoint_template.html",
        include_str!("templates/endpoint_template.html"),
    ),
    ("settings.html", include_str!("templates/settings.html")),
    ("routes.html", include_str!("templates/routes.html")),
    ("versions.html", include_str!("templates/versions.html")),
    ("version.html", include_str!("templates/version.html")),
    ("rollback.html", include_str!("templates/rollback.html")),
    ("_slots.html", include_str!("templates/_slots.html")),
    ("update.html", include_str!("templates/update.html")),
    (
        "factory_reset.html",
        include_str!("templates/factory_reset.html"),
    ),
];

/// Writes `text` with the characters that could end HTML text or a quoted
/// attribute value written as entities.
fn write_escaped(out: &mut minijinja::Output, text: &str) -> std::fmt::Result {
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        let entity = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.write_str(&text[plain..at])?;
        out.write_str(entity)?;
        plain = at + 1;
    }
    out.write_str(&text[plain..])
}

/// The loaded templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Loads every embedded template; an error is a template that does not
    /// parse (the unit tests load them all).
    pub fn load() -> Result<Templates, minijinja::Error> {
        let mut env = Environment::new();
        env.set_formatter(|out, state, value| {
            if state.auto_escape() == AutoEscape::Html && !value.is_safe() {
                if value.is_none() || value.is_undefined() {
                    return Ok(());
                }
                match value.as_str() {
                    Some(text) => write_escaped(out, text),
                    None => write_escaped(out, &value.to_string()),
                }
                .map_err(minijinja::Error::from)
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Templates { env })
    }

    /// Renders template `name` (which extends `layout.html`) as the page
    /// `title` for `caller`, with `values`.
    pub fn render(
        &self,
        name: &str,
        title: &str,
        caller: Option<&Caller>,
        values: Value,
    ) -> Result<String, minijinja::Error> {
        let user = caller.map(|c| {
            context! {
                name => c.name(),
                role => c.role.as_str(),
                admin => c.role >= Role::Admin,
            }
        });
        let csrf = caller.and_then(|c| c.csrf.as_deref()).unwrap_or_default();
        self.env.get_template(name)?.render(context! {
            title,
            user,
            csrf,
            ..values
        })
    }

    /// The page's text; a template that fails to render gives a page that
    /// says so.
    pub fn text(&self, name: &str, title: &str, caller: Option<&Caller>, values: Value) -> String {
        self.render(name, title, caller, values)
            .unwrap_or_else(|e| self.unrendered(name, caller, &e))
    }

    /// The page as a response with `status`; a template that fails to
    /// render is a 500 page.
    pub fn page(
        &self,
        status: StatusCode,
        name: &str,
        title: &str,
        caller: Option<&Caller>,
        values: Value,
    ) -> Response {
        match self.render(name, title, caller, values) {
            Ok(body) => (status, Html(body)).into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(self.unrendered(name, caller, &e)),
            )
                .into_response(),
        }
    }

    /// The page that stands in for template `name`, which failed with `e`.
    fn unrendered(&self, name: &str, caller: Option<&Caller>, e: &minijinja::Error) -> String {
        tracing::error!(template = name, error = %e, "admin page: cannot render");
        let why = "The page could not be rendered.";
        self.render(
            "problem.html",
            "Cannot show this page",
            caller,
            context! { why },
        )
        .unwrap_or_else(|_| why.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_template_parses() {
        let t = Templates::load().unwrap();
        for (name, _) in TEMPLATES {
            assert!(t.env.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn every_template_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin/templates");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                TEMPLATES.iter().any(|(n, _)| *n == name),
                "{name} is not in TEMPLATES"
            );
        }
    }

    fn caller(name: &str, role: Role, csrf: &str) -> Caller {
        Caller {
            user: crate::journal::AdminUser {
                id: 1,
                name: name.into(),
                role: role.as_str().into(),
                password_hash: String::new(),
                created_at: 0,
                failed_logins: 0,
                locked_until: 0,
            },
            role,
            csrf: Some(csrf.into()),
            session_hash: None,
            token_hash: None,
        }
    }

    #[test]
    fn the_layout_frames_a_page_with_the_navigation_its_caller_may_use() {
        let mut t = Templates::load().unwrap();
        t.env
            .add_template(
                "probe.html",
                "{% extends \"layout.html\" %}{% block body %}{{ body|safe }}{% endblock %}",
            )
            .unwrap();
        let body = "<p>x &amp; y</p>";
        let links = "<nav><a href=\"/\">Dashboard</a><a href=\"/endpoints\">Endpoints</a><a href=\"/logs\">Logs</a><a href=\"/errors\">Errors</a><a href=\"/stats\">Statistics</a><a href=\"/settings\">Settings</a>";
        let admin_links = "<a href=\"/users\">Users</a><a href=\"/audit\">Audit log</a>";
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            let page = t
                .render(
                    "probe.html",
                    "A & B",
                    Some(&caller("o'neil", role, "c\"s")),
                    context! { body },
                )
                .unwrap();
            assert!(
                page.starts_with("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">")
            );
            assert!(page.contains("<meta name=\"csrf\" content=\"c&quot;s\"><title>A &amp; B · Ecko Edge</title><link rel=\"stylesheet\" href=\"/assets/app.css\"><script src=\"/assets/app.js\" defer></script></head>"));
            assert!(page.contains(links), "{page}");
            assert_eq!(page.contains(admin_links), role == Role::Admin, "{page}");
            assert!(page.contains(&format!(
                "<form method=\"post\" action=\"/logout\" class=\"logout\"><input type=\"hidden\" name=\"csrf\" value=\"c&quot;s\"><a href=\"/account\" id=\"account\">o&#39;neil ({})</a> <button>Log out</button></form></nav></header>",
                role.as_str()
            )), "{page}");
            assert!(page.ends_with("<main><h1>A &amp; B</h1><p>x &amp; y</p></main></body></html>"));
        }
        let page = t
            .render("probe.html", "Login", None, context! { body })
            .unwrap();
        assert!(page.contains("<meta name=\"csrf\" content=\"\"><title>Login · Ecko Edge</title>"));
        assert!(page.contains("<header><strong>Ecko Edge</strong></header><main><h1>Login</h1>"));
    }

    #[test]
    fn values_are_escaped_like_the_rest_of_the_page() {
        let t = Templates::load().unwrap();
        let html = t
            .render(
                "audit.html",
                "Audit <log>",
                None,
                context! { rows => vec![context! { at => "t", actor => "<b>'x'</b>", action => "a/b", target => (), detail => "\"q\"" }], older => () },
            )
            .unwrap();
        assert!(html.contains("<title>Audit &lt;log&gt; · Ecko Edge</title>"));
        assert!(html.contains(
            "<td>&lt;b&gt;&#39;x&#39;&lt;/b&gt;</td><td>a/b</td><td></td><td>&quot;q&quot;</td>"
        ));
    }
}
