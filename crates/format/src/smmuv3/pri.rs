//! PRI queue entries, SMMUv3 §8: the 16-byte record the SMMU writes into the
//! PRI queue for each PCIe Page Request it receives. The record follows the
//! PCIe message closely; it is little-endian.
//!
//! Every bit pattern decodes: the record only reports what the endpoint
//! sent, and nothing in it is reserved-value checked (§8 leaves SubstreamID
//! UNKNOWN without SSV; such a value decodes as no SubstreamID).

use iommu_types::{StreamId, SubstreamId};

crate::layout! {
    /// A raw PRI queue entry, SMMUv3 §8.
    ///
    /// ```text
    /// word 0: 63 SSV | 62 Last | 61 W | 60 R | 59 X | 58 Priv | 51:32 SubstreamID | 31:0 StreamID
    /// word 1: 63:12 Page address[63:12] | 8:0 PRGIndex
    /// ```
    pub struct PriEntry([u64; 2]);
    /// StreamID of the requester (bits 15:0 are the PCIe Requester ID).
    SID: 31, 0;
    /// SubstreamID: the PASID of the request (UNKNOWN unless SSV).
    SSID: 51, 32;
    /// Priv: privileged access requested (0 when SSV is clear).
    PRIV: 58, 58;
    /// X: execute access requested (0 when SSV is clear).
    EXEC: 59, 59;
    /// R: read access requested.
    READ: 60, 60;
    /// W: write access requested.
    WRITE: 61, 61;
    /// Last: last request of its page request group.
    LAST: 62, 62;
    /// SSV: the request carried a PASID.
    SSV: 63, 63;
    /// PRGIndex: the page request group.
    PRGINDEX: 72, 64;
    /// Page address\[63:12\].
    ADDR: 127, 76;
}

/// A page request as the PRI queue records it, SMMUv3 §8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    /// StreamID of the requester.
    pub sid: StreamId,
    /// PASID, when the request carried one (SSV).
    pub ssid: Option<SubstreamId>,
    /// Page address, 4 KiB aligned (bits 11:0 are dropped by `encode`).
    pub addr: u64,
    /// Read access requested.
    pub read: bool,
    /// Write access requested.
    pub write: bool,
    /// Execute access requested.
    pub exec: bool,
    /// Privileged access requested.
    pub privileged: bool,
    /// Last request of the group.
    pub last: bool,
    /// PRGIndex (9 bits).
    pub grpid: u16,
}

impl PageRequest {
    /// Decodes an entry. Infallible: every bit pattern is a record.
    pub fn decode(raw: &PriEntry) -> Self {
        let flag = |f| raw.get(f) != 0;
        PageRequest {
            sid: StreamId(raw.get(PriEntry::SID) as u32),
            ssid: flag(PriEntry::SSV).then(|| SubstreamId::try_new(raw.get(PriEntry::SSID) as u32).unwrap_or_default()),
            addr: raw.get_in_place(PriEntry::ADDR),
            read: flag(PriEntry::READ),
            write: flag(PriEntry::WRITE),
            exec: flag(PriEntry::EXEC),
            privileged: flag(PriEntry::PRIV),
            last: flag(PriEntry::LAST),
            grpid: raw.get(PriEntry::PRGINDEX) as u16,
        }
    }

    /// Encodes the entry the SMMU writes; every other bit is zero.
    pub fn encode(&self) -> PriEntry {
        PriEntry::default()
            .with(PriEntry::SID, self.sid.0 as u64)
            .with(PriEntry::SSV, self.ssid.is_some() as u64)
            .with(PriEntry::SSID, self.ssid.map_or(0, |s| s.raw() as u64))
            .with(PriEntry::PRIV, self.privileged as u64)
            .with(PriEntry::EXEC, self.exec as u64)
            .with(PriEntry::READ, self.read as u64)
            .with(PriEntry::WRITE, self.write as u64)
            .with(PriEntry::LAST, self.last as u64)
            .with(PriEntry::PRGINDEX, self.grpid as u64)
            .with_in_place(PriEntry::ADDR, self.addr)
    }

