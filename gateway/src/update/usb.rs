//! A bundle on a USB stick: the `*.bundle` files directly in `[update]
//! usb_path` (where the stick is mounted) are offered; nothing on the
//! stick is installed until an admin verifies and confirms it on the Update
//! page, as with an upload. Names are taken from the directory listing
//! only, so a form cannot name a file elsewhere.

use crate::config::UpdateConfig;
use std::path::PathBuf;

/// The bundles offered now, by file name; none without a stick.
pub async fn offered(c: &UpdateConfig) -> Vec<String> {
    let Some(dir) = c.usb_path.as_ref().map(|p| crate::config::resolve(p)) else {
        return Vec::new();
    };
    tokio::task::spawn_blocking(move || {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(".bundle") && !n.starts_with('.'))
            .collect();
        names.sort();
        names
    })
    .await
    .unwrap_or_default()
}

/// The path of the offered bundle `name`, if it is one.
pub async fn bundle(c: &UpdateConfig, name: &str) -> Option<PathBuf> {
    let dir = crate::config::resolve(c.usb_path.as_ref()?);
    offered(c)
        .await
        .into_iter()
        .find(|n| n == name)
        .map(|n| dir.join(n))
}
