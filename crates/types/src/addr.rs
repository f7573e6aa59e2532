//! Address newtypes. Raw `u64` addresses never appear in public signatures of
//! the model crates: an IOVA, a guest-physical and a host-physical address are
//! different types, so swapping two arguments does not compile.

use core::fmt;

use crate::PageSize;

macro_rules! address {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// The zero address.
            pub const ZERO: Self = Self(0);

            /// Wraps a raw 64-bit value. Every 64-bit value is a valid address
            /// of this kind; width limits are checked where the architecture
            /// checks them (walkers, context entries), not here.
            #[inline]
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }

            /// The raw 64-bit value.
            #[inline]
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// The address rounded down to a multiple of `size`.
            #[inline]
            pub const fn align_down(self, size: PageSize) -> Self {
                Self(self.0 & !(size.bytes() - 1))
            }

            /// The offset of this address inside its `size` page.
            #[inline]
            pub const fn page_offset(self, size: PageSize) -> u64 {
                self.0 & (size.bytes() - 1)
            }

            /// `self + delta`, or `None` on overflow.
            #[inline]
            pub const fn checked_add(self, delta: u64) -> Option<Self> {
                match self.0.checked_add(delta) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self + delta`, wrapping at 2^64 (used only where the spec
            /// itself computes modulo 2^64, e.g. table index arithmetic).
            #[inline]
            pub const fn wrapping_add(self, delta: u64) -> Self {
                Self(self.0.wrapping_add(delta))
            }

            /// Whether the address fits in `bits` bits.
            #[inline]
            pub const fn fits_in(self, bits: u32) -> bool {
                bits >= 64 || self.0 >> bits == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#018x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address! {
    /// Input address of a DMA request: an I/O virtual address, or under SVA a
    /// process virtual address. VT-d calls it the request address.
    Iova
}
address! {
    /// Intermediate address: the output of a first stage and the input of a
    /// second stage (guest-physical under virtualization).
    Gpa
}
address! {
    /// Output address: what the IOMMU's own memory port accesses. For a model
    /// instantiated as a vIOMMU this is the guest's physical address space.
    Hpa
}

impl Iova {
    /// Reinterprets an input address as an intermediate one (identity /
    /// pass-through translation).
    #[inline]
    pub const fn as_gpa(self) -> Gpa {
        Gpa(self.0)
    }
}

impl Gpa {
    /// Reinterprets an intermediate address as an output one (no second stage).
    #[inline]
    pub const fn as_hpa(self) -> Hpa {
        Hpa(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_down_clears_offset_bits() {
        assert_eq!(Iova::new(0x1234_5678).align_down(PageSize::Size4K), Iova::new(0x1234_5000));
        assert_eq!(Iova::new(0x1234_5678).align_down(PageSize::Size2M), Iova::new(0x1220_0000));
    }

    #[test]
    fn checked_add_reports_overflow() {
        assert_eq!(Hpa::new(u64::MAX).checked_add(1), None);
    }

    #[test]
    fn display_is_hex() {
        assert_eq!(Gpa::new(0x1000).to_string(), "0x1000");
        assert_eq!(format!("{:?}", Hpa::new(0x1000)), "Hpa(0x0000000000001000)");
    }
}
