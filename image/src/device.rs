//! A slot that is a partition (`layout::SlotImage::Device`), opened so that
//! nothing but the payload can ever land on it. Before a byte is written:
//!
//! - the path must already be a block device: it is never created (a typo
//!   under `/dev` would otherwise become a regular file on the root file
//!   system) nor truncated, and a FIFO or a regular file is refused unopened;
//! - it must not be mounted (`/proc/self/mountinfo`, by `major:minor`), and
//!   it is opened with `O_EXCL`, which the kernel refuses for a block device
//!   a file system, device mapper or another install holds — so the running
//!   root is never overwritten, even where mountinfo shows no line for it;
//! - the payload must fit: the partition's size is where a seek to its end
//!   lands.
//!
//! What follows the payload on the partition is not part of the image and
//! is left as it was; the read-back reads exactly the payload's length.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::{posix_fadvise, OFlag, PosixFadviseAdvice};
use nix::sys::stat::{major, minor};

use crate::mountinfo;
use crate::slots::SlotError;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// `path` opened for writing from its start, after the checks above;
/// `payload_len` bytes are going to be written.
pub fn open_for_write(path: &Path, payload_len: u64) -> Result<File, SlotError> {
    let rdev = block_device(path)?;
    let mounts = fs::read_to_string(MOUNTINFO).map_err(|e| {
        SlotError::Io(io::Error::new(
            e.kind(),
            format!(
                "cannot tell whether {} is mounted: {MOUNTINFO}: {e}",
                path.display()
            ),
        ))
    })?;
    if let Some(at) = mountinfo::mount_point_of(&mounts, major(rdev), minor(rdev)) {
        return Err(SlotError::DeviceInUse {
            device: path.into(),
            why: format!("it is mounted at {at}"),
        });
    }
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(OFlag::O_EXCL.bits())
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == nix::errno::Errno::EBUSY as i32 => SlotError::DeviceInUse {
                device: path.into(),
                why: "the kernel holds it for another user (a file system, device mapper, \
                          another install)"
                    .into(),
            },
            _ => io_at(path, e),
        })?;
    // The path may have been replaced between the look and the open.
    if same_block_device(&f, rdev).map_err(|e| io_at(path, e))? {
        let size = size_of(&mut f).map_err(|e| io_at(path, e))?;
        fits(path, payload_len, size)?;
        Ok(f)
    } else {
        Err(SlotError::NotABlockDevice {
            path: path.into(),
            what: "was replaced while it was opened".into(),
        })
    }
}

/// `path` opened for reading the payload back.
pub fn open_for_read(path: &Path) -> Result<File, SlotError> {
    let rdev = block_device(path)?;
    let f = File::open(path).map_err(|e| io_at(path, e))?;
    if same_block_device(&f, rdev).map_err(|e| io_at(path, e))? {
        Ok(f)
    } else {
        Err(SlotError::NotABlockDevice {
            path: path.into(),
            what: "was replaced while it was opened".into(),
        })
    }
}

/// After the written slot is synced: its pages dropped from the cache, so
/// that the read-back reads what the medium holds, not what was handed to
/// the kernel.
pub fn drop_cached(f: &File) -> io::Result<()> {
    posix_fadvise(f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED).map_err(io::Error::from)
}

/// Refuses a payload of `payload_len` bytes for a partition of `size`.
pub fn fits(device: &Path, payload_len: u64, size: u64) -> Result<(), SlotError> {
    if payload_len > size {
        return Err(SlotError::TooLarge {
            device: device.into(),
            payload: payload_len,
            size,
        });
    }
    Ok(())
}

/// The device number of the block device at `path` (symbolic links
/// followed, as `/dev/disk/by-partlabel/...` are), or why it is not one.
fn block_device(path: &Path) -> Result<u64, SlotError> {
    let not = |what: &str| SlotError::NotABlockDevice {
        path: path.into(),
        what: what.into(),
    };
    let m = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not("does not exist")),
        Err(e) => return Err(io_at(path, e)),
    };
    let t = m.file_type();
    if t.is_block_device() {
        Ok(m.rdev())
    } else if t.is_file() {
        Err(not("is a regular file"))
    } else if t.is_dir() {
        Err(not("is a directory"))
    } else if t.is_char_device() {
        Err(not("is a character device"))
    } else {
        Err(not("is not a block device"))
    }
}

fn same_block_device(f: &File, rdev: u64) -> io::Result<bool> {
    let m = f.metadata()?;
    Ok(m.file_type().is_block_device() && m.rdev() == rdev)
}

fn size_of(f: &mut File) -> io::Result<u64> {
    let size = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(size)
}

fn io_at(path: &Path, e: io::Error) -> SlotError {
    SlotError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_fits_a_partition_of_its_size_or_larger_and_not_a_byte_smaller() {
        let p = Path::new("/dev/mmcblk0p3");
        assert!(fits(p, 0, 0).is_ok());
        assert!(fits(p, 64 << 20, 64 << 20).is_ok());
        assert!(fits(p, 1, 64 << 20).is_ok());
        let e = fits(p, (64 << 20) + 1, 64 << 20).unwrap_err();
        assert_eq!(e.exit_code(), 29, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("/dev/mmcblk0p3") && msg.contains("67108865"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_path_a_regular_file_and_a_directory_are_refused_and_nothing_is_created() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("mmcblk0p9");
        let file = d.path().join("slot.img");
        fs::write(&file, b"keep").unwrap();
        for (path, what) in [
            (missing.as_path(), "does not exist"),
            (file.as_path(), "is a regular file"),
            (d.path(), "is a directory"),
        ] {
            let e = open_for_write(path, 1).unwrap_err();
            assert_eq!(e.exit_code(), 30, "{e}");
            assert!(e.to_string().contains(what), "{e}");
        }
        assert!(!missing.exists());
        assert_eq!(fs::read(&file).unwrap(), b"keep");
        assert_eq!(open_for_read(&file).unwrap_err().exit_code(), 30);
    }

    #[test]
    fn a_character_device_is_not_a_slot() {
        let e = open_for_write(Path::new("/dev/null"), 1).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
    }
}
