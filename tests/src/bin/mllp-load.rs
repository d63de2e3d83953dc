//! MLLP load generator: N connections send realistic ORU^R01 messages, each
//! waiting for its ACK like a real sender, and the figures are printed.
//!
//! ```text
//! mllp-load --port 2575 [--host 127.0.0.1] [--connections 32] [--messages 100000]
//!           [--rate 0 (msg/s in total, 0 = as fast as ACKs come)] [--pid PID]
//!           [--plain-sqlite DIR]
//! ```
//!
//! With `--pid`, the gateway's peak resident memory (VmHWM) and the CPU time
//! it used during the run (per message: a figure that holds even when other
//! work shares the machine) are read from /proc. The 1-minute load average
//! at the start is printed too. Every ACK is checked: a non-AA answer or one
//! for another control id counts as an error.
//!
//! With `--plain-sqlite DIR` (the journal's directory: the same disk), plain
//! SQLite is measured after the run with the journal's settings (WAL,
//! synchronous=FULL), inserting the same messages as bare rows, as many per
//! commit as there are connections (the most a group commit can gather),
//! and the gateway's rate is printed as a fraction of it.

use ecko_protocol::hl7::{AckCode, ParseOptions, ReceivedAck};
use ecko_protocol::mllp;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    host: String,
    port: u16,
    connections: usize,
    messages: usize,
    rate: f64,
    pid: Option<u32>,
    plain_sqlite: Option<std::path::PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 2575,
        connections: 32,
        messages: 100_000,
        rate: 0.0,
        pid: None,
        plain_sqlite: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("bad value for {flag}: {value} ({e})");
        match flag.as_str() {
            "--host" => a.host = value.clone(),
            "--port" => a.port = value.parse().map_err(|e| bad(&e))?,
            "--connections" => a.connections = value.parse().map_err(|e| bad(&e))?,
            "--messages" => a.messages = value.parse().map_err(|e| bad(&e))?,
            "--rate" => a.rate = value.parse().map_err(|e| bad(&e))?,
            "--pid" => a.pid = Some(value.parse().map_err(|e| bad(&e))?),
            "--plain-sqlite" => a.plain_sqlite = Some(value.clone().into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// A lab result as analyzers send it: ~1.5 KB, eight OBX rows.
fn oru(connection: usize, n: usize, run: u128) -> Vec<u8> {
    let mut m = format!(
        "MSH|^~\\&|XN-1000^SYSMEX^L|HEMA-LAB|LIS|ST-MARY|20260314093015+0100||ORU^R01^ORU_R01|L{run}-{connection}-{n}|P|2.5.1\r\
         PID|1||{patient}^^^ST-MARY^MR||Doe^John^^^^^L||19650412|M\r\
         PV1|1|I|ICU^12^1\r\
         ORC|RE|ORD{n}^LIS|SPC{n}^XN-1000\r\
         OBR|1|ORD{n}^LIS|SPC{n}^XN-1000|58410-2^CBC panel - Blood by Automated count^LN|||20260314090000+0100|||||||||||||||20260314093000+0100||HM|F\r",
        patient = 1000 + (n % 500)
    );
    for (i, (code, name, value, unit, range)) in [
        (
            "6690-2",
            "Leukocytes [#/volume] in Blood by Automated count",
            "7.8",
            "10*3/uL",
            "4.0-10.0",
        ),
        (
            "789-8",
            "Erythrocytes [#/volume] in Blood by Automated count",
            "4.52",
            "10*6/uL",
            "4.50-5.90",
        ),
        (
            "718-7",
            "Hemoglobin [Mass/volume] in Blood",
            "14.1",
            "g/dL",
            "13.5-17.5",
        ),
        (
            "4544-3",
            "Hematocrit [Volume Fraction] of Blood by Automated count",
            "42.0",
            "%",
            "41-53",
        ),
        (
            "787-2",
            "MCV [Entitic volume] by Automated count",
            "92.9",
            "fL",
            "80-100",
        ),
        (
            "785-6",
            "MCH [Entitic mass] by Automated count",
            "31.2",
            "pg",
            "26-34",
        ),
        (
            "786-4",
            "MCHC [Mass/volume] by Automated count",
            "33.6",
            "g/dL",
            "31-37",
        ),
        (
            "777-3",
            "Platelets [#/volume] in Blood by Automated count",
            "250",
            "10*3/uL",
            "150-400",
        ),
    ]
    .iter()
    .enumerate()
    {
        m.push_str(&format!(
            "OBX|{}|NM|{code}^{name}^LN||{value}|{unit}^{unit}^UCUM|{range}|N|||F|||20260314092900+0100||XN-1000^SYSMEX\r",
            i + 1
        ));
    }
    m.into_bytes()
}

async fn connection(
    a: std::sync::Arc<Args>,
    id: usize,
    count: usize,
    run: u128,
) -> Result<(Vec<Duration>, usize), String> {
    let mut s = TcpStream::connect((a.host.as_str(), a.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut decoder = mllp::Decoder::default();
    let mut buf = vec![0u8; 8192];
    let mut latencies = Vec::with_capacity(count);
    let mut errors = 0;
    let interval = (a.rate > 0.0).then(|| Duration::from_secs_f64(a.connections as f64 / a.rate));
    // Connections are spread evenly over the interval, so a total rate is a
    // steady stream, not every connection sending in the same instant.
    let phase = interval.map_or(Duration::ZERO, |i| {
        i.mul_f64(id as f64 / a.connections.max(1) as f64)
    });
    let start = Instant::now() + phase;
    for n in 0..count {
        if let Some(i) = interval {
            let due = start + i * n as u32;
            tokio::time::sleep_until(due.into()).await;
        }
        let message = oru(id, n, run);
        let control_id = format!("L{run}-{id}-{n}");
        let t = Instant::now();
        s.write_all(&mllp::encode(&message))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let frame = loop {
            if let Some(mllp::Event::Frame(f)) = decoder.next_event() {
                break f;
            }
            let got = s.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
            if got == 0 {
                return Err("connection closed by the gateway".into());
            }
            decoder.push(&buf[..got], Instant::now());
        };
        latencies.push(t.elapsed());
        match ReceivedAck::parse(&frame, &ParseOptions::default()) {
            Ok(ack) if ack.code == AckCode::AA && ack.acknowledges(&control_id) => {}
            _ => errors += 1,
        }
    }
    Ok((latencies, errors))
}

/// User + system CPU time of `pid` so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => std::sync::Arc::new(a),
        Err(e) => {
            eprintln!("mllp-load: {e}");
            std::process::exit(2);
        }
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let per = a.messages.div_ceil(a.connections);
    let load = load_average();
    let cpu_before = a.pid.and_then(cpu_time);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..a.connections {
        tasks.spawn(connection(a.clone(), id, per, run));
    }
    let mut all = Vec::with_capacity(per * a.connections);
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok((l, e))) => {
                all.extend(l);
                errors += e;
            }
            Ok(Err(e)) => {
                eprintln!("mllp-load: connection failed: {e}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("mllp-load: task failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{} messages over {} connections in {:.2} s: {:.0} msg/s; ACK latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} bad ACKs",
        all.len(),
        a.connections,
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        errors
    );
    println!("load average (1 min) at the start: {load}");
    if let Some(pid) = a.pid {
        if let (Some(before), Some(after)) = (cpu_before, cpu_time(pid)) {
            let used = after.saturating_sub(before);
            println!(
                "gateway CPU time: {:.2} s, {:.1} µs per message",
                used.as_secs_f64(),
                used.as_secs_f64() * 1e6 / all.len().max(1) as f64
            );
        }
        match peak_rss_kib(pid) {
            Some(kib) => println!("gateway peak RSS (VmHWM): {:.1} MB", kib as f64 / 1024.0),
            None => println!("gateway peak RSS: cannot read /proc/{pid}/status"),
        }
    }
    if let Some(dir) = &a.plain_sqlite {
        let rows = all.len().clamp(1, 100_000);
        match plain_sqlite(dir, a.connections.max(1), rows) {
            Ok(plain) => println!(
                "plain SQLite on the same disk, {} rows per commit: {plain:.0} rows/s; the gateway reached {:.1}% of it",
                a.connections.max(1),
                100.0 * (all.len() as f64 / elapsed.as_secs_f64()) / plain
            ),
            Err(e) => println!("plain SQLite not measured: {e}"),
        }
    }
    if errors > 0 {
        std::process::exit(1);
    }
}

/// Rows/s of bare inserts of the same messages, `per_commit` per
/// transaction, with the journal's durability settings.
fn plain_sqlite(dir: &std::path::Path, per_commit: usize, rows: usize) -> rusqlite::Result<f64> {
    let path = dir.join("plain-sqlite.db");
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE message (id INTEGER PRIMARY KEY, control_id TEXT UNIQUE, payload BLOB)",
    )?;
    let start = Instant::now();
    let mut n = 0;
    while n < rows {
        let tx = conn.unchecked_transaction()?;
        for _ in 0..per_commit.min(rows - n) {
            let payload = oru(0, n, 0);
            tx.prepare_cached("INSERT INTO message (control_id, payload) VALUES (?1, ?2)")?
                .execute(rusqlite::params![format!("plain-{n}"), payload])?;
            n += 1;
        }
        tx.commit()?;
    }
    let rate = rows as f64 / start.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("plain-sqlite.db{suffix}")));
    }
    Ok(rate)
}
