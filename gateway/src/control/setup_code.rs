//! The one-time setup code that guards the first run: whoever reaches the
//! admin page before its first administrator exists must type it, so the
//! first person on the LAN does not become administrator by being first.
//!
//! - One code per device, made at random when the gateway first starts
//!   with no user (never a shared default), kept in `setup-code` beside the
//!   journal, readable by its owner only (0600). A restart before the setup
//!   reads the file back, so the code someone wrote down stays right.
//! - Shown where a person with the device in hand looks: the log (warn),
//!   standard error (the serial console) and `ecko-gateway setup-code`.
//! - Consumed once the first administrator exists: the file is deleted
//!   ([`consume`]), and with it the code.
//! - Twelve characters from an alphabet without look-alikes (no 0/O, 1/I/L),
//!   about 59 bits, written in groups of four; typing it in lower case or
//!   without the dashes is accepted ([`normalise`]). Compared in constant
//!   time.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// The file beside the journal that holds the code.
pub const FILE_NAME: &str = "setup-code";

/// Characters a code is made of: upper-case letters and digits, without
/// those a person misreads for one another.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const LENGTH: usize = 12;
const GROUP: usize = 4;

/// Where the code of the gateway whose data directory is `data_dir` lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// A fresh code, e.g. `K7QM-2XWP-H9RT`.
pub fn generate() -> String {
    // Rejection sampling keeps every character equally likely: 248 is the
    // largest multiple of the alphabet's 31 characters below 256.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut chars = Vec::with_capacity(LENGTH);
    while chars.len() < LENGTH {
        let b = rand::random::<u8>();
        if b < limit {
            chars.push(ALPHABET[usize::from(b) % ALPHABET.len()] as char);
        }
    }
    chars
        .chunks(GROUP)
        .map(|g| g.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A code as typed, in the form it is compared in: upper case, without
/// spaces or dashes.
pub fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// Whether `given` is `expected`, in time that does not depend on where
/// they differ.
pub fn matches(given: &str, expected: &str) -> bool {
    let (a, b) = (normalise(given), normalise(expected));
    !b.is_empty()
        && a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The code kept in `data_dir`, if there is one.
pub fn read(data_dir: &Path) -> std::io::Result<Option<String>> {
    let mut text = String::new();
    match std::fs::File::open(path(data_dir)) {
        Ok(mut f) => f.read_to_string(&mut text)?,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let code = text.trim();
    Ok((!code.is_empty()).then(|| code.to_string()))
}

/// The code kept in `data_dir`, made and written first when there is none.
/// `true` with it when it was made now.
pub fn issue(data_dir: &Path) -> std::io::Result<(String, bool)> {
    if let Some(code) = read(data_dir)? {
        return Ok((code, false));
    }
    std::fs::create_dir_all(data_dir)?;
    let code = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    // `create_new`: of two requests racing to make the first code, one
    // writes it and the other reads what was written.
    match options.open(path(data_dir)) {
        Ok(mut f) => {
            f.write_all(format!("{code}\n").as_bytes())?;
            f.sync_all()?;
            Ok((code, true))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => match read(data_dir)? {
            Some(code) => Ok((code, false)),
            None => Err(std::io::Error::other("the setup code file is empty")),
        },
        Err(e) => Err(e),
    }
}

/// Deletes the code: the first administrator exists.
pub fn consume(data_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(data_dir)) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Says where the code is for a person at the device: the log and, as a
/// block of its own, standard error (what the serial console shows).
pub fn announce(code: &str, data_dir: &Path) {
    let file = path(data_dir);
    tracing::warn!(
        setup_code = code,
        file = %file.display(),
        "no administrator yet: first-run setup of the admin page needs this setup code"
    );
    eprintln!(
        "\n==============================================\n\
         Ecko Edge first-run setup code: {code}\n\
         Type it on the admin page's setup form.\n\
         Also in {} and shown by `ecko-gateway setup-code`.\n\
         ==============================================\n",
        file.display()
    );
}

/// At the gateway's start: with no user yet, the code is issued (or read
/// back) and announced; once a user exists (made on the page or with
/// `ecko-gateway user add`), a code left behind is deleted. With
/// `setup_from_loopback_only` no code is made: setup is open from the
/// device itself only.
pub async fn at_start(
    journal: &crate::journal::Journal,
    config: &crate::config::Config,
) -> Result<(), String> {
    let dir = super::config::data_dir(config);
    let users = journal
        .admin_user_count()
        .await
        .map_err(|e| e.to_string())?;
    if users > 0 {
        return consume(&dir).map_err(|e| e.to_string());
    }
    if config.admin.setup_from_loopback_only {
        tracing::info!(
            "no administrator yet: first-run setup is open from 127.0.0.1 and ::1 only (setup_from_loopback_only)"
        );
        return Ok(());
    }
    let (code, _) = issue(&dir).map_err(|e| format!("{}: {e}", path(&dir).display()))?;
    announce(&code, &dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_twelve_unambiguous_characters_in_three_groups_and_differs_each_time() {
        let a = generate();
        assert_eq!(a.len(), 14, "{a}");
        let groups: Vec<&str> = a.split('-').collect();
        assert_eq!(groups.len(), 3);
        assert!(groups.iter().all(|g| g.len() == 4));
        assert!(normalise(&a).bytes().all(|c| ALPHABET.contains(&c)));
        for c in ['0', 'O', '1', 'I', 'L'] {
            assert!(!ALPHABET.contains(&(c as u8)));
        }
        assert_ne!(a, generate());
    }

    #[test]
    fn a_code_typed_in_lower_case_or_without_dashes_matches_and_another_does_not() {
        assert!(matches("k7qm 2xwp h9rt", "K7QM-2XWP-H9RT"));
        assert!(matches("K7QM2XWPH9RT", "K7QM-2XWP-H9RT"));
        assert!(!matches("K7QM-2XWP-H9RA", "K7QM-2XWP-H9RT"));
        assert!(!matches("K7QM-2XWP", "K7QM-2XWP-H9RT"));
        assert!(!matches("", ""), "no code never matches");
    }

    #[test]
    fn the_code_is_kept_owner_only_read_back_after_a_restart_and_gone_once_consumed() {
        let dir = tempfile::tempdir().unwrap();
        let (code, made) = issue(dir.path()).unwrap();
        assert!(made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path())).unwrap().permissions();
            assert_eq!(mode.mode() & 0o777, 0o600);
        }
        assert_eq!(issue(dir.path()).unwrap(), (code.clone(), false));
        assert_eq!(read(dir.path()).unwrap(), Some(code));
        consume(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        consume(dir.path()).unwrap();
    }
}
