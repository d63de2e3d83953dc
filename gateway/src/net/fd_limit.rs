//! The process's file-descriptor limit, checked once at start: every
//! connection a listener admits is a descriptor, and running out of them
//! makes `accept` fail for everyone, the journal's files included.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors the gateway needs besides its connections: the journal and
/// its WAL, logs, outbound connections, the drop folders.
pub const RESERVED: u64 = 128;

/// What the start-up check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit now in force (raised to the hard limit when it was
    /// lower).
    pub soft: u64,
    pub hard: u64,
    /// What the configured listeners may hold at once, plus [`RESERVED`].
    pub needed: u64,
}

impl FdLimit {
    pub fn is_enough(&self) -> bool {
        self.soft >= self.needed
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and warns when it is
/// still smaller than `connections` (the sum of the listeners' caps) plus
/// [`RESERVED`]. `None` when the limit cannot be read.
pub fn check(connections: u64) -> Option<FdLimit> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the file-descriptor limit");
            return None;
        }
    };
    let mut soft = soft;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => soft = hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the file-descriptor limit")
            }
        }
    }
    let limit = FdLimit {
        soft: widened(soft),
        hard: widened(hard),
        needed: connections.saturating_add(RESERVED),
    };
    if limit.is_enough() {
        tracing::debug!(
            limit = limit.soft,
            needed = limit.needed,
            "file-descriptor limit"
        );
    } else {
        tracing::warn!(
            limit = limit.soft,
            needed = limit.needed,
            "the file-descriptor limit is smaller than the listeners' connection caps need; raise LimitNOFILE= or lower max_connections"
        );
    }
    Some(limit)
}

/// `rlim_t` is 64 bits on 64-bit Linux but 32 bits on 32-bit ARM (armv7).
#[allow(clippy::useless_conversion)]
fn widened(limit: nix::sys::resource::rlim_t) -> u64 {
    u64::from(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one_and_compared_with_what_is_needed() {
        let limit = check(64).expect("the limit is readable");
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(limit.soft, widened(soft));
        assert_eq!(limit.hard, widened(hard));
        assert_eq!(limit.needed, 64 + RESERVED);
        let huge = check(u64::MAX).unwrap();
        assert!(!huge.is_enough());
    }
}
