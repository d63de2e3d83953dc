//! `ecko-image`: keygen, build, sign, info, verify; install to the inactive
//! slot, status, mark-good and rollback over a boot backend (`--slots DIR`,
//! `--boot file|uboot|rauc`); boot, the bootloader's part on the file
//! backend.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ecko_image::backend::Backend;
use ecko_image::download;
use ecko_image::install::{self, Source};
use ecko_image::keys::{self, KeyKind};
use ecko_image::layout::{Layout, SlotImage};
use ecko_image::manifest::{Manifest, PayloadKind};
use ecko_image::rauc::Rauc;
use ecko_image::slots::{self, BootControl, FileBoot};
use ecko_image::uboot::UbootEnv;
use ecko_image::verify::{self, Checks};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "ecko-image",
    version,
    about = "Signed firmware bundles for Ecko Edge"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum BootKind {
    /// DIR/boot-state.json is the whole record (`boot` plays the bootloader).
    File,
    /// The U-Boot environment: BOOT_ORDER, BOOT_A_LEFT, BOOT_B_LEFT.
    Uboot,
    /// RAUC's slot status (`rauc status`).
    Rauc,
}

/// Where the slots are and what boots them.
#[derive(Args)]
struct BootArgs {
    /// The boot state file, and the slot images unless its slots.toml
    /// places them on partitions.
    #[arg(long)]
    slots: PathBuf,
    #[arg(long, value_enum, default_value = "file")]
    boot: BootKind,
    #[arg(long, default_value = "fw_printenv")]
    fw_printenv: String,
    #[arg(long, default_value = "fw_setenv")]
    fw_setenv: String,
    /// The kernel command line, whose rauc.slot= names the running slot (uboot).
    #[arg(long, default_value = "/proc/cmdline")]
    cmdline: PathBuf,
    #[arg(long, default_value = "rauc")]
    rauc: String,
}

