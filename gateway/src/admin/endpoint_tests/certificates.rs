//! The certificate upload of the endpoint form: checked, stored 0600
//! beside the journal, named by the setting, used live by the listener;
//! a bad upload refused with its reason and nothing changed.

use super::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::os::unix::fs::PermissionsExt;

const BOUNDARY: &str = "ecko-test-boundary-7f3a";

/// A file field of an upload: its name and content.
type File<'a> = (&'a str, &'a [u8]);

impl Site {
    /// A `multipart/form-data` post of `files` (field, content) with the
    /// session's CSRF token as its first part.
    async fn upload(&self, uri: &str, b: &Browser, files: &[File<'_>]) -> Reply {
        let mut body = Vec::new();
        let mut part = |name: &str, filename: Option<&str>, content: &[u8]| {
            body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let disposition = match filename {
                Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/x-pem-file"),
                None => format!("form-data; name=\"{name}\""),
            };
            body.extend_from_slice(
                format!("Content-Disposition: {disposition}\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        };
        part("csrf", None, b.csrf.as_bytes());
        for (name, content) in files {
            part(name, Some("upload.pem"), content);
        }
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        self.send(
            Request::post(uri)
                .header(
                    header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .header(header::COOKIE, &b.cookie)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    fn stored(&self) -> Vec<PathBuf> {
        let dir = self.dir.path().join("certificates");
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        out.sort();
        out
    }
}

/// The certificate the listener on `port` presents in a TLS handshake
/// made by a client that trusts `ca`.
async fn presented(port: u16, ca: &std::path::Path) -> CertificateDer<'static> {
    let tls = crate::config::TlsSettings {
        cert: None,
        key: None,
        ca: Some(ca.to_path_buf()),
        require_client_cert: false,
        server_name: None,
    };
    let config = crate::tls::client_config(&tls).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = crate::tls::server_name(&tls, "localhost:1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("a TLS handshake with the uploaded certificate");
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_certificate_and_key_are_stored_0600_named_in_the_file_and_presented_live() {
    let s = site().await;
    let pki = crate::tls::test_pki::create(s.dir.path());
    let a = s.login("ada", "admin").await;
    let form = s.get("/endpoints/lab/edit", &a).await;
    assert!(
        form.body.contains("enctype=\"multipart/form-data\"")
            && form.body.contains("<input type=\"file\" name=\"tls.cert\""),
        "{}",
        form.body
    );
    let cert = std::fs::read(&pki.server_cert).unwrap();
    let key = std::fs::read(&pki.server_key).unwrap();
    let ca = std::fs::read(&pki.ca).unwrap();
    let r = s
        .upload(
            "/endpoints/lab/certificates",
            &a,
            &[("tls.cert", &cert), ("tls.key", &key), ("tls.ca", &ca)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let stored = s.stored();
    assert_eq!(stored.len(), 3, "{stored:?}");
    let text = s.file();
    for (setting, content) in [("tls-cert", &cert), ("tls-key", &key), ("tls-ca", &ca)] {
        let path = stored
            .iter()
            .find(|p| p.to_string_lossy().contains(&format!("lab.{setting}.")))
            .unwrap_or_else(|| panic!("{setting} in {stored:?}"));
        assert_eq!(&std::fs::read(path).unwrap(), content);
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
        assert!(text.contains(&path.display().to_string()), "{text}");
    }
    let dir_mode = std::fs::metadata(s.dir.path().join("certificates"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    // The comment above the endpoint and its other keys are as they were.
    assert!(text.contains("# Lab results arrive here.") && text.contains("max_connections = 8"));
    let uploaded = CertificateDer::from_pem_slice(&cert).unwrap();
    assert_eq!(presented(s.port, &pki.ca).await, uploaded);
    let page = s.get(r.location(), &a).await;
    assert!(page.body.contains("Uploaded tls.cert"), "{}", page.body);
    assert!(
        page.body.contains("id=\"certificates\"") && page.body.contains("valid until"),
        "{}",
        page.body
    );
    let audit = s.audit_actions().await;
    assert!(
        audit.contains(&"ada endpoint.certificates lab".to_string()),
        "{audit:?}"
    );
    assert_eq!(
        audit
            .iter()
            .filter(|a| *a == "ada certificate.upload lab")
            .count(),
        3,
        "{audit:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_upload_is_refused_with_its_reason_beside_its_setting_and_changes_nothing() {
    let s = site().await;
    let pki = crate::tls::test_pki::create(s.dir.path());
    let a = s.login("ada", "admin").await;
    let cert = std::fs::read(&pki.server_cert).unwrap();
    let foreign_key = std::fs::read(&pki.client_key).unwrap();
    let key = std::fs::read(&pki.server_key).unwrap();
    let cases: [(&[File], &str, &str); 4] = [
        (
            &[("tls.cert", &cert), ("tls.key", &foreign_key)],
            "tls.key",
            "does not belong to the certificate",
        ),
        (
            &[("tls.cert", b"not a certificate")],
            "tls.cert",
            "no PEM certificate found",
        ),
        (&[("tls.cert", &key)], "tls.cert", "holds a private key"),
        (&[("tls.ca", &cert)], "tls.ca", "is not a CA certificate"),
    ];
    for (files, setting, reason) in cases {
        let r = s.upload("/endpoints/lab/certificates", &a, files).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{reason}: {}",
            r.body
        );
        let marker = format!("data-upload=\"{setting}\"");
        let at = r.body.find(&marker).unwrap_or_else(|| panic!("{}", r.body));
        let end = r.body[at..].find("</label>").unwrap() + at;
        assert!(
            r.body[at..end].contains(reason),
            "{reason}: {}",
            &r.body[at..end]
        );
        assert_eq!(s.file(), s.original, "{reason}");
        assert!(s.stored().is_empty(), "{reason}: {:?}", s.stored());
    }
    let huge = vec![b'A'; crate::control::certificates::MAX_FILE_SIZE + 1];
    let r = s
        .upload("/endpoints/lab/certificates", &a, &[("tls.cert", &huge)])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(
        r.body.contains("KiB a PEM file may have here"),
        "{}",
        r.body
    );
    // A setting the endpoint does not have, and no file at all.
    let r = s
        .upload(
            "/endpoints/archive/certificates",
            &a,
            &[("tls.cert", &cert)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = s.upload("/endpoints/lab/certificates", &a, &[]).await;
    assert!(r.body.contains("no file was chosen"), "{}", r.body);
    // Only an admin uploads, and only with the session's token.
    let o = s.login("otto", "operator").await;
    let r = s
        .upload("/endpoints/lab/certificates", &o, &[("tls.cert", &cert)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let forged = Browser {
        cookie: a.cookie.clone(),
        csrf: "0".repeat(64),
    };
    let r = s
        .upload(
            "/endpoints/lab/certificates",
            &forged,
            &[("tls.cert", &cert)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(s.file(), s.original);
    assert!(s.stored().is_empty());
    assert!(!s
        .audit_actions()
        .await
        .iter()
        .any(|a| a.contains("certificate")));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_expiring_within_30_days_is_a_warning_on_the_form_and_the_page() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let s = site().await;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".into()]).unwrap();
    // Midnight UTC eleven days on: between 10 and 11 days from now.
    let day = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .checked_add(jiff::Span::new().days(11))
        .unwrap();
    params.not_after =
        rcgen::date_time_ymd(i32::from(day.year()), day.month() as u8, day.day() as u8);
    let cert = params.signed_by(&key, &ca).unwrap();
    let a = s.login("ada", "admin").await;
    let r = s
        .upload(
            "/endpoints/lab/certificates",
            &a,
            &[
                ("tls.cert", cert.pem().as_bytes()),
                ("tls.key", key.serialize_pem().as_bytes()),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = s.get("/endpoints/lab", &a).await;
    assert!(
        page.body.contains("class=\"cert-expiring\"") && page.body.contains("in 10 days: renew it"),
        "{}",
        page.body
    );
    let form = s.get("/endpoints/lab/edit", &a).await;
    assert!(form.body.contains("in 10 days: renew it"), "{}", form.body);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_s_own_certificate_uploaded_on_the_settings_page_is_presented_at_its_next_start(
) {
    let s = site().await;
    let pki = crate::tls::test_pki::create(s.dir.path());
    let a = s.login("ada", "admin").await;
    let page = s.get("/settings", &a).await;
    for form in ["certificate-upload-admin", "certificate-upload-hub"] {
        assert!(
            page.body.contains(&format!("id=\"{form}\"")),
            "{}",
            page.body
        );
    }
    let cert = std::fs::read(&pki.server_cert).unwrap();
    let key = std::fs::read(&pki.server_key).unwrap();
    // The hub's certificate with another's key: refused beside the key.
    let foreign = std::fs::read(&pki.client_key).unwrap();
    let r = s
        .upload(
            "/settings/certificates/hub",
            &a,
            &[("cert", &cert), ("key", &foreign)],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let hub = &r.body[r.body.find("id=\"certificate-upload-hub\"").unwrap()..];
    let at = hub.find("data-upload=\"key\"").unwrap();
    assert!(
        hub[at..].contains("does not belong to the certificate"),
        "{hub}"
    );
    assert_eq!(s.file(), s.original);
    assert!(s.stored().is_empty());
    let r = s
        .upload("/settings/certificates/nowhere", &a, &[("cert", &cert)])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);

    let r = s
        .upload(
            "/settings/certificates/admin",
            &a,
            &[("cert", &cert), ("key", &key)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let text = s.file();
    let stored = s.stored();
    assert_eq!(stored.len(), 2, "{stored:?}");
    for path in &stored {
        assert!(
            path.to_string_lossy().contains("/admin."),
            "{}",
            path.display()
        );
        assert!(text.contains(&path.display().to_string()), "{text}");
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let notice = s.get(r.location(), &a).await;
    assert!(notice.body.contains("Uploaded cert"), "{}", notice.body);
    assert!(s
        .audit_actions()
        .await
        .contains(&"ada settings.certificates admin".to_string()));
    // The page as the next start serves it: with the uploaded certificate.
    let port = free_port();
    let next = text.replace(
        "[admin]",
        &format!("[admin]\nlisten = \"127.0.0.1:{port}\""),
    );
    let config = Config::parse(&next, "next.toml", |_| None).unwrap();
    let server = crate::admin::start(
        std::sync::Arc::new(config),
        s.gw().journal.clone(),
        crate::health::Health::new(),
        CancellationToken::new(),
    )
    .unwrap();
    let uploaded = CertificateDer::from_pem_slice(&cert).unwrap();
    assert_eq!(presented(server.addr.port(), &pki.ca).await, uploaded);
    server.task.abort();
    s.stop().await;
}
