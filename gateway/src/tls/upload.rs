//! A PEM file an operator uploads for a TLS setting, checked before any
//! setting refers to it: pure functions of the file's bytes and the time.
//!
//! What each setting must hold ([`Holds`]):
//! - a certificate: one or more certificates, the one presented first and
//!   each issued by the next (the order rustls sends them in); none
//!   expired; when the last one is a self-signed CA, the chain's
//!   signatures are verified with rustls's own verifier, as a peer would;
//! - a private key: one key rustls can sign with (RSA, ECDSA, Ed25519);
//! - a CA bundle: CA certificates only, each a trust anchor rustls takes;
//! - a pinned certificate: one certificate.
//!
//! A certificate and its key are checked together ([`check_pair`]): the
//! key must be the certificate's (rustls's `keys_match`, the check a
//! handshake would otherwise fail on much later). A file holding a private
//! key where a certificate belongs is refused, so that a key is never
//! stored under a certificate's name.

use super::provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use std::sync::Arc;
use x509_parser::certificate::X509Certificate;

/// What a setting's PEM file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// A certificate chain, the certificate presented first.
    Certificate,
    PrivateKey,
    /// CA certificates a peer is verified against.
    Trust,
    /// The one server certificate accepted.
    Pinned,
}

/// What an accepted file holds, for the page and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The subject of the certificate presented (or of the first CA, or
    /// "private key").
    pub subject: String,
    /// How many certificates the file holds.
    pub certificates: usize,
    /// When the first certificate to expire does, in Unix ms; `None` for a
    /// key.
    pub expires: Option<i64>,
}

/// Checks `bytes` as the content of a setting holding `kind`, at `now_ms`
/// (Unix ms); the reason in plain words when it cannot be used.
pub fn check(kind: Holds, bytes: &[u8], now_ms: i64) -> Result<Accepted, String> {
    match kind {
        Holds::PrivateKey => {
            key(bytes)?;
            Ok(Accepted {
                subject: "private key".into(),
                certificates: 0,
                expires: None,
            })
        }
        Holds::Certificate => {
            let chain = certificates(bytes)?;
            let parsed = parse_all(&chain)?;
            in_order(&parsed)?;
            let expires = not_expired(&parsed, now_ms)?;
            verify_chain(&chain, &parsed, now_ms)?;
            Ok(Accepted {
                subject: subject(&parsed[0]),
                certificates: chain.len(),
                expires: Some(expires),
            })
        }
        Holds::Trust => {
            let cas = certificates(bytes)?;
            let parsed = parse_all(&cas)?;
            for (i, c) in parsed.iter().enumerate() {
                if !c.is_ca() {
                    return Err(format!(
                        "certificate {} ({}) is not a CA certificate; to accept one server's own certificate, upload it as the pinned certificate",
                        i + 1,
                        subject(c)
                    ));
                }
            }
            let expires = not_expired(&parsed, now_ms)?;
            let mut store = RootCertStore::empty();
            for (i, c) in cas.iter().cloned().enumerate() {
                store
                    .add(c)
                    .map_err(|e| format!("CA certificate {} is not usable: {e}", i + 1))?;
            }
            Ok(Accepted {
                subject: subject(&parsed[0]),
                certificates: parsed.len(),
                expires: Some(expires),
            })
        }
        Holds::Pinned => {
            let certs = certificates(bytes)?;
            if certs.len() != 1 {
                return Err(format!(
                    "a pinned certificate is one certificate, this file has {}",
                    certs.len()
                ));
            }
            let parsed = parse_all(&certs)?;
            let expires = not_expired(&parsed, now_ms)?;
            Ok(Accepted {
                subject: subject(&parsed[0]),
                certificates: 1,
                expires: Some(expires),
            })
        }
    }
}

/// Checks that the key in `key_pem` is the one of the first certificate in
/// `chain_pem`.
pub fn check_pair(chain_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
    let chain = certificates(chain_pem)?;
    let key = key(key_pem)?;
    let provider = provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("the private key does not belong to the certificate: {e}"))?;
    certified
        .keys_match()
        .map_err(|e| format!("the private key does not belong to the certificate: {e}"))
}

/// Every certificate of a PEM file; refused when it has none, when a PEM
/// section cannot be read, or when it also holds a private key.
fn certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if PrivateKeyDer::from_pem_slice(bytes).is_ok() {
        return Err(
            "the file holds a private key; upload the key into the key's own setting".into(),
        );
    }
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM file: {e}"))?;
    if certs.is_empty() {
        return Err(
            "no PEM certificate found (expected a -----BEGIN CERTIFICATE----- section)".into(),
        );
    }
    Ok(certs)
}

fn key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    let key = PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no PEM private key found (expected a -----BEGIN PRIVATE KEY----- section)".to_string()
        }
        other => format!("not a PEM private key: {other}"),
    })?;
    provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("not a key rustls can sign with (RSA, ECDSA, Ed25519): {e}"))?;
    Ok(key)
}

fn parse_all<'a>(certs: &'a [CertificateDer<'static>]) -> Result<Vec<X509Certificate<'a>>, String> {
    certs
        .iter()
        .enumerate()
        .map(|(i, der)| {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, c)| c)
                .map_err(|e| format!("certificate {} is not X.509: {e}", i + 1))
        })
        .collect()
}

fn subject(c: &X509Certificate<'_>) -> String {
    let s = c.subject().to_string();
    if s.is_empty() {
        "no subject".into()
    } else {
        s
    }
}

