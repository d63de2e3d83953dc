//! The stand-in REST API (`tests/python/rest_standin.py`, on Python's own
//! http.server): answers from a script per path, then 201; records every
//! request (time, method, path, headers, body) in arrival order; and a
//! gateway that feeds it from a file drop.

use crate::{eventually, python_script, Gateway};
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

/// A gateway in `dir` whose file drop `dir/inbox` (message type `CLAIM`)
/// feeds the `rest` destination `claims` with `sink`'s keys, configured in
/// `dir/gateway.toml`; and its journal's path.
pub fn file_drop_to_rest(dir: &Path, sink: &str) -> (Gateway, PathBuf) {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("inbox")).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"[journal]
path = "{d}/journal.db"
[[endpoint]]
name = "inbox"
type = "file-drop"
path = "{d}/inbox"
poll_interval = "50ms"
message_type = "CLAIM"
[[endpoint]]
name = "claims"
type = "rest"
retry = {{ initial = "200ms", max = "1s", jitter = 0.0 }}
{sink}
[[route]]
name = "all"
from = ["inbox"]
to = ["claims"]
"#
        ),
    )
    .unwrap();
    let gw = Gateway::start(&config, &dir.join("log"), &[]);
    (gw, dir.join("journal.db"))
}
