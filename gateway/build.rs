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

/// Cargo runs a build script again on every build when a file it watches is
/// missing, and rebuilds the crate with it: a fresh clone has no
/// `packed-refs`, a packed branch no loose ref file. Only what exists is
/// watched; a ref that is packed later moves `packed-refs`, which then exists.
fn rerun_if_changed(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
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
            // for a checkout of another branch.
            for file in ["HEAD", "packed-refs"] {
                if let Some(path) = git(&dir, &["rev-parse", "--git-path", file]) {
                    rerun_if_changed(&dir.join(path));
                }
            }
            if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
                if let Some(path) = git(&dir, &["rev-parse", "--git-path", &branch]) {
                    rerun_if_changed(&dir.join(path));
                }
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
