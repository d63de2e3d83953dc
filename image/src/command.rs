//! Running a boot control program (`fw_printenv`, `fw_setenv`, `rauc`):
//! every way it can go wrong is a [`SlotError::Command`] that names the
//! command line, never a panic. Programs are run without a shell, so a
//! configured name is a path or a name looked up in `PATH`, never a script.

use std::process::Command;

use crate::slots::SlotError;

/// Runs `program args...` and returns what it printed on stdout; a
/// non-zero exit is an error carrying its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, SlotError> {
    let line = || {
        let mut l = program.to_owned();
        for a in args {
            l.push(' ');
            l.push_str(a);
        }
        l
    };
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| SlotError::Command(format!("could not run `{}`: {e}", line())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(SlotError::Command(format!(
            "`{}` failed ({}): {}",
            line(),
            out.status,
            err.trim()
        )));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| SlotError::Command(format!("`{}` printed what is not UTF-8", line())))
}
