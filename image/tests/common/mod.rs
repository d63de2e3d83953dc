//! What the command-line tests of key rotation, install from a URL and
//! power loss share: a scratch directory with the `ecko-image` binary run
//! in it.

// Each test crate compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod loop_device;

use std::path::PathBuf;
use std::process::Output;

pub struct Scratch {
    _dir: tempfile::TempDir,
    pub d: PathBuf,
}

impl Scratch {
    /// A fresh directory with `subdirs` made in it.
    pub fn new(subdirs: &[&str]) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        for sub in subdirs {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        Scratch { _dir: dir, d }
    }

    /// `name` in the directory, as an argument.
    pub fn p(&self, name: &str) -> String {
        self.d.join(name).to_str().unwrap().to_owned()
    }

    /// Runs `ecko-image` with `args`; its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_ecko-image"))
            .args(args)
            .output()
            .unwrap()
    }

    /// As [`Scratch::run`], failing the test unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert!(o.status.success(), "{args:?}: {o:?}");
        o
    }

    /// `name`: a bundle of `payload` for hardware `box-v2`, security
    /// version 1, signed with `key` (made by `keygen` first).
    pub fn build(&self, name: &str, version: &str, payload: &[u8]) -> String {
        std::fs::write(self.d.join(format!("{name}.payload")), payload).unwrap();
        self.ok(&[
            "build",
            "--payload",
            &self.p(&format!("{name}.payload")),
            "--hardware",
            "box-v2",
            "--version",
            version,
            "--security-version",
            "1",
            "--key",
            &self.p("key"),
            "-o",
            &self.p(name),
        ]);
        self.p(name)
    }

    /// Every file of the `slots` directory with its bytes, by name (a
    /// leftover download or part file shows here too).
    pub fn slots_snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(self.d.join("slots"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }
}