impl BootArgs {
    fn backend(&self) -> Backend {
        match self.boot {
            BootKind::File => Backend::File(FileBoot::new(&self.slots)),
            BootKind::Uboot => Backend::Uboot(UbootEnv::new(
                &self.slots,
                &self.fw_printenv,
                &self.fw_setenv,
                &self.cmdline,
            )),
            BootKind::Rauc => Backend::Rauc(Rauc::new(&self.slots, &self.rauc)),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Write KEY (secret, 0600) and KEY.pub.
    Keygen {
        key: PathBuf,
        /// A release key; without it the key is marked development.
        #[arg(long)]
        release: bool,
    },
    /// Payload + manifest -> bundle (signed when --key is given).
    Build {
        #[arg(long)]
        payload: PathBuf,
        #[arg(long)]
        hardware: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        security_version: u64,
        #[arg(long, default_value = "rootfs")]
        kind: PayloadKind,
        #[arg(long)]
        key: Option<PathBuf>,
        /// A public key file: the key trusted once this bundle is installed
        /// (key rotation, vouched for by the key signing this bundle).
        #[arg(long)]
        next_key: Option<PathBuf>,
        #[arg(short = 'o')]
        out: PathBuf,
    },
    /// Sign a bundle in place.
    Sign {
        bundle: PathBuf,
        #[arg(long)]
        key: PathBuf,
    },
    /// Show a bundle's manifest (not verified: use `verify` for that).
    Info {
        bundle: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle; exit 0 or a code per reason (README).
    Verify {
        bundle: PathBuf,
        #[arg(long, default_value = "/etc/ecko/keys")]
        trust: PathBuf,
        #[arg(long)]
        hardware: Option<String>,
        #[arg(long)]
        installed_security_version: Option<u64>,
        #[arg(long)]
        allow_dev_keys: bool,
    },
    /// Verify a bundle, then write it to the inactive slot and boot it next.
    /// BUNDLE may be an https:// URL: downloaded first, under --max-size.
    Install {
        /// A bundle file, or an https:// (http:// with --allow-http) URL.
        bundle: PathBuf,
        /// Allow an http:// URL (the signature is checked all the same).
        #[arg(long)]
        allow_http: bool,
        /// The CA (PEM) the download server's certificate must chain to;
        /// the system's trust store without it.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// The largest bundle downloaded, in bytes (default 2 GiB).
        #[arg(long, default_value_t = 2 << 30)]
        max_size: u64,
        /// Where a downloaded bundle is kept until installed (default: the
        /// --slots directory, on the data partition).
        #[arg(long)]
        download_dir: Option<PathBuf>,
        #[arg(long, default_value = "/etc/ecko/keys")]
        trust: PathBuf,
        #[arg(long)]
        hardware: String,
        #[command(flatten)]
        at: BootArgs,
        #[arg(long)]
        allow_dev_keys: bool,
        /// Install an older version of the SAME security version as the
        /// installed one (a forced downgrade); a lower security version is
        /// refused all the same.
        #[arg(long)]
        allow_same_security_downgrade: bool,
        /// Print the result as JSON (and no progress bars).
        #[arg(long)]
        json: bool,
    },
    /// Both slots, which one runs and boots next, the last result.
    Status {
        #[command(flatten)]
        at: BootArgs,
        #[arg(long)]
        json: bool,
    },
    /// The running (pending) slot passed its readiness check: keep it.
    MarkGood {
        #[command(flatten)]
        at: BootArgs,
    },
    /// Boot the other (good) slot next.
    Rollback {
        #[command(flatten)]
        at: BootArgs,
    },
    /// What the bootloader does at power-on, for the file backend: boot the
    /// next slot (a pending one uses up a try), or fall back to the other
    /// good slot once its tries are gone; prints the slot that boots.
    Boot {
        #[arg(long)]
        slots: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("ecko-image: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn run(cmd: Cmd) -> Result<(), (u8, anyhow::Error)> {
    let other = |e: anyhow::Error| (1u8, e);
    match cmd {
        Cmd::Keygen { key, release } => {
            let kind = if release {
                KeyKind::Release
            } else {
                KeyKind::Development
            };
            keys::keygen(&key, kind).map_err(|e| other(e.into()))?;
        }
        Cmd::Build {
            payload,
            hardware,
            version,
            security_version,
            kind,
            key,
            next_key,
            out,
        } => {
            let next_key = next_key
                .map(|k| keys::read_public(&k))
                .transpose()
                .map_err(|e| other(e.into()))?;
            let key = key
                .map(|k| keys::read_secret(&k))
                .transpose()
                .map_err(|e| other(e.into()))?;
            let build_time = std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| jiff::Timestamp::now().as_second().max(0) as u64);
            let m = Manifest {
                hardware,
                version,
                security_version,
                payload_kind: kind,
                payload_len: 0,
                payload_sha256: [0; 32],
                build_time,
                next_key: next_key.map(|k| k.as_next()),
            };
            verify::build(&payload, m, key.as_ref(), &out).map_err(|e| other(e.into()))?;
        }
        Cmd::Sign { bundle, key } => {
            let key = keys::read_secret(&key).map_err(|e| other(e.into()))?;
            verify::sign_file(&bundle, &key)
                .map_err(|e| (e.exit_code() as u8, anyhow::Error::from(e)))?;
        }
        Cmd::Info { bundle, json } => {
            let (head, m) = verify::read_unverified(&bundle)
                .map_err(|e| (e.exit_code() as u8, anyhow::Error::from(e)))?;
            let v = serde_json::json!({
                "verified": false,
                "signed": !head.is_unsigned(),
                "signer": hex::encode(head.signer),
                "hardware": m.hardware,
                "version": m.version,
                "security_version": m.security_version,
                "payload_kind": m.payload_kind.as_str(),
                "payload_len": m.payload_len,
                "payload_sha256": hex::encode(m.payload_sha256),
                "build_time": m.build_time,
                "next_key": m.next_key.map(|k| serde_json::json!({
                    "public": hex::encode(k.public), "development": k.development})),
            });
            if json {
                println!("{v:#}");
            } else if let Some(o) = v.as_object() {
                for (k, v) in o {
                    println!("{k}: {v}");
                }
            }
        }
        Cmd::Verify {
            bundle,
            trust,
            hardware,
            installed_security_version,
            allow_dev_keys,
        } => {
            let trust = keys::read_trust(&trust).map_err(|e| other(e.into()))?;
            let c = Checks {
                trust: &trust,
                allow_dev_keys,
                hardware: hardware.as_deref(),
                installed_security_version,
            };
            let m = verify::verify_file(&bundle, &c)
                .map_err(|e| (e.exit_code() as u8, anyhow::Error::from(e)))?;
            println!(
                "ok: {} {} security version {} for {}",
                m.payload_kind.as_str(),
                m.version,
                m.security_version,
                m.hardware
            );
        }
        Cmd::Install {
            bundle,
            allow_http,
            ca_file,
            max_size,
            download_dir,
            trust,
            hardware,
            at,
            allow_dev_keys,
            allow_same_security_downgrade,
            json,
        } => {
            let trust_keys = keys::read_trust(&trust).map_err(|e| other(e.into()))?;
            let mut bars = Bars::new(!json && std::io::stderr().is_terminal());
            let downloaded = match bundle.to_str().filter(|b| download::is_url(b)) {
                Some(url) => {
                    let dir = download_dir.as_ref().unwrap_or(&at.slots);
                    let dest =
                        Downloaded(dir.join(format!(".download-{}.bundle", std::process::id())));
                    let fetch = download::Fetch {
                        url,
                        allow_http,
                        ca_file: ca_file.as_deref(),
                        max_size,
                    };
                    download::fetch(&fetch, &dest.0, &mut bars)
                        .map_err(|e| (DOWNLOAD_FAILED, anyhow::Error::from(e)))?;
                    Some(dest)
                }
                None => None,
            };
            let bundle = downloaded
                .as_ref()
                .map_or(bundle.as_path(), |d| d.0.as_path());
            let src = Source {
                bundle,
                trust: &trust_keys,
                allow_dev_keys,
                hardware: &hardware,
                allow_same_security_downgrade,
                trust_dir: trust.is_dir().then_some(trust.as_path()),
            };
            let done = install::install_with_progress(&at.backend(), &src, &mut bars)
                .map_err(|e| (e.exit_code() as u8, anyhow::Error::from(e)))?;
            drop(bars);
            if let Some(k) = &done.trusted_key {
                // On stderr whatever the output format: a change of who may
                // sign the next update is never silent.
                eprintln!(
                    "ecko-image: key rotation: the bundle's next key {} ({}) is trusted from now on: {}",
                    k.fingerprint,
                    if k.development { "development" } else { "release" },
                    k.path.display()
                );
            }
            if json {
                let v = serde_json::json!({
                    "slot": done.slot,
                    "version": done.manifest.version,
                    "security_version": done.manifest.security_version,
                    "payload_len": done.manifest.payload_len,
                    "tries_left": slots::NEW_SLOT_TRIES,
                    "trusted_key": done.trusted_key.as_ref().map(|k| serde_json::json!({
                        "fingerprint": k.fingerprint,
                        "development": k.development,
                        "path": k.path,
                    })),
                });
                println!("{v:#}");
            } else {
                println!(
                    "installed {} to slot {}: pending, boots next",
                    done.manifest.version,
                    done.slot.as_str()
                );
            }
        }
        Cmd::Status { at, json } => {
            let s = at.backend().load().map_err(slot_err)?;
            let layout = Layout::read(&at.slots).map_err(slot_err)?;
            if json {
                let mut v = serde_json::to_value(&s).map_err(|e| other(e.into()))?;
                v["images"] = serde_json::json!({
                    "a": layout.image(slots::Slot::A),
                    "b": layout.image(slots::Slot::B),
                });
                println!("{v:#}");
            } else {
                for slot in [slots::Slot::A, slots::Slot::B] {
                    let i = s.slot(slot);
                    let image = match layout.image(slot) {
                        SlotImage::File(_) => String::new(),
                        SlotImage::Device(d) => format!(", on {}", d.display()),
                    };
                    println!(
                        "slot {}: {:?} version {} security version {} tries left {}{}{}{image}",
                        slot.as_str(),
                        i.state,
                        i.version.as_deref().unwrap_or("-"),
                        i.security_version.map_or("-".into(), |v| v.to_string()),
                        i.tries_left,
                        if s.active == slot { ", active" } else { "" },
                        if s.next == slot { ", boots next" } else { "" },
                    );
                }
                println!("last result: {}", s.last_result.as_deref().unwrap_or("-"));
            }
        }
        Cmd::MarkGood { at } => {
            let slot = slots::mark_good(&at.backend()).map_err(slot_err)?;
            println!("slot {} is good", slot.as_str());
        }
        Cmd::Rollback { at } => {
            let slot = slots::rollback(&at.backend()).map_err(slot_err)?;
            println!("slot {} boots next", slot.as_str());
        }
        Cmd::Boot { slots, json } => {
            let b = slots::boot_recorded(&FileBoot::new(&slots)).map_err(slot_err)?;
            let info = b.state.slot(b.slot);
            if json {
                let v = serde_json::json!({
                    "slot": b.slot,
                    "state": info.state,
                    "version": info.version,
                    "tries_left": info.tries_left,
                    "fell_back": b.fell_back,
                    "last_result": b.state.last_result,
                });
                println!("{v:#}");
            } else {
                println!(
                    "slot {} boots: {:?} version {}, tries left {}{}",
                    b.slot.as_str(),
                    info.state,
                    info.version.as_deref().unwrap_or("-"),
                    info.tries_left,
                    if b.fell_back {
                        format!(
                            " ({})",
                            b.state.last_result.as_deref().unwrap_or("fell back")
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    Ok(())
}

/// One progress bar per pass over the payload, on stderr; drawn only when
/// stderr is a terminal and --json is not given, so scripts and logs never
/// see one.
struct Bars {
    shown: bool,
    bar: Option<ProgressBar>,
}

impl Bars {
    fn new(shown: bool) -> Bars {
        Bars { shown, bar: None }
    }
}

impl Drop for Bars {
    /// An install cut short leaves its bar where it stopped, and the error
    /// below it.
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
            if self.shown {
                eprintln!();
            }
        }
    }
}

impl install::Progress for Bars {
    fn start(&mut self, phase: install::Phase, total: u64) {
        let target = if self.shown {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target((total > 0).then_some(total), target);
        // The template is fixed and valid; a bar without it still counts.
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>12} [{bar:24}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(match phase {
            install::Phase::Download => "downloading",
            install::Phase::Verify => "verifying",
            install::Phase::Write => "writing",
            install::Phase::ReadBack => "reading back",
        });
        self.bar = Some(bar);
    }
    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
            // indicatif leaves the cursor on the bar's line: the next bar
            // or the result goes below it.
            if self.shown {
                eprintln!();
            }
        }
    }
}

/// A bundle downloaded for an install, removed once it is done with
/// (installed or refused).
struct Downloaded(PathBuf);

impl Drop for Downloaded {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `install URL`: the bundle could not be downloaded (refused by its
/// size, broken off, an HTTP error, TLS); nothing was written to a slot.
const DOWNLOAD_FAILED: u8 = 28;

fn slot_err(e: slots::SlotError) -> (u8, anyhow::Error) {
    (e.exit_code() as u8, e.into())
}
