//! A real OpenSSH server for the SFTP tests (`/usr/sbin/sshd` from
//! Debian's `openssh-server`, installed by `scripts/install-peers`),
//! started on 127.0.0.1 with its own host key, its own authorized key and
//! `ForceCommand internal-sftp`.

use crate::{free_port, wait_for_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SSHD: &str = "/usr/sbin/sshd";

/// The keys and configuration of one test's OpenSSH server.
pub struct SshdFiles {
    pub dir: PathBuf,
    /// The user key the server authorizes.
    pub user_key: PathBuf,
    /// A key it does not.
    pub stranger_key: PathBuf,
    /// The host key's `SHA256:` fingerprint, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// Another host's.
    pub other_fingerprint: String,
}

pub fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ecko-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client)")
        .success();
    assert!(ok, "ssh-keygen failed");
}

pub fn fingerprint(public: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_string()
}

impl SshdFiles {
    pub fn new(root: &Path) -> SshdFiles {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: scripts/install-peers installs openssh-server"
        );
        let dir = root.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        for k in ["host", "other_host", "user", "stranger"] {
            keygen(&dir.join(k));
        }
        std::fs::copy(dir.join("user.pub"), dir.join("authorized_keys")).unwrap();
        // Runs as root here: root may log in, but only to SFTP, by key or
        // password (root has none that the tests know, so every password
        // is wrong), with no PAM and no checks of the temp dir's modes.
        std::fs::write(
            dir.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nHostKey {d}/host\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin yes\nStrictModes no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM no\nSubsystem sftp internal-sftp\nForceCommand internal-sftp\nLogLevel VERBOSE\n",
                d = dir.display()
            ),
        )
        .unwrap();
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        SshdFiles {
            fingerprint: fingerprint(&dir.join("host.pub")),
            other_fingerprint: fingerprint(&dir.join("other_host.pub")),
            user_key: dir.join("user"),
            stranger_key: dir.join("stranger"),
            dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Starts sshd in the foreground on `port`.
    pub fn run(&self, port: u16) -> Sshd {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.join("sshd_config"))
            .args(["-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        assert!(
            wait_for_port(port, Duration::from_secs(10)),
            "sshd on {port}: {}",
            self.log()
        );
        Sshd { child }
    }
}

/// A running sshd; stopped when dropped.
pub struct Sshd {
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's directory and its OpenSSH server, running on a free port.
pub fn server() -> (tempfile::TempDir, SshdFiles, u16, Sshd) {
    let dir = tempfile::tempdir().unwrap();
    let files = SshdFiles::new(dir.path());
    let port = free_port();
    let sshd = files.run(port);
    (dir, files, port, sshd)
}
