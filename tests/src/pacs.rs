//! The DICOM peers of the tests (installed by `scripts/install-peers`):
//! dcmtk's `storescp` as the PACS, pynetdicom as the modality.

use crate::{peer_python, python_script};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

/// A PACS process, stopped when dropped.
pub struct Pacs(pub Child);

impl Drop for Pacs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dcmtk's storescp as the PACS, accepting every transfer syntax, writing
/// what it receives into `dir`, logging each request.
pub fn pacs(port: u16, dir: &Path, log: &Path) -> Pacs {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new("storescp")
        .args(["-v", "+xa", "-aet", "PACS", "-od"])
        .arg(dir)
        .arg(port.to_string())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("storescp (dcmtk): run scripts/install-peers");
    let pacs = Pacs(child);
    assert!(crate::wait_for_port(port, Duration::from_secs(10)));
    pacs
}

/// Sends `count` generated instances of `study` (pynetdicom); the UIDs
/// answered with success.
pub fn send_study(scp: u16, count: usize, study: &str, acked: &Path) -> Vec<String> {
    let _ = std::fs::remove_file(acked);
    let out = Command::new(peer_python("dicom-venv"))
        .arg(python_script("dicom_send.py"))
        .args([
            "127.0.0.1",
            &scp.to_string(),
            "ECKO",
            &count.to_string(),
            study,
        ])
        .arg(acked)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::read_to_string(acked)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}
