//! Writing the configuration file safely, and the versions kept so that a
//! change can be rolled back.
//!
//! A write never leaves a half-written file, whatever moment the power goes:
//! the new text goes to a temporary file in the same directory, is flushed to
//! disk, renamed over the old file (atomic on POSIX filesystems), and the
//! directory itself is flushed so that the rename is durable.
//!
//! Every version written is also kept as `<time>-<action>-<user>.toml` in
//! the history directory (newest `keep` versions). Before the first change,
//! and whenever the file on disk differs from the newest kept version (it
//! was edited by hand), the text on disk is kept too, as
//! `<time>-on_disk-file.toml`, so that rolling back can always reach it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("there is no kept version `{0}`")]
    Unknown(String),
}

/// Replaces `path` with `text` so that a crash leaves either the old or the
/// new file, never a mix; the file keeps its permissions.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), HistoryError> {
    let err = |source| HistoryError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let mode = std::fs::metadata(path).map_or(0o640, |m| m.permissions().mode() & 0o7777);
    let tmp = dir.join(format!(
        ".{name}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// One kept version of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Version {
    /// The file's stem; names the version in URLs.
    pub id: String,
    /// Unix ms.
    pub at: i64,
    /// What made it (`endpoint.edit`, `rollback`, `on_disk`...).
    pub action: String,
    pub user: String,
}

/// The kept versions, newest first.
#[derive(Debug, Clone)]
pub struct History {
    dir: PathBuf,
    keep: usize,
}

impl History {
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Self {
            dir: dir.into(),
            keep: keep.max(2),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every kept version, newest first.
    pub fn list(&self) -> Vec<Version> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Version> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                parse_name(name.strip_suffix(".toml")?)
            })
            .collect();
        out.sort_by(|a, b| b.id.cmp(&a.id));
        out
    }

    /// The text of a kept version.
    pub fn read(&self, id: &str) -> Result<String, HistoryError> {
        if !self.list().iter().any(|v| v.id == id) {
            return Err(HistoryError::Unknown(id.to_string()));
        }
        let path = self.dir.join(format!("{id}.toml"));
        std::fs::read_to_string(&path).map_err(|source| HistoryError::Read {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes `text` to `config` atomically and keeps it as a version by
    /// `user`; the text on disk before is kept first when no kept version
    /// holds it. Returns the new version.
    pub fn commit(
        &self,
        config: &Path,
        text: &str,
        action: &str,
        user: &str,
        now_ms: i64,
    ) -> Result<Version, HistoryError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| HistoryError::Write {
            path: self.dir.display().to_string(),
            source,
        })?;
        let on_disk = std::fs::read_to_string(config).ok();
        if let Some(current) = &on_disk {
            let newest = self.list().into_iter().next();
            let kept = newest
                .as_ref()
                .and_then(|v| self.read(&v.id).ok())
                .is_some_and(|t| &t == current);
            if !kept {
                self.keep_version(current, "on_disk", "file", now_ms - 1)?;
            }
        }
        write_atomically(config, text)?;
        let version = self.keep_version(text, action, user, now_ms)?;
        self.prune();
        Ok(version)
    }

    /// Keeps `text`, already on disk and applied, as a version by `user`
    /// unless the newest kept version holds it already: a file edited by
    /// hand and reloaded becomes a version that can be compared and rolled
    /// back to like any other. `None` when nothing new was kept.
    pub fn keep_if_new(
        &self,
        text: &str,
        action: &str,
        user: &str,
        now_ms: i64,
    ) -> Result<Option<Version>, HistoryError> {
        let newest = self.list().into_iter().next();
        if newest
            .and_then(|v| self.read(&v.id).ok())
            .is_some_and(|t| t == text)
        {
            return Ok(None);
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| HistoryError::Write {
            path: self.dir.display().to_string(),
            source,
        })?;
        let version = self.keep_version(text, action, user, now_ms)?;
        self.prune();
        Ok(Some(version))
    }

    fn keep_version(
        &self,
        text: &str,
        action: &str,
        user: &str,
        now_ms: i64,
    ) -> Result<Version, HistoryError> {
        let clean = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        };
        let (action, user) = (clean(action), clean(user));
        let mut at = now_ms;
        loop {
            let id = format!("{}-{action}-{user}", stamp(at));
            let path = self.dir.join(format!("{id}.toml"));
            if path.exists() {
                at += 1;
                continue;
            }
            write_atomically(&path, text)?;
            return Ok(Version {
                id,
                at,
                action,
                user,
            });
        }
    }

    fn prune(&self) {
        for old in self.list().into_iter().skip(self.keep) {
            let _ = std::fs::remove_file(self.dir.join(format!("{}.toml", old.id)));
        }
    }
}

