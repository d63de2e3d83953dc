//! dcmtk's `storescp` as the PACS of the DICOM tests (installed by
//! `scripts/install-peers`).

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
