//! Settings of the `rest` endpoint type: an HTTP(S) listener (`listen`)
//! taking FHIR resources and Bundles and custom JSON or text bodies on
//! configured paths, or a sender (`url`) to a custom REST API.
//!
//! One type for both, like `mllp` and `dicom`: which keys apply follows
//! from the role, and `problems` refuses a key of the other role where it
//! would silently do nothing (`paths` on a sender, `body` on a listener).

use super::model::{listener_problems, ListenerLimits, TlsSettings};
use super::units::{Size, Span};
use super::FhirAuth;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Listener: the address served, e.g. `"0.0.0.0:8081"`.
    pub listen: Option<String>,
    /// Listener: the server certificate and key (HTTPS, the default); with
    /// `ca` and `require_client_cert`, client certificates (mutual TLS).
    pub tls: Option<TlsSettings>,
    /// Listener: plain HTTP instead of HTTPS; refused unless `listen` is a
    /// loopback address.
    #[serde(default)]
    pub plain_http: bool,
    /// Listener: the paths served and what each takes.
    #[serde(default)]
    pub paths: Vec<RestPath>,
    /// Listener: the largest request body; a larger one is answered 413
    /// as soon as it is seen (its `Content-Length`, or the bytes read).
    #[serde(default = "default_max_body")]
    pub max_body_size: Size,
    /// Listener: a request's headers must arrive within this.
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Span,
    /// Listener: a request's body must arrive within this.
    #[serde(default = "default_body_timeout")]
    pub body_timeout: Span,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "default_per_address")]
    pub max_connections_per_address: usize,
    /// Listener: client addresses or networks served; empty: every address.
    #[serde(default)]
    pub allow: Vec<String>,

    /// Sender: the URL, a minijinja template of the message.
    pub url: Option<String>,
    /// Sender: the HTTP method, a template (`POST` by default).
    #[serde(default = "default_method")]
    pub method: String,
    /// Sender: extra request headers, each value a template.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sender: the body, a template; unset: the transform's output.
    pub body: Option<String>,
    /// Sender: the body's `Content-Type`.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Sender: JSON pointers (`/id`, `/claim/status`) read from a 2xx
    /// answer into the delivered response the journal keeps.
    #[serde(default)]
    pub capture: Vec<String>,
    /// Sender: PEM CAs trusted for the server instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Sender: the server's own certificate, the only one accepted.
    pub pinned_cert: Option<PathBuf>,

    /// How requests are authenticated: checked (listener) or presented
    /// (sender).
    #[serde(default)]
    pub auth: RestAuth,
}