    /// Whether this is a PCIe Stop Marker, SMMUv3 §8: Last set, no read or
    /// write, and a PASID. Without a PASID the same bits are an ordinary
    /// page request.
    pub const fn is_stop_marker(&self) -> bool {
        self.ssid.is_some() && self.last && !self.read && !self.write
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::check_table;
    use proptest::prelude::*;

    #[test]
    fn table_is_well_formed() {
        check_table(2, PriEntry::FIELDS).unwrap();
        assert_eq!(PriEntry::SIZE, 16);
    }

    /// Golden bytes, §8: StreamID 0x100 (31:0), SubstreamID 0x42 (51:32),
    /// R (60), Last (62), SSV (63); PRGIndex 3 (72:64), page 0x7fff_0000
    /// (127:76). Positions as in Linux's PRIQ_0_*/PRIQ_1_* decode.
    #[test]
    fn page_request_golden_bytes() {
        let r = PageRequest {
            sid: StreamId(0x100),
            ssid: Some(SubstreamId::try_new(0x42).unwrap()),
            addr: 0x7FFF_0000,
            read: true,
            write: false,
            exec: false,
            privileged: false,
            last: true,
            grpid: 3,
        };
        let words = [0xD000_0042_0000_0100, 0x7FFF_0003];
        assert_eq!(r.encode().words(), words);
        let bytes = [0x00, 0x01, 0, 0, 0x42, 0, 0, 0xD0, 0x03, 0, 0xFF, 0x7F, 0, 0, 0, 0];
        assert_eq!(r.encode().to_bytes(), bytes);
        assert_eq!(PageRequest::decode(&PriEntry::from_bytes(&bytes)), r);
        assert!(!r.is_stop_marker());
    }

    /// Write, exec and privileged bits (61, 59, 58) and a 9-bit PRGIndex.
    #[test]
    fn permission_bits_golden() {
        let r = PageRequest {
            sid: StreamId(0xFFFF_FFFF),
            ssid: Some(SubstreamId::try_new(0xF_FFFF).unwrap()),
            addr: 0xFFFF_FFFF_FFFF_F000,
            read: false,
            write: true,
            exec: true,
            privileged: true,
            last: false,
            grpid: 0x1FF,
        };
        assert_eq!(r.encode().words(), [0xAC0F_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_F1FF]);
        assert!(!r.encode().has_reserved_bits());
    }

    /// §8: Last with neither R nor W is a Stop Marker only when a PASID is present.
    #[test]
    fn stop_marker_needs_a_pasid() {
        let with_pasid = PageRequest::decode(&PriEntry([1 << 63 | 1 << 62 | 5 << 32, 0]));
        assert!(with_pasid.is_stop_marker());
        let without = PageRequest::decode(&PriEntry([1 << 62 | 5 << 32, 0]));
        assert_eq!(without.ssid, None);
        assert!(!without.is_stop_marker());
    }

    fn arb_request() -> impl Strategy<Value = PageRequest> {
        (
            any::<u32>(),
            proptest::option::of(0u32..1 << 20),
            any::<u64>(),
            proptest::array::uniform5(any::<bool>()),
            0u16..512,
        )
            .prop_map(|(sid, ssid, a, [read, write, exec, privileged, last], grpid)| PageRequest {
                sid: StreamId(sid),
                ssid: ssid.map(|s| SubstreamId::try_new(s).unwrap()),
                addr: a & !0xFFF,
                read,
                write,
                exec,
                privileged,
                last,
                grpid,
            })
    }

    proptest! {
        #[test]
        fn requests_round_trip(r in arb_request()) {
            let e = r.encode();
            prop_assert!(!e.has_reserved_bits());
            prop_assert_eq!(PageRequest::decode(&e), r);
            prop_assert_eq!(PageRequest::decode(&PriEntry::from_bytes(&e.to_bytes())), r);
        }

        #[test]
        fn any_bits_decode_and_re_encode_stably(w0: u64, w1: u64) {
            let r = PageRequest::decode(&PriEntry([w0, w1]));
            prop_assert_eq!(PageRequest::decode(&r.encode()), r);
            // Re-encoding keeps exactly the defined bits, less an SSID without SSV.
            let mut expect = [w0 & !PriEntry::RESERVED[0], w1 & !PriEntry::RESERVED[1]];
            if w0 >> 63 == 0 {
                expect[0] &= !PriEntry::SSID.mask_in_word();
            }
            prop_assert_eq!(r.encode().words(), expect);
        }
    }
}
