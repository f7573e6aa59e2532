//! What a request asks for and what a mapping grants.

use core::fmt;

/// The access a DMA request performs (a request can ask for several, e.g. a
/// page request for read and write, or an ATS translation request).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access {
    /// Read (or the read half of an atomic).
    pub read: bool,
    /// Write (or the write half of an atomic).
    pub write: bool,
    /// Instruction fetch (execute-requested).
    pub exec: bool,
    /// Supervisor (privileged) request; otherwise a user request.
    pub privileged: bool,
}

impl Access {
    /// A user-mode read.
    pub const READ: Access = Access { read: true, write: false, exec: false, privileged: false };
    /// A user-mode write.
    pub const WRITE: Access = Access { read: false, write: true, exec: false, privileged: false };
    /// A user-mode read and write (atomics, page requests for both).
    pub const READ_WRITE: Access = Access { read: true, write: true, exec: false, privileged: false };

    /// The same access, made privileged.
    pub const fn privileged(self) -> Access {
        Access { privileged: true, ..self }
    }

    /// The same access with execute requested.
    pub const fn exec(self) -> Access {
        Access { exec: true, ..self }
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Access({}{}{}{})",
            if self.read { "r" } else { "-" },
            if self.write { "w" } else { "-" },
            if self.exec { "x" } else { "-" },
            if self.privileged { "S" } else { "U" }
        )
    }
}

/// Permissions a translation grants.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perm {
    /// Reads allowed.
    pub read: bool,
    /// Writes allowed.
    pub write: bool,
    /// Instruction fetches allowed.
    pub exec: bool,
}

impl Perm {
    /// Everything allowed (pass-through).
    pub const ALL: Perm = Perm { read: true, write: true, exec: true };
    /// Nothing allowed.
    pub const NONE: Perm = Perm { read: false, write: false, exec: false };

    /// Whether `access` is allowed by these permissions.
    pub const fn allows(self, access: Access) -> bool {
        (!access.read || self.read) && (!access.write || self.write) && (!access.exec || self.exec)
    }

    /// Intersection of two permission sets (composition of stages or levels).
    pub const fn and(self, other: Perm) -> Perm {
        Perm { read: self.read && other.read, write: self.write && other.write, exec: self.exec && other.exec }
    }
}

/// `rwx` with `-` for a missing permission.
impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            if self.read { "r" } else { "-" },
            if self.write { "w" } else { "-" },
            if self.exec { "x" } else { "-" }
        )
    }
}

impl fmt::Debug for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Perm({self})")
    }
}

/// A translation granule: 4 KiB pages and the 2 MiB / 1 GiB large pages of
/// the x86-64 and VT-d second-stage formats.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub enum PageSize {
    /// 4 KiB (a leaf at level 1).
    #[default]
    Size4K,
    /// 2 MiB (a leaf at level 2).
    Size2M,
    /// 1 GiB (a leaf at level 3).
    Size1G,
}

impl PageSize {
    /// log2 of the size in bytes.
    pub const fn shift(self) -> u32 {
        match self {
            PageSize::Size4K => 12,
            PageSize::Size2M => 21,
            PageSize::Size1G => 30,
        }
    }

    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// The paging level (1 = 4 KiB leaf table) at which a leaf of this size sits.
    pub const fn level(self) -> u8 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }

    /// The page size of a leaf at `level`, if a leaf may sit there.
    pub const fn from_level(level: u8) -> Option<PageSize> {
        match level {
            1 => Some(PageSize::Size4K),
            2 => Some(PageSize::Size2M),
            3 => Some(PageSize::Size1G),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_perm_refuses_write() {
        let ro = Perm { read: true, write: false, exec: false };
        assert!(ro.allows(Access::READ));
        assert!(!ro.allows(Access::WRITE));
    }

    #[test]
    fn page_size_level_round_trips() {
        for s in [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G] {
            assert_eq!(PageSize::from_level(s.level()), Some(s));
        }
        assert_eq!(PageSize::from_level(4), None);
    }
}
