//! Identifier newtypes with their architectural widths checked.

use core::fmt;

/// An identifier did not fit its architectural width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A PASID wider than 20 bits.
    #[error("pasid {0:#x} does not fit in 20 bits")]
    PasidTooWide(u32),
    /// A StreamID or SubstreamID wider than 32/20 bits.
    #[error("{what} {value:#x} does not fit in {bits} bits")]
    TooWide {
        /// Which identifier.
        what: &'static str,
        /// The rejected value.
        value: u64,
        /// The width it must fit.
        bits: u32,
    },
}

/// Process Address Space ID: 20 bits (the PCIe PASID TLP prefix; VT-d §3.4.4).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Pasid(u32);

impl Pasid {
    /// Number of bits in a PASID.
    pub const BITS: u32 = 20;
    /// The largest PASID value, 2^20 − 1.
    pub const MAX: Pasid = Pasid((1 << Self::BITS) - 1);
    /// PASID 0, which Linux reserves for requests without PASID (`IOMMU_NO_PASID`).
    pub const ZERO: Pasid = Pasid(0);

    /// # Panics
    /// Panics if `v` does not fit in 20 bits; use [`Pasid::try_new`] for
    /// untrusted input.
    pub const fn new(v: u32) -> Self {
        assert!(v >> Self::BITS == 0, "pasid wider than 20 bits");
        Self(v)
    }

    /// Checked constructor.
    ///
    /// # Errors
    /// [`IdError::PasidTooWide`] if `v` does not fit in 20 bits.
    pub const fn try_new(v: u32) -> Result<Self, IdError> {
        if v >> Self::BITS == 0 {
            Ok(Self(v))
        } else {
            Err(IdError::PasidTooWide(v))
        }
    }

    /// Keeps the low 20 bits, as hardware does when it extracts the field.
    pub const fn new_truncate(v: u64) -> Self {
        Self((v & ((1 << Self::BITS) - 1)) as u32)
    }

    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Pasid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pasid({:#x})", self.0)
    }
}

impl fmt::Display for Pasid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// PCI requester ID: bus[15:8], device[7:3], function[2:0] (VT-d §3.4.1 source-id).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct SourceId(u16);

impl SourceId {
    /// Wraps a raw 16-bit requester ID; every value is legal.
    pub const fn new(raw: u16) -> Self {
        Self(raw)
    }

    /// Builds a requester ID from bus, device (0..32) and function (0..8).
    ///
    /// # Panics
    /// Panics if `dev >= 32` or `func >= 8`.
    pub const fn from_bdf(bus: u8, dev: u8, func: u8) -> Self {
        assert!(dev < 32 && func < 8, "device or function out of range");
        Self((bus as u16) << 8 | (dev as u16) << 3 | func as u16)
    }

    /// The raw 16-bit value.
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// Bus number (bits 15:8).
    pub const fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Device and function (bits 7:0).
    pub const fn devfn(self) -> u8 {
        self.0 as u8
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceId({:02x}:{:02x}.{})", self.bus(), self.devfn() >> 3, self.devfn() & 7)
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus(), self.devfn() >> 3, self.devfn() & 7)
    }
}

/// Domain identifier tagging cached translations (VT-d DID, 16 bits at most;
/// the implemented width comes from CAP.ND).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct DomainId(u16);

impl DomainId {
    /// Wraps a raw domain ID; every 16-bit value is representable.
    pub const fn new(raw: u16) -> Self {
        Self(raw)
    }
    /// The raw value.
    pub const fn raw(self) -> u16 {
        self.0
    }
}

impl fmt::Debug for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainId({:#x})", self.0)
    }
}

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// SMMUv3 StreamID (up to 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct StreamId(pub u32);

/// SMMUv3 SubstreamID (up to 20 bits, the PCIe PASID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct SubstreamId(u32);

impl SubstreamId {
    /// Checked constructor.
    ///
    /// # Errors
    /// [`IdError::TooWide`] if `v` does not fit in 20 bits.
    pub const fn try_new(v: u32) -> Result<Self, IdError> {
        if v >> 20 == 0 {
            Ok(Self(v))
        } else {
            Err(IdError::TooWide { what: "substreamid", value: v as u64, bits: 20 })
        }
    }
    /// The raw value.
    pub const fn raw(self) -> u32 {
        self.0
    }
}

impl From<Pasid> for SubstreamId {
    fn from(p: Pasid) -> Self {
        Self(p.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasid_try_new_rejects_21_bits() {
        assert_eq!(Pasid::try_new(1 << 20), Err(IdError::PasidTooWide(1 << 20)));
    }

    #[test]
    fn pasid_new_truncate_keeps_low_20_bits() {
        assert_eq!(Pasid::new_truncate(0xFFF_FFFF), Pasid::MAX);
    }

    #[test]
    #[should_panic(expected = "pasid wider than 20 bits")]
    fn pasid_new_panics_on_21_bits() {
        let _ = Pasid::new(1 << 20);
    }

    #[test]
    fn source_id_splits_bus_devfn() {
        let sid = SourceId::from_bdf(0x12, 1, 3);
        assert_eq!((sid.bus(), sid.devfn(), sid.raw()), (0x12, 0x0b, 0x120b));
        assert_eq!(sid.to_string(), "12:01.3");
    }
}
