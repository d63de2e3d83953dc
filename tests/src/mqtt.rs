//! A mosquitto broker started by a test on a free port (MQTT 5 and 3.1.1),
//! aedes as a broker that speaks only 3.1.1 (`aedes-broker/broker.js`),
//! and the hub's side written with paho-mqtt: what it received
//! (`python/hub_listen.py`), read back from its file, and the commands it
//! gives (`python/hub_command.py`).

use crate::{eventually, free_port, peer_python, python_script, wait_for_port};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A TLS listener of the broker: its CA (that client certificates are
/// checked against), its certificate and key; with `require_certificate`
/// a client without a certificate of that CA is refused, and one with is
/// known by its certificate's common name (`use_identity_as_username`).
pub struct TlsListener {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub require_certificate: bool,
}

/// A mosquitto process with its own configuration, persistence and log.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    /// The TLS listener's port, when it has one.
    pub tls_port: Option<u16>,
    config: PathBuf,
    log: PathBuf,
    /// The file mosquitto saves its sessions to.
    database: PathBuf,
}

impl Broker {
    /// Plain MQTT on 127.0.0.1, sessions and subscriptions saved every
    /// second under `dir` so that a killed broker comes back with them.
    pub fn start(dir: &Path) -> Broker {
        Broker::start_with(dir, None)
    }

    /// [`Broker::start`] plus a TLS listener on `tls_port` (the plain one
    /// stays for the hub's side).
    pub fn start_tls(dir: &Path, tls: &TlsListener) -> Broker {
        Broker::start_with(dir, Some(tls))
    }

    fn start_with(dir: &Path, tls: Option<&TlsListener>) -> Broker {
        std::fs::create_dir_all(dir).expect("broker dir");
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        let mut f = std::fs::File::create(&config).expect("mosquitto.conf");
        // As root mosquitto would become user mosquitto, who cannot write
        // the test's directory.
        writeln!(
            f,
            "allow_anonymous true\npersistence true\n\
             persistence_location {d}/\nautosave_interval 1\nlog_dest file {d}/mosquitto.log\n\
             log_type all\nuser root\nmax_queued_messages 100000\nlistener {port} 127.0.0.1",
            d = dir.display()
        )
        .expect("mosquitto.conf");
        let tls_port = tls.map(|t| {
            let tls_port = free_port();
            writeln!(
                f,
                "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 require_certificate {}\nuse_identity_as_username {}",
                t.ca.display(),
                t.cert.display(),
                t.key.display(),
                t.require_certificate,
                t.require_certificate,
            )
            .expect("mosquitto.conf");
            tls_port
        });
        let mut b = Broker {
            child: None,
            port,
            tls_port,
            config,
            database: dir.join("mosquitto.db"),
            log: dir.join("mosquitto.log"),
        };
        b.restart();
        b
    }

    /// What the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the broker again on the same port and configuration.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (scripts/install-peers installs it)");
        self.child = Some(child);
        for port in std::iter::once(self.port).chain(self.tls_port) {
            assert!(
                wait_for_port(port, Duration::from_secs(10)),
                "mosquitto does not listen on {port}"
            );
        }
    }

    /// Waits until the broker has saved its sessions as they are now (its
    /// next autosave), so that a SIGKILL after it loses none of them.
    pub fn wait_until_saved(&self) {
        let now = std::time::SystemTime::now();
        let saved_after_now = || {
            std::fs::metadata(&self.database)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > now)
        };
        assert!(
            eventually(Duration::from_secs(20), saved_after_now),
            "mosquitto did not save {}",
            self.database.display()
        );
    }

    /// SIGKILL: the broker saves nothing more.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// aedes, an MQTT 3.1.1-only broker (it answers an MQTT 5 CONNECT with
