//! Rotating the hub's client certificate without a shell: the FHIR
//! destination `hub` presents a client certificate the hub (the
//! Medplum-based FHIR server in `tests/fhir-server`, mutual TLS with a test
//! CA made by `openssl`) does not accept, so a lab result waits in the
//! queue; an administrator uploads the right certificate and key from the
//! endpoint form (curl posting the multipart form as a browser does), and
//! the waiting result reaches the hub over a TLS connection made with the
//! uploaded certificate. A key of another certificate is refused first,
//! with its reason, and changes nothing.

use ecko_tests::fhir::{FhirServer, TestPki};
use ecko_tests::{eventually, free_port, mllp_ack_code, Gateway};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const PASSWORD: &str = "a long enough pass";

fn oru(seq: usize) -> String {
    format!(
        "MSH|^~\\&|XN-1000|HEMA|LIS|HOSP|20260314093015+0100||ORU^R01^ORU_R01|C{seq:06}|P|2.5.1\r\
PID|1||P{seq:03}^^^HOSP^MR||Doe^John||19650412|M\r\
OBR|1|ORD{seq:06}^LIS|F{seq:06}^XN|58410-2^CBC panel^LN|||20260314090000+0100|||||||||||||||20260314093000+0100||HM|F\r\
OBX|1|NM|777-3^PLT^LN||{plt}|10*3/uL^10*3/uL^UCUM|150-400|N|||F\r",
        plt = 150 + seq
    )
}

fn config(
    d: &Path,
    hub: &FhirServer,
    pki: &TestPki,
    old: &TestPki,
    mllp: u16,
    admin: u16,
) -> PathBuf {
    let path = d.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            r#"[journal]
path = "{d}/journal.db"

[[endpoint]]
name = "lab"
type = "mllp"
listen = "127.0.0.1:{mllp}"

# The central hub; its client certificate is rotated from the page.
[[endpoint]]
name = "hub"
type = "fhir"
url = "{base}"
ca_file = "{ca}"
timeout = "10s"
[endpoint.auth]
type = "client-certificate"
cert = "{old_cert}"
key = "{old_key}"
[endpoint.retry]
initial = "200ms"
max = "1s"

[[route]]
name = "results"
from = ["lab"]
transform = "hl7v2-fhir"
to = ["hub"]

[admin]
listen = "127.0.0.1:{admin}"
"#,
            d = d.display(),
            base = hub.base,
            ca = pki.ca.display(),
            old_cert = old.client_cert.display(),
            old_key = old.client_key.display(),
        ),
    )
    .unwrap();
    path
}

fn user_add(config: &Path) {
    let mut child = Command::new(ecko_tests::gateway_binary())
        .args(["user", "add", "--config"])
        .arg(config)
        .args(["--role", "admin", "ada"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// curl against the admin page with a cookie jar: (HTTP status, body).
fn page(jar: &Path, args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "30", "-c"])
        .arg(jar)
        .arg("-b")
        .arg(jar)
        .args(args)
        .args(["-w", "\n%{http_code}"])
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// How many Observations the hub has, read with the accepted identity.
fn observations(hub: &FhirServer, pki: &TestPki) -> u64 {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "--cacert"])
        .arg(&pki.ca)
        .arg("--cert")
        .arg(&pki.client_cert)
        .arg("--key")
        .arg(&pki.client_key)
        .arg(format!("{}/Observation?_summary=count", hub.base))
        .output()
        .unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["total"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_client_certificate_uploaded_from_the_endpoint_form_is_the_one_the_hub_then_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = TestPki::create(&d.join("pki"));
    // A client certificate of another CA: the hub refuses it.
    let old = TestPki::create(&d.join("old"));
    let hub = FhirServer::start(
        0,
        &[
            ("FHIR_TLS_CERT", pki.server_cert.display().to_string()),
            ("FHIR_TLS_KEY", pki.server_key.display().to_string()),
            ("FHIR_TLS_CA", pki.ca.display().to_string()),
            ("FHIR_REQUIRE_CLIENT_CERT", "1".to_string()),
        ],
    );
    let (mllp, admin) = (free_port(), free_port());
    let config = config(d, &hub, &pki, &old, mllp, admin);
    user_add(&config);
    let log = d.join("gateway.log");
    let mut gw = Gateway::start(&config, &log, &[]);
    gw.wait_for_log("admin page listening", 0, Duration::from_secs(10));

    assert_eq!(mllp_ack_code(mllp, oru(1).as_bytes()), "AA");
    // Attempts fail while the old certificate is presented.
    assert!(
        eventually(Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .any(|l| l.contains("endpoint=hub") && l.contains("delivery failed; will retry"))
        }),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(observations(&hub, &pki), 0);

    let base = format!("https://127.0.0.1:{admin}");
    let jar = d.join("cookies");
    let (status, _) = page(
        &jar,
        &["-d", "name=ada", "-d", &format!("password={PASSWORD}")],
        &format!("{base}/login"),
    );
    assert_eq!(status, 303);
    let (status, form) = page(&jar, &[], &format!("{base}/endpoints/hub/edit"));
    assert_eq!(status, 200, "{form}");
    let upload_form = &form[form
        .find("id=\"certificate-upload\"")
        .expect("the upload form")..];
    let marker = "name=\"csrf\" value=\"";
    let at = upload_form.find(marker).unwrap() + marker.len();
    let csrf = &upload_form[at..at + 64];
    let upload = |cert: &Path, key: &Path| {
        page(
            &jar,
            &[
                "-F",
                &format!("csrf={csrf}"),
                "-F",
                &format!("auth.cert=@{}", cert.display()),
                "-F",
                &format!("auth.key=@{}", key.display()),
            ],
            &format!("{base}/endpoints/hub/certificates"),
        )
    };
    let before = std::fs::read_to_string(&config).unwrap();

    // The right certificate with another's key: refused, nothing changed.
    let (status, body) = upload(&pki.client_cert, &old.client_key);
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("does not belong to the certificate"),
        "{body}"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);

    let (status, body) = upload(&pki.client_cert, &pki.client_key);
    assert_eq!(status, 303, "{body}");
    let after = std::fs::read_to_string(&config).unwrap();
    let stored = d.join("certificates");
    let names = ecko_tests::file_names(&stored);
    assert_eq!(names.len(), 2, "{names:?}");
    for name in &names {
        let path = stored.join(name);
        assert!(after.contains(&path.display().to_string()), "{after}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    assert!(!after.contains(&old.client_cert.display().to_string()));
    assert!(after.contains("# The central hub; its client certificate is rotated from the page."));

    // The queued result now reaches the hub, and a new one follows it.
    assert!(
        eventually(Duration::from_secs(60), || observations(&hub, &pki) >= 1),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(mllp_ack_code(mllp, oru(2).as_bytes()), "AA");
    assert!(eventually(Duration::from_secs(60), || observations(
        &hub, &pki
    ) >= 2));
    let (_, endpoint) = page(&jar, &[], &format!("{base}/endpoints/hub"));
    // The test CA's certificates last two days: shown as expiring soon.
    let shown = &endpoint[endpoint
        .find("data-setting=\"auth.cert\"")
        .expect("the certificate row")..];
    assert!(
        shown[..shown.find("</tr>").unwrap()].contains("renew it"),
        "{shown}"
    );
    let (_, audit) = page(&jar, &[], &format!("{base}/audit"));
    assert!(audit.contains("certificate.upload"), "{audit}");
    gw.terminate();
}
