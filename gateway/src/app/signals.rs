//! The signals the gateway answers: SIGTERM and SIGINT stop it in order;
//! SIGHUP has it read its configuration file again and apply it without a
//! restart, as an edit on the admin page is applied.
//!
//! Until a handler is installed the kernel's default action applies, which
//! ends the process on the spot: listeners bound, senders waiting for their
//! ACKs, the journal not closed. So [`Signals::install`] comes before the
//! configuration is read, the journal opened or a port bound, and a signal
//! that arrives while the gateway is still starting is kept until start-up
//! is done and then stops it like any other.

use tokio::signal::unix::{signal, Signal, SignalKind};

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for signals")]
pub struct InstallError(#[source] std::io::Error);

/// What a signal asks of the running gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// SIGTERM (the service manager) or SIGINT (Ctrl-C).
    Stop,
    /// SIGHUP (`systemctl reload`, `kill -HUP`).
    Reload,
}

/// The installed handlers; signals received are kept until [`Signals::next`].
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers; from here on these signals no longer end the
    /// process by themselves.
    pub fn install() -> Result<Signals, InstallError> {
        Ok(Signals {
            terminate: signal(SignalKind::terminate()).map_err(InstallError)?,
            interrupt: signal(SignalKind::interrupt()).map_err(InstallError)?,
            hangup: signal(SignalKind::hangup()).map_err(InstallError)?,
        })
    }

    /// Waits for the next signal, or returns one received already; a stop
    /// comes before a reload received with it.
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            biased;
            _ = self.terminate.recv() => Request::Stop,
            _ = self.interrupt.recv() => Request::Stop,
            // `None` only once the runtime is gone; the branch is then off.
            Some(()) = self.hangup.recv() => Request::Reload,
        }
    }
}
