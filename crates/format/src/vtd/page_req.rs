//! Page request descriptors, VT-d §7.5.1: what the hardware writes into the
//! page request queue when a PRI-capable device asks for a page.

use iommu_types::{Iova, Pasid, SourceId};

crate::layout! {
    /// Page request descriptor, VT-d §7.5.1. 256 bits.
    ///
    /// ```text
    /// qword 0: 53 PMR | 52 EXE | 51:32 PASID | 31:16 RID | 8 PP | 7:0 TYPE
    /// qword 1: 63:12 ADDR | 11:3 PRGI | 2 LPIG | 1 WR | 0 RD
    /// qwords 2-3: private data
    /// ```
    pub struct PageRequestDesc([u64; 4]);
    /// Descriptor type: 1 = page request.
    TYPE: 7, 0;
    /// PASID present.
    PP: 8, 8;
    /// Requester ID.
    RID: 31, 16;
    /// PASID value.
    PASID: 51, 32;
    /// Execute requested.
    EXE: 52, 52;
    /// Privilege-mode requested.
    PMR: 53, 53;
    /// Read requested.
    RD: 64, 64;
    /// Write requested.
    WR: 65, 65;
    /// Last page in group.
    LPIG: 66, 66;
    /// Page request group index.
    PRGI: 75, 67;
    /// Page address.
    ADDR: 127, 76;
    /// Private data, qword 2.
    PRIV0: 191, 128;
    /// Private data, qword 3.
    PRIV1: 255, 192;
}

/// Descriptor type value of a page request.
pub const TYPE_PAGE_REQUEST: u64 = 1;

/// A page request (PCIe Page Request Message as VT-d records it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    /// Requester.
    pub rid: SourceId,
    /// PASID, when the request carried one.
    pub pasid: Option<Pasid>,
    /// Page address (4 KiB aligned).
    pub addr: Iova,
    /// Read access requested.
    pub read: bool,
    /// Write access requested.
    pub write: bool,
    /// Execute requested.
    pub exec: bool,
    /// Privilege-mode requested.
    pub privileged: bool,
    /// Last page in group (a request with LPIG and neither read nor write is a stop marker).
    pub lpig: bool,
    /// Page request group index (9 bits).
    pub prgi: u16,
    /// Private data.
    pub private: [u64; 2],
}

impl PageRequest {
    /// Whether this is a stop marker (LPIG with neither read nor write).
    pub const fn is_stop_marker(&self) -> bool {
        self.lpig && !self.read && !self.write
    }

    /// Encodes the descriptor the hardware writes into the queue.
    pub fn encode(&self) -> PageRequestDesc {
        PageRequestDesc::default()
            .with(PageRequestDesc::TYPE, TYPE_PAGE_REQUEST)
            .with(PageRequestDesc::PP, self.pasid.is_some() as u64)
            .with(PageRequestDesc::RID, self.rid.raw() as u64)
            .with(PageRequestDesc::PASID, self.pasid.map_or(0, |p| p.raw() as u64))
            .with(PageRequestDesc::EXE, self.exec as u64)
            .with(PageRequestDesc::PMR, self.privileged as u64)
            .with(PageRequestDesc::RD, self.read as u64)
            .with(PageRequestDesc::WR, self.write as u64)
            .with(PageRequestDesc::LPIG, self.lpig as u64)
            .with(PageRequestDesc::PRGI, self.prgi as u64)
            .with_in_place(PageRequestDesc::ADDR, self.addr.raw())
            .with(PageRequestDesc::PRIV0, self.private[0])
            .with(PageRequestDesc::PRIV1, self.private[1])
    }
}

impl PageRequestDesc {
    /// Decodes a page request; `None` for another descriptor type.
    pub fn decode(&self) -> Option<PageRequest> {
        if self.get(Self::TYPE) != TYPE_PAGE_REQUEST {
            return None;
        }
        Some(PageRequest {
            rid: SourceId::new(self.get(Self::RID) as u16),
            pasid: (self.get(Self::PP) != 0).then(|| Pasid::new_truncate(self.get(Self::PASID))),
            addr: Iova::new(self.get_in_place(Self::ADDR)),
            read: self.get(Self::RD) != 0,
            write: self.get(Self::WR) != 0,
            exec: self.get(Self::EXE) != 0,
            privileged: self.get(Self::PMR) != 0,
            lpig: self.get(Self::LPIG) != 0,
            prgi: self.get(Self::PRGI) as u16,
            private: [self.get(Self::PRIV0), self.get(Self::PRIV1)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Golden words, VT-d §7.5.1: type 1, PP (bit 8), RID=0x0100 (31:16),
    /// PASID=0x42 (51:32); qword 1: RD (64), LPIG (66), PRGI=3 (75:67),
    /// ADDR=0x7fff_0000 (127:76 = qword 1 bits 63:12).
    #[test]
    fn page_request_golden_words() {
        let r = PageRequest {
            rid: SourceId::new(0x100),
            pasid: Some(Pasid::new(0x42)),
            addr: Iova::new(0x7FFF_0000),
            read: true,
            write: false,
            exec: false,
            privileged: false,
            lpig: true,
            prgi: 3,
            private: [0, 0],
        };
        let words = [0x0000_0042_0100_0101, 0x7FFF_0000 | 3 << 3 | 1 << 2 | 1, 0, 0];
        assert_eq!(r.encode().words(), words);
        assert_eq!(PageRequestDesc::from_words(words).decode(), Some(r));
    }

    #[test]
    fn stop_marker_has_lpig_and_no_access() {
        let w = PageRequestDesc::from_words([1, 1 << 2, 0, 0]).decode().unwrap();
        assert!(w.is_stop_marker());
    }

    proptest! {
        #[test]
        fn any_bits_decode_without_panic(w in proptest::array::uniform4(any::<u64>())) {
            if let Some(r) = PageRequestDesc::from_words(w).decode() {
                prop_assert_eq!(PageRequestDesc::from_words(w).decode(), Some(r));
            }
        }
    }
}