/// CONNACK return code 1), on 127.0.0.1; sessions and retained messages in
/// memory, its log of connections and refusals in `dir/aedes.log`.
pub struct Broker311 {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Broker311 {
    pub fn start(dir: &Path) -> Broker311 {
        std::fs::create_dir_all(dir).expect("broker dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("aedes-broker");
        assert!(
            script.join("node_modules/aedes").exists(),
            "run scripts/install-peers first"
        );
        let port = free_port();
        let log = dir.join("aedes.log");
        let child = Command::new("node")
            .arg("broker.js")
            .arg(port.to_string())
            .current_dir(&script)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("aedes.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        assert!(
            wait_for_port(port, Duration::from_secs(15)),
            "aedes does not listen on {port}"
        );
        Broker311 { child, port, log }
    }

    /// What the broker logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker311 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay from a port of its own to a broker's, that can hold back
/// what the client sends (its PUBACKs never reach the broker) while what
/// the broker sends still gets through: the window between a delivery
/// handled and its acknowledgement, held open for as long as a test needs.
pub struct Relay {
    pub port: u16,
    hold: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(broker_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay port");
        let port = listener.local_addr().expect("relay port").port();
        let hold = Arc::new(AtomicBool::new(false));
        let held = hold.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)) else {
                    continue;
                };
                let (c, b) = (client.try_clone().unwrap(), broker.try_clone().unwrap());
                let held = held.clone();
                std::thread::spawn(move || copy(client, broker, Some(held)));
                std::thread::spawn(move || copy(b, c, None));
            }
        });
        Relay { port, hold }
    }

    /// From now on what the client sends is dropped (`true`), or passed.
    pub fn hold(&self, on: bool) {
        self.hold.store(on, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either ends, dropping what comes while
/// `hold` is set; then closes both.
fn copy(mut from: TcpStream, mut to: TcpStream, hold: Option<Arc<AtomicBool>>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hold.as_ref().is_some_and(|h| h.load(Ordering::SeqCst)) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// One message the hub received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub retain: bool,
    /// When the hub had it, in Unix seconds.
    pub at: f64,
    pub payload: Vec<u8>,
}

/// The hub's side: paho-mqtt subscribed to topic filters.
pub struct HubListener {
    child: Child,
    out: PathBuf,
}

impl HubListener {
    /// Subscribes `client_id` (a persistent session) to `filters` and waits
    /// until the subscription is in place.
    pub fn start(broker: &Broker, client_id: &str, filters: &[&str], out: &Path) -> HubListener {
        HubListener::start_on(broker.port, client_id, filters, out)
    }

    /// [`HubListener::start`] on the broker at `port`.
    pub fn start_on(port: u16, client_id: &str, filters: &[&str], out: &Path) -> HubListener {
        let mut cmd = Command::new(peer_python("mqtt-venv"));
        cmd.arg(python_script("hub_listen.py"))
            .args(["--port", &port.to_string(), "--client-id", client_id])
            .arg("--out")
            .arg(out);
        for f in filters {
            cmd.args(["--topic", f]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .expect("start hub_listen.py");
        let l = HubListener {
            child,
            out: out.to_path_buf(),
        };
        assert!(
            eventually(Duration::from_secs(15), || l.subscriptions() > 0),
            "the hub listener did not subscribe"
        );
        l
    }

    /// How many times the subscriptions were made.
    pub fn subscriptions(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.get("subscribed").is_some())
            .count()
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every message received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.lines()
            .iter()
            .filter_map(|l| {
                Some(Received {
                    topic: l.get("topic")?.as_str()?.to_string(),
                    retain: l.get("retain")?.as_bool()?,
                    at: l.get("t")?.as_f64()?,
                    payload: hex::decode(l.get("payload")?.as_str()?).ok()?,
                })
            })
            .collect()
    }

    /// Messages received on `topic`.
    pub fn on(&self, topic: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.topic == topic)
            .collect()
    }
}

impl Drop for HubListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hub publishes `payload` on `topic` (QoS 1), as paho-mqtt; returns
/// once the broker has it.
pub fn hub_publish(broker: &Broker, topic: &str, payload: &[u8]) {
    hub_publish_on(broker.port, topic, payload)
}

/// [`hub_publish`] to the broker at `port`.
pub fn hub_publish_on(port: u16, topic: &str, payload: &[u8]) {
    let status = Command::new(peer_python("mqtt-venv"))
        .arg(python_script("hub_command.py"))
        .args(["--port", &port.to_string(), "--topic", topic])
        .args(["--payload-hex", &hex::encode(payload)])
        .stdin(Stdio::null())
        .status()
        .expect("run hub_command.py");
    assert!(status.success(), "the hub could not publish on {topic}");
}
