//! The e-mail channel: one plain-text message per notice over SMTP.
//!
//! `starttls` requires the upgrade (a server that does not offer STARTTLS
//! is refused, never written to in clear); `tls` speaks TLS from the first
//! byte; `none` is plain SMTP, allowed without credentials only. The server
//! is verified against the system's trust store or the channel's `ca_file`,
//! with rustls on the ring provider.

use super::notice::Notice;
use crate::config::{EmailChannel, SmtpSecurity};
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// One SMTP channel, with its transport made once.
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    pub fn new(config: &EmailChannel) -> Result<Email, String> {
        let tls = match config.security {
            SmtpSecurity::None => Tls::None,
            SmtpSecurity::Starttls => Tls::Required(parameters(config)?),
            SmtpSecurity::Tls => Tls::Wrapper(parameters(config)?),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.trim())
                .port(config.port())
                .tls(tls)
                .timeout(Some(config.timeout.0));
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let from = config.from.parse().map_err(|e| format!("`from`: {e}"))?;
        let to = config
            .to
            .iter()
            .map(|t| t.parse().map_err(|e| format!("`{t}`: {e}")))
            .collect::<Result<_, String>>()?;
        Ok(Email {
            transport: builder.build(),
            from,
            to,
        })
    }

    pub async fn send(&self, notice: &Notice) -> Result<(), String> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(notice.title())
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .body(notice.text())
            .map_err(|e| format!("cannot write the e-mail: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| crate::with_causes(&e))
    }
}

fn parameters(config: &EmailChannel) -> Result<TlsParameters, String> {
    let mut builder = TlsParameters::builder(config.host.trim().to_string());
    if let Some(path) = &config.ca_file {
        let path = crate::config::resolve(path);
        let pem = std::fs::read(&path)
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
        let ca = Certificate::from_pem(&pem)
            .map_err(|e| format!("the CA file {}: {e}", path.display()))?;
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(ca);
    }
    builder.build_rustls().map_err(|e| crate::with_causes(&e))
}