/// Each certificate issued by the next one.
fn in_order(chain: &[X509Certificate<'_>]) -> Result<(), String> {
    for (i, pair) in chain.windows(2).enumerate() {
        if pair[0].issuer() != pair[1].subject() {
            return Err(format!(
                "certificate {} ({}) was not issued by certificate {} ({}): the file must hold the certificate first, then each CA that issued the one before",
                i + 1,
                subject(&pair[0]),
                i + 2,
                subject(&pair[1])
            ));
        }
    }
    Ok(())
}

/// The earliest expiry of `certs` in Unix ms; refused when one is past.
fn not_expired(certs: &[X509Certificate<'_>], now_ms: i64) -> Result<i64, String> {
    let mut earliest = i64::MAX;
    for (i, c) in certs.iter().enumerate() {
        let until = c.validity().not_after.timestamp().saturating_mul(1000);
        if until <= now_ms {
            return Err(format!(
                "certificate {} ({}) expired on {}",
                i + 1,
                subject(c),
                c.validity().not_after
            ));
        }
        earliest = earliest.min(until);
    }
    Ok(earliest)
}

/// With its root in the file, the chain verified as a peer verifies it: as
/// a server's or as a client's certificate, whichever it is made for.
fn verify_chain(
    chain: &[CertificateDer<'static>],
    parsed: &[X509Certificate<'_>],
    now_ms: i64,
) -> Result<(), String> {
    let Some(last) = parsed.last() else {
        return Ok(());
    };
    if chain.len() < 2 || !last.is_ca() || last.issuer() != last.subject() {
        return Ok(());
    }
    let mut roots = RootCertStore::empty();
    roots
        .add(chain[chain.len() - 1].clone())
        .map_err(|e| format!("the root CA at the end of the file is not usable: {e}"))?;
    let roots = Arc::new(roots);
    let provider = provider();
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_millis(
        u64::try_from(now_ms).unwrap_or(0),
    ));
    let intermediates = &chain[1..chain.len() - 1];
    let leaf = &chain[0];
    let as_server = rustls::server::ParsedCertificate::try_from(leaf)
        .and_then(|p| {
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &p,
                &roots,
                intermediates,
                now,
                provider.signature_verification_algorithms.all,
            )
        })
        .map_err(|e| e.to_string());
    if as_server.is_ok() {
        return Ok(());
    }
    let as_client =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| e.to_string())
            .and_then(|v| {
                v.verify_client_cert(leaf, intermediates, now)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
    match (as_server, as_client) {
        (Err(e), Err(_)) => Err(format!("the chain does not verify up to its root CA: {e}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

    const TRUST: Holds = Holds::Trust;
    const CERT: Holds = Holds::Certificate;
    const KEY: Holds = Holds::PrivateKey;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    }

    struct Issued {
        ca: String,
        cert: String,
        key: String,
        other_key: String,
    }

    fn issue(not_after_year: i32) -> Issued {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Ward CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["hub.example".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        let cert = params.signed_by(&key, &ca).unwrap();
        Issued {
            ca: ca.pem(),
            cert: cert.pem(),
            key: key.serialize_pem(),
            other_key: KeyPair::generate().unwrap().serialize_pem(),
        }
    }

    #[test]
    fn a_certificate_with_its_key_and_its_ca_are_accepted_with_their_expiry() {
        let i = issue(2099);
        let a = check(CERT, i.cert.as_bytes(), now()).unwrap();
        assert_eq!(a.certificates, 1);
        assert!(a.expires.unwrap() > now());
        let chain = format!("{}{}", i.cert, i.ca);
        assert_eq!(
            check(CERT, chain.as_bytes(), now()).unwrap().certificates,
            2
        );
        check(KEY, i.key.as_bytes(), now()).unwrap();
        check_pair(i.cert.as_bytes(), i.key.as_bytes()).unwrap();
        let ca = check(TRUST, i.ca.as_bytes(), now()).unwrap();
        assert!(ca.subject.contains("Ward CA"), "{ca:?}");
        check(Holds::Pinned, i.cert.as_bytes(), now()).unwrap();
    }

    #[test]
    fn each_unusable_file_is_refused_with_its_reason() {
        let i = issue(2099);
        let expired = issue(2021);
        let other = issue(2099);
        let wrong_order = format!("{}{}", i.ca, i.cert);
        let foreign_chain = format!("{}{}", i.cert, other.ca);
        let truncated = i.cert.replace("-----END CERTIFICATE-----", "");
        let cases: Vec<(Holds, String, &str)> = vec![
            (CERT, "hello".into(), "no PEM certificate found"),
            (CERT, String::new(), "no PEM certificate found"),
            (CERT, truncated, "not a PEM file"),
            (CERT, i.key.clone(), "holds a private key"),
            (CERT, expired.cert.clone(), "expired on"),
            (CERT, wrong_order, "was not issued by certificate 2"),
            // Another CA of the same name: in order by name, but its
            // signature does not verify.
            (CERT, foreign_chain, "does not verify up to its root CA"),
            (KEY, i.cert.clone(), "no PEM private key found"),
            (
                KEY,
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into(),
                "not a key rustls can sign with",
            ),
            (Holds::Trust, i.cert.clone(), "is not a CA certificate"),
            (
                Holds::Pinned,
                format!("{}{}", i.cert, i.ca),
                "this file has 2",
            ),
        ];
        for (kind, text, expected) in cases {
            let e = check(kind, text.as_bytes(), now()).unwrap_err();
            assert!(e.contains(expected), "{kind:?} {expected}: {e}");
        }
        let e = check_pair(i.cert.as_bytes(), i.other_key.as_bytes()).unwrap_err();
        assert!(e.contains("does not belong to the certificate"), "{e}");
    }
}