/// `20240131T235959.123Z`: sorts as time does.
fn stamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y%m%dT%H%M%S.%3fZ").to_string())
        .unwrap_or_else(|_| format!("{ms:020}"))
}

fn parse_name(stem: &str) -> Option<Version> {
    let (time, rest) = stem.split_once('-')?;
    let (action, user) = rest.split_once('-')?;
    let at = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S%.fZ", time)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?
        .timestamp()
        .as_millisecond();
    Some(Version {
        id: stem.to_string(),
        at,
        action: action.to_string(),
        user: user.to_string(),
    })
}

/// One line of a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffLine {
    Same(String),
    Removed(String),
    Added(String),
}

/// The lines that differ from `old` to `new` (longest common subsequence);
/// texts too long for that come back as all removed, then all added.
pub fn diff_lines(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        return a
            .iter()
            .map(|l| DiffLine::Removed(l.to_string()))
            .chain(b.iter().map(|l| DiffLine::Added(l.to_string())))
            .collect();
    }
    // lcs[i][j]: common lines of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push(DiffLine::Same(a[i].to_string()));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(DiffLine::Removed(a[i].to_string()));
            i += 1;
        } else {
            out.push(DiffLine::Added(b[j].to_string()));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_file_keeps_its_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["gateway.toml"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails.
        let path = dir.path().join("gateway.toml");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), "x").unwrap();
        assert!(write_atomically(&path, "new\n").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn commits_keep_the_file_before_and_every_version_newest_first_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, "v0\n").unwrap();
        let history = History::new(dir.path().join("config-history"), 3);
        let t = 1_700_000_000_000;
        history
            .commit(&config, "v1\n", "endpoint.edit", "alice", t)
            .unwrap();
        let list = history.list();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].action.as_str(), list[0].user.as_str()),
            ("endpoint.edit", "alice")
        );
        assert_eq!(list[0].at, t);
        assert_eq!(
            (list[1].action.as_str(), list[1].user.as_str()),
            ("on_disk", "file")
        );
        assert_eq!(history.read(&list[1].id).unwrap(), "v0\n");

        // A hand edit between two commits is kept too.
        std::fs::write(&config, "by hand\n").unwrap();
        history
            .commit(&config, "v2\n", "settings.edit", "bob", t + 1000)
            .unwrap();
        let list = history.list();
        assert_eq!(list.len(), 3, "bounded to 3: {list:?}");
        let texts: Vec<_> = list.iter().map(|v| history.read(&v.id).unwrap()).collect();
        assert_eq!(texts, ["v2\n", "by hand\n", "v1\n"]);
        assert_eq!(std::fs::read_to_string(&config).unwrap(), "v2\n");
        assert!(matches!(
            history.read("../gateway"),
            Err(HistoryError::Unknown(_))
        ));
    }

    #[test]
    fn two_commits_in_the_same_millisecond_are_both_kept() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, "v0\n").unwrap();
        let history = History::new(dir.path().join("h"), 10);
        let a = history.commit(&config, "v1\n", "x", "u", 5_000).unwrap();
        let b = history.commit(&config, "v2\n", "x", "u", 5_000).unwrap();
        assert_ne!(a.id, b.id);
        assert_eq!(history.list().len(), 3);
    }

    #[test]
    fn a_diff_shows_only_the_changed_lines_as_removed_and_added() {
        let d = diff_lines("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(
            d,
            [
                DiffLine::Same("a".into()),
                DiffLine::Removed("b".into()),
                DiffLine::Added("B".into()),
                DiffLine::Same("c".into()),
                DiffLine::Added("d".into()),
            ]
        );
    }
}
