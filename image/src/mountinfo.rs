//! `/proc/self/mountinfo` read for one question: is the block device with
//! this `major:minor` mounted, and where. Each line is
//! `id parent major:minor root mount-point options... - fstype source ...`
//! (proc(5)); the mount point has space, tab, newline and backslash
//! written as octal escapes (`\040`), undone here for the message.
//!
//! A file system that is not on one block device (btrfs, overlay) shows an
//! anonymous `0:N`, so a partition can be in use without a line naming it:
//! the exclusive open in `device` is the second guard.

/// The mount point of the first mount of `major:minor`, if any.
pub fn mount_point_of(mountinfo: &str, major: u64, minor: u64) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let dev = fields.nth(2)?;
        let (ma, mi) = dev.split_once(':')?;
        if ma.parse::<u64>().ok()? != major || mi.parse::<u64>().ok()? != minor {
            return None;
        }
        let _root = fields.next()?;
        fields.next().map(unescape)
    })
}

/// `\NNN` (three octal digits) as the byte it stands for; anything else as is.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        match octal {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "\
22 1 179:2 / / rw,relatime shared:1 - ext4 /dev/mmcblk0p2 rw
25 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
31 22 179:4 / /data rw,noatime shared:5 - ext4 /dev/mmcblk0p4 rw,errors=remount-ro
40 31 7:3 /sub /mnt/usb\\040stick rw,relatime shared:9 master:2 - vfat /dev/loop3 rw
41 22 259:12 / /boot rw - vfat /dev/nvme0n1p1 rw
";

    #[test]
    fn the_mounted_root_partition_is_found_by_its_major_and_minor() {
        assert_eq!(mount_point_of(FIXTURE, 179, 2).as_deref(), Some("/"));
        assert_eq!(mount_point_of(FIXTURE, 179, 4).as_deref(), Some("/data"));
        assert_eq!(mount_point_of(FIXTURE, 259, 12).as_deref(), Some("/boot"));
    }

    #[test]
    fn a_partition_no_line_names_is_not_mounted() {
        assert_eq!(mount_point_of(FIXTURE, 179, 3), None);
        // 1:79 is neither 179:x nor x:2 read loosely.
        assert_eq!(mount_point_of(FIXTURE, 1, 79), None);
        assert_eq!(mount_point_of(FIXTURE, 17, 92), None);
        assert_eq!(mount_point_of("", 179, 2), None);
    }

    #[test]
    fn an_escaped_mount_point_is_shown_as_the_kernel_named_it() {
        assert_eq!(
            mount_point_of(FIXTURE, 7, 3).as_deref(),
            Some("/mnt/usb stick")
        );
        assert_eq!(unescape(r"a\134b\0"), r"a\b\0");
    }

    #[test]
    fn lines_that_are_not_mountinfo_are_skipped_without_a_panic() {
        let junk = "x\n1 2\n1 2 3\n1 2 a:b /\n1 2 179:3\n1 2 179:2 / /root rw - ext4 x rw\n";
        assert_eq!(mount_point_of(junk, 179, 3), None);
        assert_eq!(mount_point_of(junk, 179, 2).as_deref(), Some("/root"));
    }
}
