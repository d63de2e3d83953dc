//! Build facts for `ecko-gateway --version` and `ecko_build_info`: the git
//! commit, the build date and the target triple.
//!
//! A clone has git; a source tarball (a Yocto recipe's) may not, so every
//! fact has a way in without it: `ECKO_GIT_COMMIT` names the commit (a
//! recipe passes its SRCREV), `SOURCE_DATE_EPOCH` fixes the date for
//! reproducible builds, and the commit is `unknown` when neither git nor the
//! variable can tell.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=ECKO_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());

    let commit = std::env::var("ECKO_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: the file HEAD names, and HEAD itself
            // for a checkout of another branch. Only files that exist: cargo
            // counts a missing one as changed on every build, and a
            // repository without `packed-refs` (a fresh worktree) would
            // rebuild the gateway, with its whole link-time optimisation,
            // every time. When refs are packed later the loose ref file
            // goes away, which is a change cargo sees.
            let watch = |file: &str| {
                if let Some(path) = git(&dir, &["rev-parse", "--git-path", file]) {
                    let path = dir.join(path);
                    if path.exists() {
                        println!("cargo:rerun-if-changed={}", path.display());
                    }
                }
            };
            watch("HEAD");
            watch("packed-refs");
            if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
                watch(&branch);
            }
            git(&dir, &["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_string());

    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let date = date.strftime("%Y-%m-%d").to_string();

    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());

    println!("cargo:rustc-env=ECKO_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=ECKO_BUILD_DATE={date}");
    println!("cargo:rustc-env=ECKO_TARGET={target}");
}
