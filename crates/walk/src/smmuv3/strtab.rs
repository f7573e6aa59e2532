//! StreamID → STE (SMMUv3 §3.3.1, §5.1, §6.3.24 STRTAB_BASE_CFG).

use iommu_format::smmuv3::regs::{effective_split, StrtabFmt};
use iommu_format::smmuv3::ste::{L1Std, Ste};
use iommu_types::{Hpa, PhysMem, StreamId};

use super::ConfigFault;

/// The stream table as STRTAB_BASE and STRTAB_BASE_CFG describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StrtabCfg {
    /// Table base (STRTAB_BASE.ADDR).
    pub base: u64,
    /// log2 of the number of StreamIDs covered, already capped to IDR1.SIDSIZE.
    pub log2size: u32,
    /// `Some(split)` for a 2-level table: StreamID bits below `split`
    /// index the level-2 array. Reserved SPLIT values are passed as 6.
    pub split: Option<u32>,
}

impl StrtabCfg {
    /// Decodes STRTAB_BASE_CFG (FMT 17:16, SPLIT 10:6, LOG2SIZE 5:0) with
    /// the implementation's SIDSIZE and 2-level support (SMMUv3 §6.3.24):
    /// LOG2SIZE above SIDSIZE is treated as SIDSIZE; a SPLIT other than 6,
    /// 8 or 10 behaves as 6; FMT values other than 0b01 are linear.
    pub fn decode(base: u64, cfg: u64, sid_bits: u32, two_level: bool) -> Self {
        let log2size = ((cfg & 0x3F) as u32).min(sid_bits);
        let fmt2 = two_level && StrtabFmt::effective(cfg >> 16) == StrtabFmt::TwoLevel;
        Self { base, log2size, split: fmt2.then_some(effective_split(cfg >> 6)) }
    }
}

/// Finds the STE address for `sid`, reading the level-1 descriptor of a
/// 2-level table. Counts memory references in `refs`.
///
/// # Errors
/// [`ConfigFault::BadStreamId`] when the StreamID is outside the table
/// (beyond LOG2SIZE, an L1STD with Span 0 or too small a Span);
/// [`ConfigFault::SteFetch`] when the L1STD read aborts.
pub fn ste_address<M: PhysMem + ?Sized>(
    mem: &M,
    t: &StrtabCfg,
    sid: StreamId,
    refs: &mut u32,
) -> Result<u64, ConfigFault> {
    let sid = sid.0 as u64;
    if t.log2size < 32 && sid >> t.log2size != 0 {
        return Err(ConfigFault::BadStreamId);
    }
    let Some(split) = t.split else {
        return Ok(t.base.wrapping_add(sid * 64));
    };
    let l1_addr = (t.base & !7).wrapping_add((sid >> split) * 8);
    *refs += 1;
    let l1 =
        L1Std::from_words([mem.read_u64(Hpa::new(l1_addr)).map_err(|_| ConfigFault::SteFetch { addr: l1_addr })?]);
    let span = l1.get(L1Std::SPAN) as u32;
    // Span 0 is an invalid descriptor; spans above SPLIT+1 are reserved
    // and treated the same. Span n covers 2^(n-1) STEs.
    if span == 0 || span > split + 1 {
        return Err(ConfigFault::BadStreamId);
    }
    let low = sid & ((1 << split) - 1);
    if low >> (span - 1) != 0 {
        return Err(ConfigFault::BadStreamId);
    }
    Ok(l1.get_in_place(L1Std::L2PTR).wrapping_add(low * 64))
}

/// Reads the 64-byte STE at `addr`.
///
/// # Errors
/// [`ConfigFault::SteFetch`] when the read aborts.
pub fn fetch_ste<M: PhysMem + ?Sized>(mem: &M, addr: u64, refs: &mut u32) -> Result<Ste, ConfigFault> {
    let mut b = [0u8; 64];
    *refs += 1;
    mem.read(Hpa::new(addr), &mut b).map_err(|_| ConfigFault::SteFetch { addr })?;
    Ok(Ste::from_bytes(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_types::PagedMemory;

    #[test]
    fn linear_table_indexes_by_streamid() {
        let m = PagedMemory::new(1 << 20);
        let t = StrtabCfg::decode(0x1000, 5, 16, true);
        assert_eq!(ste_address(&m, &t, StreamId(3), &mut 0), Ok(0x1000 + 3 * 64));
        assert_eq!(ste_address(&m, &t, StreamId(32), &mut 0), Err(ConfigFault::BadStreamId));
    }

    #[test]
    fn log2size_is_capped_to_sidsize() {
        let t = StrtabCfg::decode(0, 20, 16, true);
        assert_eq!(t.log2size, 16);
    }

    #[test]
    fn two_level_span_bounds_the_level2_array() {
        let m = PagedMemory::new(1 << 20);
        m.write_u64(Hpa::new(0x1000 + 8), L1Std::new(0x8000, 3).words()[0]).unwrap();
        let t = StrtabCfg::decode(0x1000, 1 << 16 | 6 << 6 | 8, 16, true);
        // SID 0x43: L1 index 1, low bits 3 < 2^(3-1) = 4.
        assert_eq!(ste_address(&m, &t, StreamId(0x43), &mut 0), Ok(0x8000 + 3 * 64));
        assert_eq!(ste_address(&m, &t, StreamId(0x44), &mut 0), Err(ConfigFault::BadStreamId));
        // L1 index 0 has Span 0.
        assert_eq!(ste_address(&m, &t, StreamId(0x01), &mut 0), Err(ConfigFault::BadStreamId));
    }

    #[test]
    fn reserved_split_behaves_as_six() {
        assert_eq!(StrtabCfg::decode(0, 1 << 16 | 7 << 6 | 8, 16, true).split, Some(6));
        assert_eq!(StrtabCfg::decode(0, 7 << 6 | 8, 16, true).split, None);
    }

    #[test]
    fn unbacked_l1std_is_a_fetch_fault() {
        let m = PagedMemory::new(0x1000);
        let t = StrtabCfg::decode(0x10_0000, 1 << 16 | 6 << 6 | 8, 16, true);
        assert_eq!(ste_address(&m, &t, StreamId(0x48), &mut 0), Err(ConfigFault::SteFetch { addr: 0x10_0008 }));
    }
}
