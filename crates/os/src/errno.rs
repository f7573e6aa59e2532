//! Errno-like error values: the only place errno numbers appear. Every
//! operation has its own error enum with a `From` into [`Errno`].

use core::fmt;

/// The errno values the IOMMU API returns (Linux numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Errno {
    /// Operation not permitted (EPERM, 1).
    Perm,
    /// No such entry (ENOENT, 2).
    NoEnt,
    /// I/O error (EIO, 5).
    Io,
    /// Argument list too long (E2BIG, 7): non-zero bytes beyond the part
    /// of a size-extensible structure the kernel knows.
    TooBig,
    /// Out of memory (ENOMEM, 12).
    NoMem,
    /// Bad address (EFAULT, 14).
    Fault,
    /// Resource busy (EBUSY, 16).
    Busy,
    /// Already exists (EEXIST, 17).
    Exist,
    /// No such device (ENODEV, 19).
    NoDev,
    /// Invalid argument (EINVAL, 22).
    Inval,
    /// No space left (ENOSPC, 28).
    NoSpc,
    /// Illegal seek (ESPIPE, 29).
    SPipe,
    /// Result out of range (ERANGE, 34): a StreamID beyond the stream
    /// table.
    Range,
    /// Value too large (EOVERFLOW, 75).
    Overflow,
    /// Operation not supported (EOPNOTSUPP, 95).
    OpNotSupp,
    /// Timed out (ETIMEDOUT, 110).
    TimedOut,
}

impl Errno {
    /// Every value, in errno order.
    pub const ALL: [Errno; 16] = [
        Errno::Perm,
        Errno::NoEnt,
        Errno::Io,
        Errno::TooBig,
        Errno::NoMem,
        Errno::Fault,
        Errno::Busy,
        Errno::Exist,
        Errno::NoDev,
        Errno::Inval,
        Errno::NoSpc,
        Errno::SPipe,
        Errno::Range,
        Errno::Overflow,
        Errno::OpNotSupp,
        Errno::TimedOut,
    ];

    /// The Linux errno number.
    pub const fn code(self) -> i32 {
        match self {
            Errno::Perm => 1,
            Errno::NoEnt => 2,
            Errno::Io => 5,
            Errno::TooBig => 7,
            Errno::NoMem => 12,
            Errno::Fault => 14,
            Errno::Busy => 16,
            Errno::Exist => 17,
            Errno::NoDev => 19,
            Errno::Inval => 22,
            Errno::NoSpc => 28,
            Errno::SPipe => 29,
            Errno::Range => 34,
            Errno::Overflow => 75,
            Errno::OpNotSupp => 95,
            Errno::TimedOut => 110,
        }
    }

    /// The symbolic name.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::Perm => "EPERM",
            Errno::NoEnt => "ENOENT",
            Errno::Io => "EIO",
            Errno::TooBig => "E2BIG",
            Errno::NoMem => "ENOMEM",
            Errno::Fault => "EFAULT",
            Errno::Busy => "EBUSY",
            Errno::Exist => "EEXIST",
            Errno::NoDev => "ENODEV",
            Errno::Inval => "EINVAL",
            Errno::NoSpc => "ENOSPC",
            Errno::SPipe => "ESPIPE",
            Errno::Range => "ERANGE",
            Errno::Overflow => "EOVERFLOW",
            Errno::OpNotSupp => "EOPNOTSUPP",
            Errno::TimedOut => "ETIMEDOUT",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl std::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_linux_numbering() {
        assert_eq!((Errno::Busy.code(), Errno::NoSpc.code(), Errno::Overflow.code()), (16, 28, 75));
        assert_eq!(Errno::Inval.to_string(), "EINVAL (22)");
    }
}
