//! `ecko-image install URL`: the bundle fetched over HTTPS (plain HTTP only
//! when explicitly allowed: the signature is what is trusted, but a box
//! should not be told to fetch in clear text by accident) and received into
//! a file through [`crate::receive`] under a size cap, before the same
//! verification and install as a bundle file. Redirects are followed, a
//! few, never from HTTPS down to HTTP unless HTTP is allowed.
//!
//! TLS is rustls with the ring provider: the server verified against a CA
//! file when given, the system's trust store otherwise.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::install::{Phase, Progress};
use crate::receive::{self, ReceiveError, Receiving};

/// How long the whole download may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(1800);
/// How many redirects are followed.
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("`{0}` is not a URL: {1}")]
    Url(String, String),
    #[error("{0}: a bundle is fetched over https:// (http:// only with --allow-http)")]
    Scheme(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot download from {host}: {reason}")]
    Request { host: String, reason: String },
    #[error("{host} answered the download with {status}")]
    Status { host: String, status: String },
    #[error(transparent)]
    Receive(#[from] ReceiveError),
}

/// Whether `arg` names a URL rather than a bundle file.
pub fn is_url(arg: &str) -> bool {
    arg.starts_with("https://") || arg.starts_with("http://")
}

pub struct Fetch<'a> {
    pub url: &'a str,
    pub allow_http: bool,
    /// The CA the server's certificate must chain to; the system's trust
    /// store when `None`.
    pub ca_file: Option<&'a Path>,
    pub max_size: u64,
}

/// Downloads `f.url` into `dest` (through `dest.part`); its length.
pub fn fetch(f: &Fetch, dest: &Path, progress: &mut dyn Progress) -> Result<u64, DownloadError> {
    let url =
        reqwest::Url::parse(f.url).map_err(|e| DownloadError::Url(f.url.into(), e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if f.allow_http => {}
        _ => return Err(DownloadError::Scheme(f.url.into())),
    }
    let host = url.host_str().unwrap_or("the server").to_string();
    let allow_http = f.allow_http;
    let redirects = reqwest::redirect::Policy::custom(move |a| {
        if a.previous().len() >= MAX_REDIRECTS {
            a.error("too many redirects")
        } else if a.url().scheme() != "https" && !allow_http {
            a.error("redirected away from https://")
        } else {
            a.follow()
        }
    });
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(client_config(f.ca_file)?)
        .redirect(redirects)
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("ecko-image/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| DownloadError::Tls(e.to_string()))?;
    let request_err = |e: reqwest::Error| DownloadError::Request {
        host: host.clone(),
        reason: receive::with_causes(&e),
    };
    let answer = client.get(url.clone()).send().map_err(request_err)?;
    if !answer.status().is_success() {
        return Err(DownloadError::Status {
            host,
            status: answer.status().to_string(),
        });
    }
    let declared = answer.content_length();
    receive::check_declared(declared, f.max_size)?;
    let mut into = Receiving::create(dest, f.max_size)?;
    progress.start(Phase::Download, declared.unwrap_or(0));
    into.read_from(answer, &mut |n| progress.advance(n))?;
    progress.finish();
    Ok(into.finish()?)
}

fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, DownloadError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let tls = |e: String| DownloadError::Tls(format!("{}: {e}", path.display()));
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| tls(e.to_string()))? {
                roots
                    .add(cert.map_err(|e| tls(e.to_string()))?)
                    .map_err(|e| tls(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(tls("no certificate in it".into()));
            }
        }
        None => {
            // Certificates of the store that cannot be read are skipped:
            // the rest still verify the server.
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DownloadError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
