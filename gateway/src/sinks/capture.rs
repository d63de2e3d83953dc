//! What a destination in sandbox mode would have sent, kept in the journal
//! and shown by the message viewer: for HTTP, the method, the URL, the
//! headers with every secret masked, and the body; for other protocols the
//! bytes. The body is kept up to [`KEEP_BODY`]; text as text, anything else
//! as base64.

use base64::Engine;
use serde::Serialize;

/// Body bytes kept of one capture.
pub const KEEP_BODY: usize = 64 * 1024;

/// What stands in for a secret.
pub const MASK: &str = "********";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capture {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// `utf-8` or `base64`.
    pub body_encoding: &'static str,
    pub body: String,
    /// The whole body's length; `body` holds at most [`KEEP_BODY`] of it.
    pub body_bytes: usize,
    pub truncated: bool,
}

impl Capture {
    /// Bytes that would be sent as they are.
    pub fn bytes(body: &[u8]) -> Capture {
        let kept = &body[..body.len().min(KEEP_BODY)];
        let (body_encoding, text) = match std::str::from_utf8(kept) {
            Ok(t) => ("utf-8", t.to_string()),
            // Cut inside a character: keep the text up to it.
            Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => (
                "utf-8",
                String::from_utf8_lossy(&kept[..e.valid_up_to()]).into_owned(),
            ),
            Err(_) => (
                "base64",
                base64::engine::general_purpose::STANDARD.encode(kept),
            ),
        };
        Capture {
            method: None,
            url: None,
            headers: Vec::new(),
            body_encoding,
            body: text,
            body_bytes: body.len(),
            truncated: body.len() > KEEP_BODY,
        }
    }

    /// An HTTP request; `headers` are masked here.
    pub fn http(method: &str, url: &str, headers: Vec<(String, String)>, body: &[u8]) -> Capture {
        Capture {
            method: Some(method.to_string()),
            url: Some(url.to_string()),
            headers: headers
                .into_iter()
                .map(|(name, value)| {
                    let value = if is_secret(&name) {
                        MASK.to_string()
                    } else {
                        value
                    };
                    (name, value)
                })
                .collect(),
            ..Capture::bytes(body)
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Whether a header carries a credential: masked whatever its value.
pub fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "proxy-authorization"
        || n == "cookie"
        || ["key", "token", "secret", "password", "auth", "signature"]
            .iter()
            .any(|w| n.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_headers_are_masked_and_other_headers_kept() {
        let c = Capture::http(
            "POST",
            "https://x/fhir",
            vec![
                ("Authorization".into(), "Bearer abc".into()),
                ("X-API-Key".into(), "s3cret".into()),
                ("X-Claim-Token".into(), "t".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            b"{}",
        );
        let json = c.to_json();
        assert!(!json.contains("abc") && !json.contains("s3cret"), "{json}");
        assert_eq!(c.headers[0].1, MASK);
        assert_eq!(c.headers[2].1, MASK);
        assert_eq!(c.headers[3].1, "application/json");
        assert_eq!(c.body, "{}");
    }

    #[test]
    fn binary_bodies_are_kept_as_base64_and_long_ones_cut() {
        let c = Capture::bytes(&[0xff, 0x00, 0x81]);
        assert_eq!((c.body_encoding, c.body.as_str()), ("base64", "/wCB"));
        let long = vec![b'a'; KEEP_BODY + 10];
        let c = Capture::bytes(&long);
        assert!(c.truncated);
        assert_eq!((c.body.len(), c.body_bytes), (KEEP_BODY, KEEP_BODY + 10));
    }
}