/// One path of a listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestPath {
    /// `/fhir`; a FHIR path also takes `/fhir/<anything>` (`/fhir/Observation`).
    pub path: String,
    /// What the path takes.
    #[serde(default)]
    pub accept: RestBody,
    /// The journal's message type; default `FHIR^<resourceType>`, `JSON`
    /// or `TEXT`.
    pub message_type: Option<String>,
    /// FHIR: a `transaction` or `batch` Bundle kept as one message
    /// (`whole`, the default) or one message per entry (`split`).
    #[serde(default)]
    pub bundles: BundleHandling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestBody {
    /// `application/fhir+json` (or `application/json`): one resource or a
    /// Bundle, checked for shape.
    #[default]
    Fhir,
    /// Any JSON document (`application/json`, `*/*+json`).
    Json,
    /// UTF-8 text (`text/*`).
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleHandling {
    #[default]
    Whole,
    /// One message per entry, holding the entry's resource.
    Split,
    /// One message per entry, holding a one-entry transaction Bundle with
    /// the entry's `request` (for a FHIR destination with `transform =
    /// "none"`: a conditional `PUT` or a `DELETE` stays what it was).
    #[serde(rename = "split-transactions")]
    SplitTransactions,
}

/// `[endpoint.auth]` of a `rest` endpoint.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RestAuth {
    #[default]
    None,
    /// A fixed key in a header: checked (listener) or sent (sender).
    ApiKey {
        #[serde(default = "default_api_key_header")]
        header: String,
        key: String,
    },
    /// Sender: OAuth 2.0 client credentials, as for `fhir`.
    #[serde(rename = "oauth2")]
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
    /// Listener: an OAuth 2.0 bearer token, a JWT verified against a JWKS
    /// or any token checked at an introspection endpoint (RFC 7662).
    Bearer {
        jwks_file: Option<PathBuf>,
        jwks_url: Option<String>,
        /// The identity provider's token introspection endpoint, asked
        /// about each token (opaque ones included) instead of a JWKS.
        introspection_url: Option<String>,
        /// The listener's own client id and secret at the introspection
        /// endpoint (HTTP Basic).
        client_id: Option<String>,
        client_secret: Option<String>,
        /// How long an active token's introspection answer is kept (never
        /// past the token's `exp`): a revocation at the provider takes
        /// effect within this; `0s` asks about every request.
        #[serde(default = "default_introspection_cache")]
        introspection_cache: Span,
        /// The CA bundle (PEM) the identity provider's HTTPS certificate
        /// (JWKS URL, introspection endpoint) is verified against; the
        /// system's trust store when unset.
        idp_ca: Option<PathBuf>,
        /// Required `iss`, when set.
        issuer: Option<String>,
        /// Required `aud`, when set.
        audience: Option<String>,
        /// A scope the token's `scope` must hold (else 403), when set.
        scope: Option<String>,
    },
    /// A client certificate: the listener requires one signed by
    /// `tls.ca`; a sender presents `cert` and `key`.
    ClientCertificate {
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    },
}

fn default_introspection_cache() -> Span {
    Span(Duration::from_secs(60))
}
fn default_api_key_header() -> String {
    "X-API-Key".into()
}
fn default_max_body() -> Size {
    Size(16 << 20)
}
fn default_header_timeout() -> Span {
    Span(Duration::from_secs(10))
}
fn default_body_timeout() -> Span {
    Span(Duration::from_secs(60))
}
fn default_max_connections() -> usize {
    64
}
fn default_per_address() -> usize {
    16
}
fn default_method() -> String {
    "POST".into()
}
fn default_content_type() -> String {
    "application/json".into()
}

impl RestConfig {
    pub fn is_listener(&self) -> bool {
        self.listen.is_some()
    }

    /// How the listener admits connections.
    pub fn admission(&self) -> crate::net::AdmissionRules {
        crate::net::AdmissionRules {
            allow: crate::net::Allowlist::parse(&self.allow).unwrap_or_default(),
            max_connections: self.max_connections,
            max_per_address: self.max_connections_per_address,
        }
    }

