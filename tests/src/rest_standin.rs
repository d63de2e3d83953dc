//! The stand-in REST API (`tests/python/rest_standin.py`, on Python's own
//! http.server): answers from a script per path, then 201; records every
//! request (time, method, path, headers, body) in arrival order.

use crate::{eventually, python_script};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct StandIn {
    child: Child,
    out: PathBuf,
}

impl StandIn {
    /// Listens on `port` with the script `script` (JSON: path → list of
    /// `[status, {headers}, body]`) and the stand-in's `args`.
    pub fn start(dir: &Path, port: u16, args: &[&str], script: &str) -> StandIn {
        let out = dir.join(format!("standin-{port}"));
        let _ = std::fs::remove_dir_all(&out);
        let script_file = dir.join(format!("script-{port}.json"));
        std::fs::write(&script_file, script).unwrap();
        let child = Command::new("python3")
            .arg(python_script("rest_standin.py"))
            .arg("--out")
            .arg(&out)
            .args(["--port", &port.to_string()])
            .arg("--script")
            .arg(&script_file)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 rest_standin.py");
        assert!(
            eventually(Duration::from_secs(10), || out.join("port").exists()),
            "the stand-in did not start"
        );
        StandIn { child, out }
    }

    /// The requests it saw, in order.
    pub fn requests(&self) -> Vec<Value> {
        (1..)
            .map_while(|n| std::fs::read(self.out.join(format!("{n}.json"))).ok())
            .map(|b| serde_json::from_slice(&b).unwrap())
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
