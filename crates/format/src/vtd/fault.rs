//! Fault reasons (VT-d §7.1.3, legacy and scalable-mode non-recoverable
//! fault conditions) and the fault recording register (VT-d §11.4.14).

use core::fmt;

use iommu_types::{Iova, Pasid, SourceId};

macro_rules! open_enum {
    (
        $(#[$m:meta])* pub enum $name:ident : $ty:ty {
            $( $(#[$vm:meta])* $var:ident = $val:literal, )*
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            /// A code this model does not name.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(v: $ty) -> Self {
                match v {
                    $( $val => Self::$var, )*
                    other => Self::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(v: $name) -> $ty {
                match v {
                    $( $name::$var => $val, )*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

open_enum! {
    /// Fault reason codes, VT-d §7.1.3. Legacy-mode codes are 0x01–0x0E,
    /// scalable-mode codes 0x30–0x90. Names follow the spec's condition
    /// descriptions.
    pub enum FaultReason: u8 {
        /// 0x01: root entry not present (legacy).
        RootNotPresent = 0x01,
        /// 0x02: context entry not present (legacy).
        ContextNotPresent = 0x02,
        /// 0x03: invalid context entry programming: TT, AW, or an unreadable
        /// second-stage root (legacy).
        ContextInvalid = 0x03,
        /// 0x04: input address above the context's AGAW / MGAW (legacy).
        AddressBeyondAgaw = 0x04,
        /// 0x05: write to a page without write permission (legacy).
        WriteDenied = 0x05,
        /// 0x06: read from a page without read permission (legacy).
        ReadDenied = 0x06,
        /// 0x07: error fetching a second-stage paging entry (legacy).
        SsEntryFetch = 0x07,
        /// 0x08: error fetching the root entry (legacy).
        RootFetch = 0x08,
        /// 0x09: error fetching the context entry (legacy).
        ContextFetch = 0x09,
        /// 0x0A: reserved bit set in a root entry (legacy).
        RootReserved = 0x0A,
        /// 0x0B: reserved bit set in a context entry (legacy).
        ContextReserved = 0x0B,
        /// 0x0C: reserved bit set in a second-stage paging entry (legacy).
        SsEntryReserved = 0x0C,
        /// 0x0D: request blocked by the context's translation type (legacy).
        TranslationTypeBlocked = 0x0D,
        /// 0x0E: output address in the interrupt range 0xFEEx_xxxx (legacy).
        InterruptAddress = 0x0E,
        /// 0x30: invalid root table address / mode (scalable).
        SmRootTableInvalid = 0x30,
        /// 0x31: request with PASID while TTM is legacy.
        LegacyModePasidRequest = 0x31,
        /// 0x32: page request while TTM is legacy.
        LegacyModePageRequest = 0x32,
        /// 0x38: error fetching the root entry (scalable).
        SmRootFetch = 0x38,
        /// 0x39: root entry half not present (scalable).
        SmRootNotPresent = 0x39,
        /// 0x3A: reserved bit set in a root entry (scalable).
        SmRootReserved = 0x3A,
        /// 0x40: error fetching the context entry (scalable).
        SmContextFetch = 0x40,
        /// 0x41: context entry not present (scalable).
        SmContextNotPresent = 0x41,
        /// 0x42: reserved bit set in a context entry (scalable).
        SmContextReserved = 0x42,
        /// 0x43: invalid context entry programming (scalable).
        SmContextInvalid = 0x43,
        /// 0x44: translation request with DTE clear.
        SmDteClear = 0x44,
        /// 0x45: request with PASID with PASIDE clear.
        SmPasidDisabled = 0x45,
        /// 0x46: PASID beyond the directory size the context's PDTS declares.
        SmPasidTooLarge = 0x46,
        /// 0x47: page request with PRE clear.
        SmPreClear = 0x47,
        /// 0x48: RID_PASID programmed without ECAP.RPS.
        SmRidPasidInvalid = 0x48,
        /// 0x50: error fetching the PASID directory entry.
        PasidDirFetch = 0x50,
        /// 0x51: PASID directory entry not present.
        PasidDirNotPresent = 0x51,
        /// 0x52: reserved bit set in a PASID directory entry.
        PasidDirReserved = 0x52,
        /// 0x58: error fetching the PASID table entry.
        PasidEntryFetch = 0x58,
        /// 0x59: PASID table entry not present.
        PasidEntryNotPresent = 0x59,
        /// 0x5A: reserved bit set in a PASID table entry.
        PasidEntryReserved = 0x5A,
        /// 0x5B: invalid PASID table entry programming (PGTT, AW, FSPM, ...).
        PasidEntryInvalid = 0x5B,
        /// 0x5C: execute request with ERE clear.
        EreClear = 0x5C,
        /// 0x5D: supervisor request with SRE clear.
        SreClear = 0x5D,
        /// 0x70: error fetching a first-stage paging entry.
        FsEntryFetch = 0x70,
        /// 0x71: first-stage paging entry not present.
        FsEntryNotPresent = 0x71,
        /// 0x72: reserved bit set in a first-stage paging entry.
        FsEntryReserved = 0x72,
        /// 0x73: error fetching the first-stage root (FSPTPTR).
        FsRootFetch = 0x73,
        /// 0x78: error fetching a second-stage paging entry (scalable).
        SmSsEntryFetch = 0x78,
        /// 0x79: second-stage permission fault while fetching a first-stage
        /// table in nested translation.
        SsNestedPermission = 0x79,
        /// 0x7A: reserved bit set in a second-stage paging entry (scalable).
        SmSsEntryReserved = 0x7A,
        /// 0x7B: error fetching the second-stage root (SSPTPTR).
        SsRootFetch = 0x7B,
        /// 0x80: input address not canonical for the first-stage paging mode.
        FsNonCanonical = 0x80,
        /// 0x81: user request to a supervisor page (U/S clear).
        FsUserDenied = 0x81,
        /// 0x82: execute request to a page with XD set.
        ExecuteDenied = 0x82,
        /// 0x83: input address beyond the second stage's address width (scalable).
        SmAddressBeyondAgaw = 0x83,
        /// 0x84: intermediate address beyond the second stage's width (nested).
        SsAddressBeyond = 0x84,
        /// 0x85: write without write permission (scalable).
        SmWriteDenied = 0x85,
        /// 0x86: read without read permission (scalable).
        SmReadDenied = 0x86,
        /// 0x87: output address in the interrupt range (scalable).
        SmInterruptAddress = 0x87,
        /// 0x90: first-stage A/D update failed.
        FsAdUpdate = 0x90,
    }
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} ({:?})", u8::from(*self), self)
    }
}

crate::layout! {
    /// Fault recording register, VT-d §11.4.14. 128 bits.
    ///
    /// ```text
    ///  127 126 125:124 123:104 103:96 95 94  93   92  79:64   63:12
    /// +---+---+-------+-------+------+--+---+----+--+-------+--------+
    /// | F |T1 |  AT   |  PV   |  FR  |PP|EXE|PRIV|T2|  SID  |   FI   |
    /// +---+---+-------+-------+------+--+---+----+--+-------+--------+
    /// ```
    pub struct FaultRecord([u64; 2]);
    /// Fault information: the page address of the faulting request.
    FI: 63, 12;
    /// Source-id of the faulting request.
    SID: 79, 64;
    /// Type bit 2: with T1, distinguishes atomics.
    T2: 92, 92;
    /// Privilege-mode requested.
    PRIV: 93, 93;
    /// Execute requested.
    EXE: 94, 94;
    /// PASID present.
    PP: 95, 95;
    /// Fault reason.
    FR: 103, 96;
    /// PASID value.
    PV: 123, 104;
    /// Address type of the request.
    AT: 125, 124;
    /// Type bit 1: 0 = write, 1 = read.
    T1: 126, 126;
    /// Fault: the record is valid (RW1C).
    F: 127, 127;
}

/// Whether a faulting request was a read or a write (T1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultAccess {
    /// T1=1.
    Read,
    /// T1=0.
    Write,
}

/// A decoded fault record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultInfo {
    /// Fault reason.
    pub reason: FaultReason,
    /// Requester.
    pub source_id: SourceId,
    /// Page address of the request.
    pub addr: Iova,
    /// Read or write.
    pub access: FaultAccess,
    /// PASID, when the request carried one.
    pub pasid: Option<Pasid>,
    /// Privilege-mode requested.
    pub privileged: bool,
    /// Execute requested.
    pub exec: bool,
}

impl FaultInfo {
    /// Encodes a valid (F=1) record.
    pub fn encode(&self) -> FaultRecord {
        FaultRecord::default()
            .with_in_place(FaultRecord::FI, self.addr.raw())
            .with(FaultRecord::SID, self.source_id.raw() as u64)
            .with(FaultRecord::PRIV, self.privileged as u64)
            .with(FaultRecord::EXE, self.exec as u64)
            .with(FaultRecord::PP, self.pasid.is_some() as u64)
            .with(FaultRecord::FR, u8::from(self.reason) as u64)
            .with(FaultRecord::PV, self.pasid.map_or(0, |p| p.raw() as u64))
            .with(FaultRecord::T1, (self.access == FaultAccess::Read) as u64)
            .with(FaultRecord::F, 1)
    }
}

impl FaultRecord {
    /// Whether the record holds a fault (F).
    pub const fn valid(&self) -> bool {
        self.get(Self::F) != 0
    }

    /// Decodes a valid record; `None` when F is clear.
    pub fn decode(&self) -> Option<FaultInfo> {
        if !self.valid() {
            return None;
        }
        Some(FaultInfo {
            reason: FaultReason::from(self.get(Self::FR) as u8),
            source_id: SourceId::new(self.get(Self::SID) as u16),
            addr: Iova::new(self.get_in_place(Self::FI)),
            access: if self.get(Self::T1) != 0 { FaultAccess::Read } else { FaultAccess::Write },
            pasid: (self.get(Self::PP) != 0).then(|| Pasid::new_truncate(self.get(Self::PV))),
            privileged: self.get(Self::PRIV) != 0,
            exec: self.get(Self::EXE) != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reason_codes_round_trip_and_unknown_is_kept() {
        assert_eq!(FaultReason::from(0x5B), FaultReason::PasidEntryInvalid);
        assert_eq!(u8::from(FaultReason::SmInterruptAddress), 0x87);
        assert_eq!(FaultReason::from(0xEE), FaultReason::Unknown(0xEE));
        assert_eq!(u8::from(FaultReason::Unknown(0xEE)), 0xEE);
    }

    /// Golden bytes, VT-d §11.4.14: F (127), T1=read (126), FR=0x86
    /// (103:96), SID=0x0008 (79:64), FI=0x7000, PP clear.
    #[test]
    fn fault_record_golden_words() {
        let info = FaultInfo {
            reason: FaultReason::SmReadDenied,
            source_id: SourceId::new(0x8),
            addr: Iova::new(0x7000),
            access: FaultAccess::Read,
            pasid: None,
            privileged: false,
            exec: false,
        };
        let words = [0x7000, 1 << 63 | 1 << 62 | 0x86 << 32 | 0x8];
        assert_eq!(info.encode().words(), words);
        assert_eq!(FaultRecord::from_words(words).decode(), Some(info));
    }

    #[test]
    fn record_with_f_clear_decodes_to_none() {
        assert_eq!(FaultRecord::from_words([0x7000, 0x86 << 32]).decode(), None);
    }

    proptest! {
        #[test]
        fn fault_info_round_trips(reason: u8, sid: u16, page in 0u64..(1 << 52), read: bool, pasid in proptest::option::of(0u32..(1 << 20)), priv_: bool, exec: bool) {
            let info = FaultInfo {
                reason: FaultReason::from(reason),
                source_id: SourceId::new(sid),
                addr: Iova::new(page << 12),
                access: if read { FaultAccess::Read } else { FaultAccess::Write },
                pasid: pasid.map(Pasid::new),
                privileged: priv_,
                exec,
            };
            prop_assert_eq!(info.encode().decode(), Some(info));
        }
    }
}
