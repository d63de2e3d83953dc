//! The command line's verify: exit 0 for a good bundle, and a distinct exit
//! code for each reason a bundle is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ecko-image"))
}

fn run(args: &[&str]) -> i32 {
    let out = bin().args(args).output().unwrap();
    out.status.code().unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    d: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::fs::write(d.join("payload"), vec![0x5a; 300_000]).unwrap();
        for k in ["key", "other"] {
            assert_eq!(run(&["keygen", d.join(k).to_str().unwrap()]), 0);
        }
        let f = Fixture { _dir: dir, d };
        assert_eq!(f.build("key", "bundle"), 0);
        f
    }
    fn p(&self, name: &str) -> String {
        self.d.join(name).to_str().unwrap().to_owned()
    }
    fn build(&self, key: &str, out: &str) -> i32 {
        run(&[
            "build",
            "--payload",
            &self.p("payload"),
            "--hardware",
            "box-v2",
            "--version",
            "1.2.0",
            "--security-version",
            "4",
            "--key",
            &self.p(key),
            "-o",
            &self.p(out),
        ])
    }
    fn verify(&self, bundle: &str, extra: &[&str]) -> i32 {
        let b = self.p(bundle);
        let t = self.p("key.pub");
        let mut a = vec!["verify", &b, "--trust", &t];
        a.extend(extra);
        run(&a)
    }
    fn variant(&self, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = std::fs::read(self.d.join("bundle")).unwrap();
        edit(&mut b);
        std::fs::write(self.d.join(name), b).unwrap();
        name.to_owned()
    }
}

fn manifest_len(p: &Path) -> usize {
    let b = std::fs::read(p).unwrap();
    u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize
}

#[test]
fn a_good_bundle_verifies_and_each_refusal_has_its_own_exit_code() {
    let f = Fixture::new();
    assert_eq!(f.verify("bundle", &["--hardware", "box-v2"]), 0);
    let n = manifest_len(&f.d.join("bundle"));

    assert_eq!(
        f.verify("bundle", &["--hardware", "box-v3"]),
        19,
        "wrong hardware"
    );
    assert_eq!(
        f.verify("bundle", &["--installed-security-version", "5"]),
        20,
        "downgrade"
    );
    let t = f.variant("tampered-payload", |b| {
        let last = b.len() - 1;
        b[last] ^= 1;
    });
    assert_eq!(f.verify(&t, &[]), 21, "tampered payload");
    let t = f.variant("tampered-manifest", |b| b[16 + n - 1] ^= 1);
    assert_eq!(f.verify(&t, &[]), 17, "tampered manifest");
    let t = f.variant("truncated", |b| b.truncate(b.len() - 10));
    assert_eq!(f.verify(&t, &[]), 13, "truncated payload");
    let t = f.variant("truncated-head", |b| b.truncate(16 + n / 2));
    assert_eq!(f.verify(&t, &[]), 13, "truncated manifest");
    let t = f.variant("huge-manifest", |b| {
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes())
    });
    assert_eq!(f.verify(&t, &[]), 12, "4 GB manifest length");
    let t = f.variant("not-a-bundle", |b| *b = b"#!/bin/sh\necho hi\n".to_vec());
    assert_eq!(f.verify(&t, &[]), 10, "not a bundle");
    let t = f.variant("trailing", |b| b.push(0));
    assert_eq!(f.verify(&t, &[]), 22, "data after the payload");

    assert_eq!(f.build("other", "by-other"), 0);
    assert_eq!(f.verify("by-other", &[]), 15, "unknown key");
    // Signed by `other`, but claiming to be signed by the trusted key.
    let trusted = std::fs::read(f.d.join("bundle")).unwrap();
    let mut forged = std::fs::read(f.d.join("by-other")).unwrap();
    let signer = 16 + n + 64;
    forged[signer..signer + 32].copy_from_slice(&trusted[signer..signer + 32]);
    std::fs::write(f.d.join("forged"), forged).unwrap();
    assert_eq!(f.verify("forged", &[]), 17, "wrong key");
}

#[test]
fn the_secret_key_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let mode = std::fs::metadata(f.d.join("key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_ne!(run(&["keygen", &f.p("key")]), 0, "never overwrites a key");
}

#[test]
fn an_unsigned_bundle_is_refused_until_signed_in_place() {
    let f = Fixture::new();
    let code = run(&[
        "build",
        "--payload",
        &f.p("payload"),
        "--hardware",
        "box-v2",
        "--version",
        "1.0",
        "--security-version",
        "1",
        "-o",
        &f.p("unsigned"),
    ]);
    assert_eq!(code, 0);
    assert_eq!(f.verify("unsigned", &[]), 14);
    let before = std::fs::metadata(f.d.join("unsigned")).unwrap().len();
    assert_eq!(run(&["sign", &f.p("unsigned"), "--key", &f.p("key")]), 0);
    assert_eq!(
        std::fs::metadata(f.d.join("unsigned")).unwrap().len(),
        before
    );
    assert_eq!(f.verify("unsigned", &[]), 0);
    let out = bin()
        .args(["info", &f.p("unsigned"), "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "1.0");
    assert_eq!(v["payload_len"], 300_000);
    assert_eq!(v["verified"], false);
}
