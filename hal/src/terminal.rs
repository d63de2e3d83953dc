//! The terminal a person runs the command line on: whether there is one,
//! and reading a secret without showing it.
//!
//! Only the command line uses this; the daemon under systemd has no
//! terminal at all, and standard streams that are pipes or files are
//! treated as a script's, which neither wants prompts nor colour codes.

use std::io::{BufRead, IsTerminal};

#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    #[error("reading terminal settings")]
    Settings(#[source] nix::Error),
    #[error("turning echo off")]
    Echo(#[source] nix::Error),
    #[error("reading the password")]
    Read(#[source] std::io::Error),
    #[error("reading the password from standard input")]
    ReadPiped(#[source] std::io::Error),
}

/// The process's standard streams as a person at a terminal sees them.
pub trait Terminal: Send + Sync + 'static {
    /// Whether standard error is shown on a terminal.
    fn stderr_is_terminal(&self) -> bool;

    /// One line of standard input without its line end. On a terminal,
    /// `prompt` is shown on standard error first and the line typed is not
    /// echoed.
    fn read_secret(&self, prompt: &str) -> Result<String, TerminalError>;
}

/// The real standard streams; echo is turned off through termios.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxTerminal;

impl Terminal for LinuxTerminal {
    fn stderr_is_terminal(&self) -> bool {
        std::io::stderr().is_terminal()
    }

    fn read_secret(&self, prompt: &str) -> Result<String, TerminalError> {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        let mut line = String::new();
        if stdin.is_terminal() {
            eprint!("{prompt}");
            let saved = tcgetattr(&stdin).map_err(TerminalError::Settings)?;
            let mut quiet = saved.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(TerminalError::Echo)?;
            let read = stdin.lock().read_line(&mut line);
            // Echo comes back even when the read failed: the terminal is the
            // user's shell's once we exit.
            let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
            // The user's Enter was not echoed either.
            eprintln!();
            read.map_err(TerminalError::Read)?;
        } else {
            stdin
                .lock()
                .read_line(&mut line)
                .map_err(TerminalError::ReadPiped)?;
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

/// No terminal: standard error is a pipe and the secret is given.
#[derive(Debug, Clone, Default)]
pub struct SimTerminal {
    pub secret: String,
}

impl Terminal for SimTerminal {
    fn stderr_is_terminal(&self) -> bool {
        false
    }

    fn read_secret(&self, _prompt: &str) -> Result<String, TerminalError> {
        Ok(self.secret.clone())
    }
}
