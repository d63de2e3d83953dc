//! `firmware.install`: a bundle downloaded from the URL the command gives
//! and installed through `update::install`, the function `ecko-image
//! install` and the admin page's Update page run.
//!
//! The bundle's signature is what makes it trusted, not the transport:
//! `http://` is accepted as well as `https://` (the server then verified as
//! the broker is, `[hub] ca_file` or the system's store, with the device's
//! certificate presented). The download is streamed to the data partition
//! and cut off at `[update] max_bundle_size` (a `Content-Length` above it
//! is refused before a byte is read); a bundle refused by verification
//! never touches a slot and is deleted.

use super::reply::{CommandError, ErrorCode};
use crate::config::HubConfig;
use crate::control::Actor;
use crate::journal::Journal;
use crate::update::install::{self, UpdateError};
use crate::update::staged;
use serde_json::{json, Value};
use std::time::Duration;

/// How long the download may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(1800);

/// The command's `url`, checked before anything is fetched: a URL, over
/// http:// or https://.
pub fn bundle_url(url: &str) -> Result<reqwest::Url, CommandError> {
    let url = reqwest::Url::parse(url)
        .map_err(|e| CommandError::new(ErrorCode::Invalid, format!("`url`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(CommandError::new(
            ErrorCode::Invalid,
            "`url`: a bundle is fetched over http:// or https://",
        ));
    }
    Ok(url)
}

pub async fn install_from(
    journal: &Journal,
    uplink: &HubConfig,
    update: Option<&crate::config::UpdateConfig>,
    actor: &Actor,
    url: &str,
    allow_same_security_downgrade: bool,
) -> Result<Value, CommandError> {
    let failed = |m: String| CommandError::new(ErrorCode::Failed, m);
    let Some(update) = update else {
        return Err(CommandError::new(
            ErrorCode::NotSupported,
            "firmware updates are not managed by this gateway (no [update] section)",
        ));
    };
    let url = bundle_url(url)?;
    if install::current().busy() {
        return Err(failed("another install is running".into()));
    }
    let http = super::log_upload::client(uplink, TIMEOUT)?;
    let host = url.host_str().unwrap_or("the server").to_string();
    let answer = http.get(url.clone()).send().await.map_err(|e| {
        failed(format!(
            "cannot download from {host}: {}",
            crate::with_causes(&e)
        ))
    })?;
    if !answer.status().is_success() {
        return Err(failed(format!(
            "{host} answered the download with {}",
            answer.status()
        )));
    }
    let cap = update.max_bundle_size.0;
    if answer.content_length().is_some_and(|n| n > cap) {
        return Err(failed(format!(
            "the bundle is larger than the {cap} bytes allowed (`[update] max_bundle_size`)"
        )));
    }
    let dest = install::staging_dir(journal)
        .join(format!("download-{}.bundle", uuid::Uuid::new_v4().simple()));
    staged::receive(&dest, answer.bytes_stream(), cap)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let done =
        install::install_bundle(journal, update, actor, &dest, allow_same_security_downgrade).await;
    let _ = tokio::fs::remove_file(&dest).await;
    match done {
        Ok(o) => Ok(json!({
            "slot": o.slot,
            "version": o.manifest.version,
            "security_version": o.manifest.security_version,
            "hardware": o.manifest.hardware,
            "payload_len": o.manifest.payload_len,
            "boots_next": true,
        })),
        Err(UpdateError::Forbidden) => Err(CommandError::new(
            ErrorCode::Forbidden,
            "installing firmware needs the admin role: the command policy's `role`",
        )),
        Err(e) => Err(failed(format!("refused: {e}"))),
    }
}
