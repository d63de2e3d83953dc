//! The Yocto layer, checked without bitbake: the recipes lint clean for
//! every release the layer claims, the crates include is what `Cargo.lock`
//! gives, the licence fields agree with the workspace, and every file the
//! recipe installs from the source tree exists, the third-party notices
//! among them.

use ecko_tests::peer_tool;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

fn layer() -> PathBuf {
    repo().join("yocto/meta-ecko")
}

fn recipe() -> String {
    std::fs::read_to_string(layer().join("recipes-ecko/ecko-gateway/ecko-gateway_git.bb"))
        .expect("the gateway recipe")
}

/// The value of a simple `NAME = "value"` assignment in `text`.
fn assignment<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.trim_start();
        let value = rest.strip_prefix('=')?.trim();
        value.strip_prefix('"')?.strip_suffix('"')
    })
}

#[test]
fn the_recipes_have_no_lint_error_or_warning_for_any_release_the_layer_claims() {
    let conf = std::fs::read_to_string(layer().join("conf/layer.conf")).unwrap();
    let releases: Vec<&str> = assignment(&conf, "LAYERSERIES_COMPAT_ecko")
        .expect("LAYERSERIES_COMPAT_ecko")
        .split_whitespace()
        .collect();
    assert!(releases.contains(&"scarthgap"), "{releases:?}");
    let lint = peer_tool("yocto-venv", "oelint-adv");
    for release in releases {
        let out = Command::new(&lint)
            .current_dir(layer())
            .args([
                "--quiet",
                "--mode",
                "all",
                "--relpaths",
                "--release",
                release,
            ])
            .args([
                "recipes-ecko/ecko-gateway/ecko-gateway_git.bb",
                "recipes-core/images/ecko-image.bb",
            ])
            .output()
            .expect("oelint-adv runs");
        let findings = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let serious: Vec<&str> = findings
            .lines()
            .filter(|l| l.contains(":error:") || l.contains(":warning:"))
            .collect();
        assert!(serious.is_empty(), "{release}:\n{}", serious.join("\n"));
    }
}

#[test]
fn the_crates_include_is_what_cargo_lock_gives() {
    let out = Command::new(repo().join("scripts/yocto-crates"))
        .arg("--check")
        .output()
        .expect("scripts/yocto-crates runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let include =
        std::fs::read_to_string(layer().join("recipes-ecko/ecko-gateway/ecko-gateway-crates.inc"))
            .unwrap();
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    let registry_packages = lock.matches("source = \"registry+").count();
    assert_eq!(
        include.matches("crate://crates.io/").count(),
        registry_packages
    );
    assert_eq!(include.matches(".sha256sum] = ").count(), registry_packages);
}

#[test]
fn the_third_party_notices_are_what_the_dependencies_give() {
    let out = Command::new(repo().join("scripts/third-party-notices"))
        .arg("--check")
        .output()
        .expect("scripts/third-party-notices runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let notices = std::fs::read_to_string(repo().join("THIRD-PARTY-NOTICES")).unwrap();
    for linked in ["rustls", "ring", "rusqlite", "tokio", "axum"] {
        assert!(
            notices
                .lines()
                .any(|l| l.starts_with(&format!("{linked} "))),
            "{linked} is linked into the binary and must be listed"
        );
    }
}

#[test]
fn the_recipe_licence_is_the_workspace_licence_and_its_checksum_is_the_license_file() {
    let recipe = recipe();
    let workspace = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let workspace_licence = workspace
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| assignment(l, "license"))
        .expect("[workspace.package] license");
    assert_eq!(assignment(&recipe, "LICENSE"), Some(workspace_licence));

    let chksum = assignment(&recipe, "LIC_FILES_CHKSUM").expect("LIC_FILES_CHKSUM");
    let md5 = chksum
        .strip_prefix("file://LICENSE;md5=")
        .expect("the checksum is of the LICENSE file");
    let out = Command::new("md5sum")
        .arg(repo().join("LICENSE"))
        .output()
        .unwrap();
    let actual = String::from_utf8_lossy(&out.stdout);
    assert_eq!(actual.split_whitespace().next(), Some(md5));

    let layer_copy =
        std::fs::read_to_string(layer().join(format!("licenses/{workspace_licence}"))).unwrap();
    assert_eq!(
        layer_copy,
        std::fs::read_to_string(repo().join("LICENSE")).unwrap(),
        "the layer's licence text is the project's"
    );
}

#[test]
fn every_file_the_recipe_installs_from_the_source_tree_exists() {
    let recipe = recipe();
    let from_source: Vec<&str> = recipe
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("${S}/"))
        .collect();
    assert!(from_source.len() >= 4, "{from_source:?}");
    for path in from_source {
        assert!(repo().join(path).is_file(), "{path} is not in the tree");
    }
    let dir = assignment(&recipe, "CARGO_SRC_DIR").expect("CARGO_SRC_DIR");
    let manifest = std::fs::read_to_string(repo().join(dir).join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("name = \"ecko-gateway\""),
        "CARGO_SRC_DIR builds the gateway binary"
    );
}

#[test]
fn the_recipe_installs_and_packages_the_units_generator() {
    let recipe = recipe();
    let installed = "${D}${systemd_unitdir}/system-generators/";
    assert!(
        recipe.lines().any(|l| l.trim()
            == format!(
                "install -m 0755 ${{S}}/packaging/systemd/ecko-gateway-generator {installed}"
            )),
        "the generator is not installed executable in {installed}"
    );
    assert!(
        recipe.contains(
            "FILES:${PN} += \"${systemd_unitdir}/system-generators/ecko-gateway-generator\""
        ),
        "the generator is in no package"
    );
}