    /// The sender's authentication in the FHIR sink's terms, whose code
    /// presents it.
    pub fn sender_auth(&self) -> FhirAuth {
        match &self.auth {
            RestAuth::ApiKey { header, key } => FhirAuth::ApiKey {
                header: header.clone(),
                key: key.clone(),
            },
            RestAuth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
            } => FhirAuth::OAuth2 {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                scope: scope.clone(),
            },
            RestAuth::ClientCertificate {
                cert: Some(cert),
                key: Some(key),
            } => FhirAuth::ClientCertificate {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => FhirAuth::None,
        }
    }

    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match (&self.listen, &self.url) {
            (Some(_), Some(_)) => out.push((
                "url",
                "a rest endpoint has either `listen` (a listener) or `url` (a sender), not both"
                    .into(),
            )),
            (None, None) => out.push((
                "type",
                "a rest endpoint needs `listen` (a listener) or `url` (a sender)".into(),
            )),
            (Some(l), None) => self.listener_problems(l, &mut out),
            (None, Some(u)) => self.sender_problems(u, &mut out),
        }
        out
    }

    fn listener_problems(&self, listen: &str, out: &mut Vec<(&'static str, String)>) {
        match listen.parse::<std::net::SocketAddr>() {
            Err(_) => out.push(("listen", format!("`{listen}` is not an address to listen on (expected e.g. \"0.0.0.0:8081\")"))),
            Ok(a) if self.plain_http && !a.ip().is_loopback() => out.push(("plain_http", format!("plain HTTP is served on a loopback address only, not on {a}; give `tls` a certificate and key"))),
            Ok(_) => {}
        }
        match (&self.tls, self.plain_http) {
            (Some(_), true) => out.push(("plain_http", "`plain_http = true` and `tls` exclude each other".into())),
            (None, false) => out.push(("tls", "a rest listener serves HTTPS: give `tls` a `cert` and `key` (or set `plain_http = true` on a loopback address)".into())),
            (Some(t), false) => {
                if t.cert.is_none() || t.key.is_none() {
                    out.push(("tls", "a TLS listener needs `cert` and `key`".into()));
                }
                if t.require_client_cert && t.ca.is_none() {
                    out.push(("tls", "`require_client_cert` needs `ca` to verify client certificates".into()));
                }
            }
            (None, true) => {}
        }
        if self.paths.is_empty() {
            out.push((
                "paths",
                "a rest listener needs at least one `[[endpoint.paths]]` with a `path`".into(),
            ));
        }
        for (i, p) in self.paths.iter().enumerate() {
            if !p.path.starts_with('/') || p.path.contains(['?', '#']) {
                out.push((
                    "paths",
                    format!("`{}` is not a path (expected e.g. \"/fhir\")", p.path),
                ));
            }
            if self.paths[..i]
                .iter()
                .any(|q| q.path.trim_end_matches('/') == p.path.trim_end_matches('/'))
            {
                out.push(("paths", format!("path `{}` twice", p.path)));
            }
            if let Some(t) = &p.message_type {
                if let Err(e) = super::MessageTypePattern::parse(t) {
                    out.push(("paths", e));
                }
            }
        }
        match &self.auth {
            RestAuth::OAuth2 { .. } => out.push((
                "auth",
                "`oauth2` is how a sender authenticates; a listener checks `bearer` tokens".into(),
            )),
            RestAuth::Bearer {
                jwks_file,
                jwks_url,
                introspection_url,
                client_id,
                client_secret,
                ..
            } => {
                let sources = [
                    jwks_file.is_some(),
                    jwks_url.is_some(),
                    introspection_url.is_some(),
                ];
                if sources.iter().filter(|s| **s).count() != 1 {
                    out.push((
                        "auth",
                        "`bearer` needs exactly one of `jwks_file`, `jwks_url` and `introspection_url`".into(),
                    ));
                }
                for (key, url) in [
                    ("jwks_url", jwks_url),
                    ("introspection_url", introspection_url),
                ] {
                    if let Some(u) = url {
                        if !(u.starts_with("https://") || u.starts_with("http://")) {
                            out.push((
                                "auth",
                                format!("`{key}` must be an http:// or https:// URL, not {u:?}"),
                            ));
                        }
                    }
                }
                let credentials = client_id.is_some() && client_secret.is_some();
                if introspection_url.is_some() && !credentials {
                    out.push((
                        "auth",
                        "`introspection_url` needs the listener's `client_id` and `client_secret` at that endpoint".into(),
                    ));
                }
                if introspection_url.is_none() && (client_id.is_some() || client_secret.is_some()) {
                    out.push((
                        "auth",
                        "`client_id` and `client_secret` are for `introspection_url`; a JWKS needs none".into(),
                    ));
                }
            }
            RestAuth::ClientCertificate { .. } => {
                if !self
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.require_client_cert && t.ca.is_some())
                {
                    out.push(("auth", "client-certificate authentication needs `tls` with `ca` and `require_client_cert = true`".into()));
                }
            }
            RestAuth::ApiKey { header, key } => api_key_problems(header, key, out),
            RestAuth::None => {}
        }
        if self.max_body_size.0 < 1024 {
            out.push((
                "max_body_size",
                "`max_body_size` must be at least 1 KiB".into(),
            ));
        }
        if self.body_timeout.0.is_zero() {
            out.push(("body_timeout", "`body_timeout` must be above zero".into()));
        }
        out.extend(listener_problems(&ListenerLimits {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            allow: &self.allow,
            min_data_rate: 0,
            rate_window: Span(Duration::from_secs(1)),
            frame_timeout: ("header_timeout", self.header_timeout),
            idle_timeout: Span(Duration::from_secs(1)),
        }));
        if self.body.is_some() || !self.headers.is_empty() || !self.capture.is_empty() {
            out.push((
                "body",
                "`body`, `headers` and `capture` are a sender's (`url`), not a listener's".into(),
            ));
        }
    }

    fn sender_problems(&self, url: &str, out: &mut Vec<(&'static str, String)>) {
        let templates = [
            ("url", Some(url)),
            ("method", Some(self.method.as_str())),
            ("body", self.body.as_deref()),
        ];
        for (key, text) in templates {
            if let Some(Err(e)) = text.map(check_template) {
                out.push((key, e));
            }
        }
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                out.push(("headers", format!("`{name}` is not a header name")));
            }
            if let Err(e) = check_template(value) {
                out.push(("headers", format!("header `{name}`: {e}")));
            }
        }
        let templated_host = url.starts_with("{{");
        if !(templated_host || url.starts_with("http://") || url.starts_with("https://")) {
            out.push((
                "url",
                format!("`url` must be an http:// or https:// URL, not {url:?}"),
            ));
        }
        for p in &self.capture {
            if !p.starts_with('/') {
                out.push((
                    "capture",
                    format!("`{p}` is not a JSON pointer (expected e.g. \"/id\")"),
                ));
            }
        }
        match &self.auth {
            RestAuth::Bearer { .. } => out.push((
                "auth",
                "`bearer` is what a listener checks; a sender uses `oauth2`".into(),
            )),
            RestAuth::OAuth2 { token_url, .. }
                if !(token_url.starts_with("http://") || token_url.starts_with("https://")) =>
            {
                out.push((
                    "auth",
                    format!(
                        "`auth.token_url` must be an http:// or https:// URL, not {token_url:?}"
                    ),
                ));
            }
            RestAuth::ClientCertificate { cert, key } if cert.is_none() || key.is_none() => {
                out.push((
                    "auth",
                    "a sender's client certificate needs `cert` and `key`".into(),
                ));
            }
            RestAuth::ApiKey { header, key } => api_key_problems(header, key, out),
            _ => {}
        }
        if !self.paths.is_empty() || self.tls.is_some() {
            out.push((
                "paths",
                "`paths` and `tls` are a listener's (`listen`), not a sender's".into(),
            ));
        }
    }
}

