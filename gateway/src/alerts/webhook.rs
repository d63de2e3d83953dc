//! The webhook channel: the notice as JSON, POSTed with a signature.
//!
//! The receiver checks two headers:
//!
//! - `X-Ecko-Timestamp`: Unix seconds when the request was signed;
//! - `X-Ecko-Signature`: `sha256=` and the lower-case hex HMAC-SHA256, keyed
//!   by the channel's `secret`, of the timestamp, a `.`, and the body bytes.
//!
//! Signing the timestamp with the body lets a receiver refuse a replayed
//! request: it recomputes the HMAC, compares in constant time, and refuses a
//! timestamp more than a few minutes from its own clock. Notices carry an
//! `id` for the duplicates a retry can cause.

use super::notice::Notice;
use crate::config::WebhookChannel;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "X-Ecko-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Ecko-Signature";

/// `sha256=<hex>` of `{timestamp}.{body}` keyed by `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One webhook, with its HTTP client made once.
pub struct Webhook {
    http: reqwest::Client,
    url: String,
    secret: Vec<u8>,
}

impl Webhook {
    pub fn new(config: &WebhookChannel) -> Result<Webhook, String> {
        let trust = crate::tls::HttpsTrust {
            ca_file: config.ca_file.as_deref().map(crate::config::resolve),
            ..Default::default()
        };
        let tls = crate::tls::https_client_config(&trust).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(config.timeout.0)
            .connect_timeout(config.timeout.0.min(std::time::Duration::from_secs(10)))
            .user_agent(concat!("ecko-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {}", crate::with_causes(&e)))?;
        Ok(Webhook {
            http,
            url: config.url.clone(),
            secret: config.secret.as_bytes().to_vec(),
        })
    }

    /// POSTs `notice`; any 2xx answer is success.
    pub async fn send(&self, notice: &Notice, now_ms: i64) -> Result<(), String> {
        let body = serde_json::to_vec(notice).map_err(|e| e.to_string())?;
        let timestamp = now_ms.div_euclid(1000);
        let answer = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature(&self.secret, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| crate::with_causes(&e))?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            let text = answer.text().await.unwrap_or_default();
            let start: String = text.chars().take(200).collect();
            Err(format!("answered {status}: {start}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_rfc_4231_hmac_of_timestamp_dot_body() {
        // What is signed: the timestamp, a dot and the body, as one string.
        let one_piece = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
            mac.update(b"12.what do ya want for nothing?");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(
            signature(b"Jefe", 12, b"what do ya want for nothing?"),
            format!("sha256={one_piece}")
        );
        // RFC 4231 test case 2 itself, to pin the hash.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            signature(b"Jefe", 13, b"what do ya want for nothing?"),
            signature(b"Jefe", 12, b"what do ya want for nothing?"),
            "another timestamp, another signature"
        );
    }
}
