//! PASID directory and PASID table lookup, VT-d §3.4.3, §9.5, §9.6.

use iommu_format::vtd::context::ScalableContextRepr;
use iommu_format::vtd::fault::FaultReason as R;
use iommu_format::vtd::pasid::{dir_offset, table_offset, PasidDirEntry, PasidEntry, PasidEntryError, PasidEntryRepr};
use iommu_format::vtd::regs::Caps;
use iommu_types::{Pasid, PhysMem};

use super::LookupFault;

/// A PASID entry and the fault-processing-disable state that qualifies the
/// faults of the walk that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PasidLookup {
    /// The decoded entry.
    pub entry: PasidEntryRepr,
    /// FPD of the context entry, the directory entry or the PASID entry.
    pub fpd: bool,
}

/// The PASID entry of `pasid` under a scalable context entry, with the FPD
/// that applies to faults of the walk that follows (context, directory or
/// PASID entry FPD).
///
/// Checks, in order: PASID within the directory size PDTS declares (0x46);
/// directory entry readable (0x50), present (0x51), reserved-clean (0x52);
/// PASID entry readable (0x58), present (0x59), reserved-clean (0x5A), valid
/// for the capabilities (0x5B).
///
/// # Errors
/// The fault, marked qualified-and-suppressed when an FPD read before it was set.
pub fn lookup<M: PhysMem + ?Sized>(
    mem: &M,
    ctx: &ScalableContextRepr,
    pasid: Pasid,
    caps: &Caps,
) -> Result<PasidLookup, LookupFault> {
    let mut fpd = ctx.fpd;
    let dir_entries = 1u64 << (ctx.pdts + 7);
    if (pasid.raw() as u64 >> 6) >= dir_entries {
        return Err(LookupFault::new(R::SmPasidTooLarge, fpd));
    }
    let de_addr = ctx.pasid_dir.wrapping_add(dir_offset(pasid));
    let de = PasidDirEntry([mem.read_u64(de_addr).map_err(|_| LookupFault::new(R::PasidDirFetch, fpd))?]);
    // FPD is evaluated whatever P says (VT-d §9.5, §9.6): software leaves
    // P=0, FPD=1 to block a PASID silently (Linux's mm-exit teardown).
    if !de.present() {
        let fpd = fpd || de.get(PasidDirEntry::FPD) != 0;
        return Err(LookupFault::new(R::PasidDirNotPresent, fpd));
    }
    if de.has_reserved_bits() {
        return Err(LookupFault::new(R::PasidDirReserved, fpd));
    }
    fpd |= de.get(PasidDirEntry::FPD) != 0;
    let pe_addr = de.table().wrapping_add(table_offset(pasid));
    let mut w = [0u64; 8];
    for (i, slot) in w.iter_mut().enumerate() {
        *slot =
            mem.read_u64(pe_addr.wrapping_add(8 * i as u64)).map_err(|_| LookupFault::new(R::PasidEntryFetch, fpd))?;
    }
    let pe = PasidEntry(w);
    // The entry's own FPD qualifies every fault found in it, present or not.
    let fpd_here = fpd || pe.get(PasidEntry::FPD) != 0;
    match pe.decode(caps) {
        Ok(entry) => Ok(PasidLookup { entry, fpd: fpd_here }),
        Err(PasidEntryError::NotPresent) => Err(LookupFault::new(R::PasidEntryNotPresent, fpd_here)),
        Err(PasidEntryError::Reserved) => Err(LookupFault::new(R::PasidEntryReserved, fpd_here)),
        Err(PasidEntryError::Invalid(_)) => Err(LookupFault::new(R::PasidEntryInvalid, fpd_here)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_format::vtd::pasid::PasidConfig;
    use iommu_format::vtd::regs::Ecap;
    use iommu_types::{Hpa, PagedMemory};

    const DIR: u64 = 0x1000;
    const TBL: u64 = 0x2000;

    fn ctx(pdts: u8) -> ScalableContextRepr {
        ScalableContextRepr {
            fpd: false,
            dte: false,
            paside: true,
            pre: false,
            pdts,
            pasid_dir: Hpa::new(DIR),
            rid_pasid: Pasid::ZERO,
            rid_priv: false,
        }
    }

    fn caps() -> Caps {
        Caps::new(0, Ecap::default().with(Ecap::PT, 1).0[0])
    }

    fn mem_with_pt_entry(pasid: Pasid) -> PagedMemory {
        let m = PagedMemory::new(1 << 20);
        m.write_u64(Hpa::new(DIR + dir_offset(pasid)), PasidDirEntry::new_present(Hpa::new(TBL)).0[0]).unwrap();
        let pe = PasidEntry::default().with(PasidEntry::P, 1).with(PasidEntry::PGTT, 4);
        m.write(Hpa::new(TBL + table_offset(pasid)), &pe.to_bytes()).unwrap();
        m
    }

    #[test]
    fn pass_through_entry_is_found() {
        let p = Pasid::new(0x41);
        let r = lookup(&mem_with_pt_entry(p), &ctx(0), p, &caps()).unwrap();
        assert_eq!(r.entry.config, PasidConfig::PassThrough);
    }

    /// VT-d §9.4: PDTS=0 declares 2^7 directory entries; PASID 128·64 is beyond.
    #[test]
    fn pasid_beyond_pdts_faults_0x46() {
        let p = Pasid::new(128 << 6);
        let r = lookup(&mem_with_pt_entry(p), &ctx(0), p, &caps());
        assert_eq!(r.unwrap_err().reason, R::SmPasidTooLarge);
    }

    #[test]
    fn missing_directory_entry_faults_0x51() {
        let m = PagedMemory::new(1 << 20);
        assert_eq!(lookup(&m, &ctx(7), Pasid::new(5), &caps()).unwrap_err().reason, R::PasidDirNotPresent);
    }

    /// VT-d §9.6: FPD is honoured in a non-present entry (mm-exit teardown).
    #[test]
    fn fpd_in_a_non_present_pasid_entry_suppresses_its_fault() {
        let p = Pasid::new(3);
        let m = mem_with_pt_entry(p);
        let pe = PasidEntry::default().with(PasidEntry::FPD, 1);
        m.write(Hpa::new(TBL + table_offset(p)), &pe.to_bytes()).unwrap();
        assert_eq!(lookup(&m, &ctx(0), p, &caps()), Err(LookupFault::new(R::PasidEntryNotPresent, true)));
    }

    #[test]
    fn directory_fpd_qualifies_pasid_entry_not_present() {
        let m = PagedMemory::new(1 << 20);
        let de = PasidDirEntry::new_present(Hpa::new(TBL)).with(PasidDirEntry::FPD, 1);
        m.write_u64(Hpa::new(DIR), de.0[0]).unwrap();
        assert_eq!(lookup(&m, &ctx(0), Pasid::new(1), &caps()), Err(LookupFault::new(R::PasidEntryNotPresent, true)));
    }
}
