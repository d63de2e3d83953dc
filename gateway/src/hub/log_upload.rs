//! `log.bundle`: a log bundle (see `control::log_bundle`) sent where the
//! hub's command says, with HTTPS `PUT`.
//!
//! The bundle leaves the site, so: HTTPS only, to a URL under one of
//! `[hub.commands] upload_to` when that list is written; the server is
//! trusted as the broker is (`[hub] ca_file`, or the system's store) and
//! the device's certificate, when it has one, is presented, so the
//! receiving end knows which gateway sent it. The request carries the
//! bundle's SHA-256 (`X-Ecko-Sha256`) and the command id, site and device
//! (`X-Ecko-Command`, `X-Ecko-Site`, `X-Ecko-Device`); any 2xx answer is
//! success, anything else the command's failure with the status and the
//! start of the answer.

use super::reply::{CommandError, ErrorCode};
use crate::config::{CommandPolicy, HubConfig};
use crate::tls::{https_client_config, HttpsTrust};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long one upload may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// Where a bundle may go: `Ok` with the URL when the policy allows it.
pub fn destination(policy: &CommandPolicy, url: &str) -> Result<reqwest::Url, CommandError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| CommandError::new(ErrorCode::Invalid, format!("`url`: {e}")))?;
    if parsed.scheme() != "https" {
        return Err(CommandError::new(
            ErrorCode::Invalid,
            "`url`: a log bundle is sent over HTTPS only",
        ));
    }
    if !policy.upload_to.is_empty() && !policy.upload_to.iter().any(|p| under(&parsed, p)) {
        return Err(CommandError::new(
            ErrorCode::Forbidden,
            format!(
                "`url` is not under `upload_to` of this gateway's command policy ({})",
                policy.upload_to.join(", ")
            ),
        ));
    }
    Ok(parsed)
}

/// Whether `url` is `prefix` or below it: same scheme, host and port, and
/// a path that continues the prefix's at a `/` (so `https://a.example`
/// does not admit `https://a.example.evil/`).
fn under(url: &reqwest::Url, prefix: &str) -> bool {
    let Ok(prefix) = reqwest::Url::parse(prefix) else {
        return false;
    };
    let (path, base) = (url.path(), prefix.path());
    url.scheme() == prefix.scheme()
        && url.host_str() == prefix.host_str()
        && url.port_or_known_default() == prefix.port_or_known_default()
        && path.starts_with(base)
        && (base.ends_with('/') || path.len() == base.len() || path[base.len()..].starts_with('/'))
}

/// What the receiving end was told about the bundle.
pub struct Receipt {
    pub status: u16,
    pub sha256: String,
}

/// Sends `bundle` to `url` for command `id`.
pub async fn put(
    config: &HubConfig,
    url: reqwest::Url,
    id: &str,
    bundle: Vec<u8>,
) -> Result<Receipt, CommandError> {
    let failed = |m: String| CommandError::new(ErrorCode::Failed, m);
    let http = client(config, TIMEOUT)?;
    let sha256 = hex::encode(Sha256::digest(&bundle));
    let answer = http
        .put(url.clone())
        .header("Content-Type", "application/gzip")
        .header("X-Ecko-Sha256", &sha256)
        .header("X-Ecko-Command", id)
        .header("X-Ecko-Site", &config.site)
        .header("X-Ecko-Device", &config.device)
        .body(bundle)
        .send()
        .await
        .map_err(|e| {
            failed(format!(
                "cannot upload to {}: {}",
                host(&url),
                crate::with_causes(&e)
            ))
        })?;
    let status = answer.status();
    if !status.is_success() {
        let text = answer.text().await.unwrap_or_default();
        let start: String = text.chars().take(200).collect();
        return Err(failed(format!(
            "{} answered the upload with {status}: {start}",
            host(&url)
        )));
    }
    Ok(Receipt {
        status: status.as_u16(),
        sha256,
    })
}

/// The uplink's HTTP client for what a command sends or fetches: a server
/// trusted as the broker is (`[hub] ca_file`, or the system's store), the
/// device's certificate presented when it has one.
pub(super) fn client(
    config: &HubConfig,
    timeout: Duration,
) -> Result<reqwest::Client, CommandError> {
    let failed = |m: String| CommandError::new(ErrorCode::Failed, m);
    let trust = HttpsTrust {
        ca_file: config.ca_file.clone(),
        pinned_cert: None,
        identity: config.cert.clone().zip(config.key.clone()),
    };
    let tls = https_client_config(&trust).map_err(|e| failed(e.to_string()))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("ecko-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| failed(format!("HTTPS client: {e}")))
}

fn host(url: &reqwest::Url) -> String {
    url.host_str().unwrap_or("the server").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_goes_over_https_only_and_under_the_policy_s_prefixes() {
        let mut policy = CommandPolicy::default();
        assert!(destination(&policy, "https://support.example/up/1").is_ok());
        assert_eq!(
            destination(&policy, "http://support.example/up/1")
                .unwrap_err()
                .code,
            ErrorCode::Invalid
        );
        assert_eq!(
            destination(&policy, "not a url").unwrap_err().code,
            ErrorCode::Invalid
        );
        policy.upload_to = vec![
            "https://support.example/up/".into(),
            "https://b.example".into(),
        ];
        assert!(destination(&policy, "https://support.example/up/1").is_ok());
        assert!(destination(&policy, "https://b.example/any/where").is_ok());
        for elsewhere in [
            "https://b.example.evil/up",
            "https://support.example/upper",
            "https://support.example:8443/up/1",
        ] {
            assert_eq!(
                destination(&policy, elsewhere).unwrap_err().code,
                ErrorCode::Forbidden,
                "{elsewhere}"
            );
        }
        assert_eq!(
            destination(&policy, "https://elsewhere.example/up/1")
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
        );
    }
}
