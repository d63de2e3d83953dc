//! The admin page's listener: HTTPS with the device's own certificate or
//! the operator's, plain HTTP only where allowed, HSTS over HTTPS. Each test
//! starts the real server on a free loopback port and speaks to it with a
//! rustls client.

use super::{start, AdminError, AdminServer};
use crate::config::Config;
use crate::health::Health;
use crate::journal::{Journal, JournalOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn config(dir: &Path, admin: &str) -> Arc<Config> {
    let text = format!(
        "[journal]\npath = \"{}/journal.db\"\n[admin]\n{admin}\n",
        dir.display()
    );
    Arc::new(Config::parse(&text, "t.toml", |_| None).unwrap())
}

fn run(
    config: &Arc<Config>,
    journal: &Journal,
) -> Result<(AdminServer, CancellationToken), AdminError> {
    let stop = CancellationToken::new();
    start(config.clone(), journal.clone(), Health::new(), stop.clone()).map(|s| (s, stop))
}

/// GET /healthz over TLS, trusting only `root`, naming the server `name`;
/// returns the response head.
async fn get_over_tls(server: &AdminServer, root: &Path, name: &str) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.addr.port()))
        .await
        .unwrap();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).to_ascii_lowercase())
}

async fn get_plain(server: &AdminServer) -> String {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.addr.port()))
        .await
        .unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

#[tokio::test]
async fn a_device_certificate_is_made_on_first_start_kept_private_and_reused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path(), "listen = \"127.0.0.1:0\"");
    let journal = Journal::open(JournalOptions::new(dir.path().join("journal.db"))).unwrap();
    let (server, stop) = run(&c, &journal).unwrap();
    assert!(server.tls);
    let (cert, key) = crate::tls::certificates::device_paths(dir.path());
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key is readable by the gateway only");
    let first = std::fs::read(&cert).unwrap();
    // The certificate names the device as browsers reach it.
    for name in ["localhost", "127.0.0.1"] {
        let head = get_over_tls(&server, &cert, name).await.unwrap();
        assert!(head.starts_with("http/1.1 200"), "{name}: {head}");
        assert!(
            head.contains("strict-transport-security: max-age=31536000"),
            "{head}"
        );
    }
    assert!(get_over_tls(&server, &cert, "other.example").await.is_err());
    stop.cancel();
    server.task.await.unwrap();

    let (server, stop) = run(&c, &journal).unwrap();
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        first,
        "the same certificate after a restart"
    );
    assert!(get_over_tls(&server, &cert, "localhost").await.is_ok());
    stop.cancel();
    server.task.await.unwrap();
    journal.close().await;
}

#[test]
fn the_device_certificate_names_the_host_and_its_addresses() {
    let names = crate::tls::certificates::device_names();
    assert_eq!(names[0], "localhost");
    assert!(names.contains(&"127.0.0.1".to_string()));
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && !host.contains('_') {
            assert!(names.iter().any(|n| n == host), "{names:?}");
        }
    }
    for i in nix::ifaddrs::getifaddrs().unwrap() {
        if let Some(v4) = i.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            assert!(
                names.contains(&v4.ip().to_string()),
                "{} missing: {names:?}",
                v4.ip()
            );
        }
    }
}

#[tokio::test]
async fn an_operator_certificate_replaces_the_device_one() {
    let dir = tempfile::tempdir().unwrap();
    let issued =
        rcgen::generate_simple_self_signed(vec!["gw.hospital.example".to_string()]).unwrap();
    let (cert, key) = (
        dir.path().join("op-cert.pem"),
        dir.path().join("op-key.pem"),
    );
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
    let c = config(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let journal = Journal::open(JournalOptions::new(dir.path().join("journal.db"))).unwrap();
    let (server, stop) = run(&c, &journal).unwrap();
    let head = get_over_tls(&server, &cert, "gw.hospital.example")
        .await
        .unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        !crate::tls::certificates::device_paths(dir.path())
            .0
            .exists(),
        "no device certificate made"
    );
    stop.cancel();
    server.task.await.unwrap();
    journal.close().await;
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(
        dir.path(),
        "listen = \"127.0.0.1:0\"\ncert = \"/etc/some-cert.pem\"",
    );
    let journal = Journal::open(JournalOptions::new(dir.path().join("journal.db"))).unwrap();
    match run(&c, &journal) {
        Err(AdminError::Tls(why)) => assert!(
            why.contains("`cert` and `key` must be given together"),
            "{why}"
        ),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("started without a key"),
    }
    journal.close().await;
}

#[tokio::test]
async fn plain_http_is_loopback_only_unless_explicitly_allowed_and_has_no_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(JournalOptions::new(dir.path().join("journal.db"))).unwrap();
    let c = config(dir.path(), "tls = false\nlisten = \"0.0.0.0:0\"");
    match run(&c, &journal) {
        Err(AdminError::Listen { reason, .. }) => {
            assert!(reason.contains("plain_http_on_network"), "{reason}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("plain HTTP served on the network"),
    }
    let c = config(
        dir.path(),
        "tls = false\nlisten = \"0.0.0.0:0\"\nplain_http_on_network = true",
    );
    let (server, stop) = run(&c, &journal).unwrap();
    assert!(!server.tls);
    let head = get_plain(&server).await;
    assert!(
        head.starts_with("http/1.1 200") && !head.contains("strict-transport-security"),
        "{head}"
    );
    stop.cancel();
    server.task.await.unwrap();
    // Without a listen address: loopback for plain HTTP, every interface
    // for HTTPS.
    assert_eq!(
        config(dir.path(), "tls = false").admin.listen_address(),
        "127.0.0.1:8443"
    );
    assert_eq!(
        config(dir.path(), "").admin.listen_address(),
        "0.0.0.0:8443"
    );
    journal.close().await;
}