fn api_key_problems(header: &str, key: &str, out: &mut Vec<(&'static str, String)>) {
    if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
        out.push(("auth", format!("`{header}` is not a header name")));
    }
    if key.trim().is_empty() {
        out.push(("auth", "`auth.key` is empty".into()));
    }
}

/// Whether `text` compiles as a minijinja template.
fn check_template(text: &str) -> Result<(), String> {
    let mut env = minijinja::Environment::new();
    env.add_template("t", text)
        .map(|_| ())
        .map_err(|e| format!("not a template: {e}"))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn errors(keys: &str) -> String {
        let text = format!(
            "[journal]\npath = \"j.db\"\n[[endpoint]]\nname = \"api\"\ntype = \"rest\"\n{keys}\n"
        );
        match Config::parse(&text, "t.toml", |_| None) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const PATH: &str = "[[endpoint.paths]]\npath = \"/fhir\"\n";

    #[test]
    fn a_listener_serves_https_unless_plain_http_is_asked_for_on_loopback() {
        let e = errors(&format!("listen = \"0.0.0.0:8081\"\n{PATH}"));
        assert!(e.contains("serves HTTPS"), "{e}");
        let e = errors(&format!(
            "listen = \"0.0.0.0:8081\"\nplain_http = true\n{PATH}"
        ));
        assert!(e.contains("loopback address only"), "{e}");
        assert_eq!(
            errors(&format!(
                "listen = \"127.0.0.1:8081\"\nplain_http = true\n{PATH}"
            )),
            ""
        );
        assert_eq!(
            errors(&format!(
                "listen = \"[::]:8081\"\ntls = {{ cert = \"c.pem\", key = \"k.pem\" }}\n{PATH}"
            )),
            ""
        );
    }

    #[test]
    fn settings_that_cannot_work_are_refused_at_their_key() {
        let listener = "listen = \"127.0.0.1:8081\"\nplain_http = true\n";
        for (keys, expected) in [
            (listener.to_string(), "at least one `[[endpoint.paths]]`"),
            (format!("{listener}[[endpoint.paths]]\npath = \"fhir\"\n"), "not a path"),
            (format!("{listener}{PATH}{PATH}"), "twice"),
            (format!("{listener}rate_limit = {{ per_second = 0 }}\n{PATH}"), "`per_second` above zero"),
            (format!("{listener}{PATH}[endpoint.auth]\ntype = \"oauth2\"\ntoken_url = \"https://x\"\nclient_id = \"a\"\nclient_secret = \"b\"\n"), "a listener checks `bearer`"),
            (format!("{listener}{PATH}[endpoint.auth]\ntype = \"bearer\"\n"), "exactly one of `jwks_file`, `jwks_url` and `introspection_url`"),
            (format!("{listener}{PATH}[endpoint.auth]\ntype = \"bearer\"\njwks_file = \"j\"\nintrospection_url = \"https://idp/introspect\"\nclient_id = \"a\"\nclient_secret = \"b\"\n"), "exactly one of"),
            (format!("{listener}{PATH}[endpoint.auth]\ntype = \"bearer\"\nintrospection_url = \"https://idp/introspect\"\n"), "needs the listener's `client_id` and `client_secret`"),
            (format!("{listener}{PATH}[endpoint.auth]\ntype = \"bearer\"\nintrospection_url = \"idp/introspect\"\nclient_id = \"a\"\nclient_secret = \"b\"\n"), "`introspection_url` must be an http:// or https:// URL"),
            (format!("{listener}{PATH}[endpoint.auth]\ntype = \"bearer\"\njwks_file = \"j\"\nclient_id = \"a\"\n"), "a JWKS needs none"),
            (format!("{listener}{PATH}[endpoint.auth]\ntype = \"client-certificate\"\n"), "require_client_cert = true"),
            (format!("{listener}{PATH}[endpoint.auth]\ntype = \"api-key\"\nkey = \" \"\n"), "`auth.key` is empty"),
            (format!("{listener}body = \"x\"\n{PATH}"), "a sender's"),
            ("url = \"https://a\"\nlisten = \"127.0.0.1:1\"".into(), "not both"),
            ("plain_http = true".into(), "needs `listen`"),
            ("url = \"ftp://a\"".into(), "http:// or https://"),
            ("url = \"https://a/{{ msg.id\"".into(), "not a template"),
            ("url = \"https://a\"\ncapture = [\"id\"]".into(), "not a JSON pointer"),
            ("url = \"https://a\"\n[endpoint.headers]\n\"bad header\" = \"x\"".into(), "not a header name"),
            ("url = \"https://a\"\n[endpoint.auth]\ntype = \"bearer\"\njwks_file = \"j\"".into(), "a sender uses `oauth2`"),
            (format!("url = \"https://a\"\n{PATH}"), "a listener's"),
        ] {
            let e = errors(&keys);
            assert!(e.contains(expected), "{keys}: {e}");
        }
    }

    #[test]
    fn a_sender_presents_its_auth_as_the_fhir_sink_would() {
        let text = "[journal]\npath = \"j.db\"\n[[endpoint]]\nname = \"api\"\ntype = \"rest\"\nurl = \"https://a\"\n[endpoint.auth]\ntype = \"client-certificate\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n";
        let c = Config::parse(text, "t.toml", |_| None).unwrap();
        let crate::config::EndpointKind::Rest(r) = &c.endpoints[0].kind else {
            unreachable!()
        };
        assert!(matches!(
            r.sender_auth(),
            crate::config::FhirAuth::ClientCertificate { .. }
        ));
        assert_eq!(c.endpoints[0].direction, crate::config::Direction::Outbound);
    }
}
