//! Root and context entry lookup for a source-id, VT-d §3.4.2 (legacy) and
//! §3.4.3 (scalable mode).

use iommu_format::vtd::context::{
    agaw_levels, ContextDecodeError, ContextEntry, ContextRepr, ScalableContextEntry, ScalableContextRepr,
    TranslationType,
};
use iommu_format::vtd::fault::FaultReason as R;
use iommu_format::vtd::regs::{Caps, Ecap, TableMode};
use iommu_format::vtd::root::{RootEntry, ScalableRootEntry};
use iommu_types::{Hpa, PhysMem, SourceId};

use super::LookupFault;

/// A present, valid context entry of either format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// Legacy mode.
    Legacy(ContextRepr),
    /// Scalable mode.
    Scalable(ScalableContextRepr),
}

fn read_words<M: PhysMem + ?Sized, const N: usize>(mem: &M, addr: Hpa) -> Option<[u64; N]> {
    let mut w = [0u64; N];
    for (i, slot) in w.iter_mut().enumerate() {
        *slot = mem.read_u64(addr.wrapping_add(8 * i as u64)).ok()?;
    }
    Some(w)
}

/// Looks up the context entry of `sid` in the root table at `rta`.
///
/// Legacy mode checks (VT-d §3.4.2, §9.1, §9.3): root entry readable (0x8),
/// present (0x1), reserved-clean (0xA); context entry readable (0x9),
/// present (0x2), reserved-clean (0xB); TT not reserved and supported by
/// ECAP.DT / ECAP.PT, AW supported by CAP.SAGAW (0x3).
///
/// Scalable mode (VT-d §3.4.3, §9.2, §9.4): root 0x38/0x39/0x3A; context
/// 0x40/0x41/0x42; a non-zero RID_PASID without ECAP.RPS is 0x48.
///
/// # Errors
/// The fault. A non-present context entry with FPD set qualifies its own
/// fault (FPD is evaluated whatever P says); the other root- and
/// context-level faults are always recorded.
pub fn lookup<M: PhysMem + ?Sized>(
    mem: &M,
    rta: Hpa,
    mode: TableMode,
    sid: SourceId,
    caps: &Caps,
) -> Result<Context, LookupFault> {
    let fault = |r| Err(LookupFault::new(r, false));
    let root_addr = rta.wrapping_add(16 * sid.bus() as u64);
    match mode {
        TableMode::Legacy => {
            let Some(w) = read_words::<M, 2>(mem, root_addr) else { return fault(R::RootFetch) };
            let root = RootEntry(w);
            if !root.present() {
                return fault(R::RootNotPresent);
            }
            if root.has_reserved_bits() {
                return fault(R::RootReserved);
            }
            let ce_addr = root.ctp().wrapping_add(16 * sid.devfn() as u64);
            let Some(w) = read_words::<M, 2>(mem, ce_addr) else { return fault(R::ContextFetch) };
            let ce = ContextEntry(w);
            // FPD is evaluated whatever P says (VT-d §9.3).
            let fpd = ce.get(ContextEntry::FPD) != 0;
            let ctx = match ce.decode() {
                Ok(c) => c,
                Err(ContextDecodeError::NotPresent) => return Err(LookupFault::new(R::ContextNotPresent, fpd)),
                Err(ContextDecodeError::Reserved) => return fault(R::ContextReserved),
                Err(ContextDecodeError::ReservedTt) => return fault(R::ContextInvalid),
            };
            let tt_ok = match ctx.tt {
                TranslationType::Untranslated => true,
                TranslationType::DeviceTlb => caps.ecap_has(Ecap::DT),
                TranslationType::PassThrough => caps.ecap_has(Ecap::PT),
                TranslationType::Reserved => false,
            };
            let aw_ok = ctx.tt == TranslationType::PassThrough
                || agaw_levels(ctx.aw as u64).is_some_and(|l| caps.sagaw_supports(l));
            if !tt_ok || !aw_ok {
                return fault(R::ContextInvalid);
            }
            Ok(Context::Legacy(ctx))
        }
        TableMode::Scalable => {
            let Some(w) = read_words::<M, 2>(mem, root_addr) else { return fault(R::SmRootFetch) };
            let root = ScalableRootEntry(w);
            let (present, ctp) = root.half_for(sid.devfn());
            if !present {
                return fault(R::SmRootNotPresent);
            }
            if root.has_reserved_bits() {
                return fault(R::SmRootReserved);
            }
            let ce_addr = ctp.wrapping_add(32 * (sid.devfn() & 0x7F) as u64);
            let Some(w) = read_words::<M, 4>(mem, ce_addr) else { return fault(R::SmContextFetch) };
            let ce = ScalableContextEntry(w);
            let fpd = ce.get(ScalableContextEntry::FPD) != 0;
            let ctx = match ce.decode() {
                Ok(c) => c,
                Err(ContextDecodeError::NotPresent) => return Err(LookupFault::new(R::SmContextNotPresent, fpd)),
                Err(_) => return fault(R::SmContextReserved),
            };
            if ctx.rid_pasid.raw() != 0 && !caps.ecap_has(Ecap::RPS) {
                return fault(R::SmRidPasidInvalid);
            }
            Ok(Context::Scalable(ctx))
        }
        TableMode::AbortDma | TableMode::Reserved => fault(R::SmRootTableInvalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_format::vtd::regs::Cap;
    use iommu_types::{DomainId, PagedMemory};

    const RT: u64 = 0x10_0000;
    const CT: u64 = 0x10_1000;

    fn caps() -> Caps {
        Caps::new(Cap::default().with(Cap::SAGAW, 0b0110).0[0], Ecap::default().with(Ecap::PT, 1).0[0])
    }

    fn legacy_mem(ctx: ContextEntry) -> PagedMemory {
        let m = PagedMemory::new(1 << 24);
        m.write(Hpa::new(RT), &RootEntry::new_present(Hpa::new(CT)).to_bytes()).unwrap();
        m.write(Hpa::new(CT + 16 * 8), &ctx.to_bytes()).unwrap();
        m
    }

    fn sid() -> SourceId {
        SourceId::from_bdf(0, 1, 0)
    }

    #[test]
    fn legacy_lookup_returns_decoded_entry() {
        let repr = ContextRepr {
            fpd: false,
            tt: TranslationType::Untranslated,
            slptptr: Hpa::new(0x20_0000),
            aw: 2,
            did: DomainId::new(7),
        };
        let m = legacy_mem(repr.encode());
        assert_eq!(lookup(&m, Hpa::new(RT), TableMode::Legacy, sid(), &caps()), Ok(Context::Legacy(repr)));
    }

    /// VT-d §9.3: TT=01b needs ECAP.DT; fault 0x3.
    #[test]
    fn legacy_device_tlb_tt_without_dt_is_invalid_context() {
        let e = ContextEntry::default().with(ContextEntry::P, 1).with(ContextEntry::TT, 1).with(ContextEntry::AW, 1);
        let m = legacy_mem(e);
        let r = lookup(&m, Hpa::new(RT), TableMode::Legacy, sid(), &caps());
        assert_eq!(r, Err(LookupFault::new(R::ContextInvalid, false)));
    }

    #[test]
    fn legacy_root_not_present_faults_0x1() {
        let m = PagedMemory::new(1 << 24);
        let r = lookup(&m, Hpa::new(RT), TableMode::Legacy, sid(), &caps());
        assert_eq!(r.unwrap_err().reason, R::RootNotPresent);
    }

    #[test]
    fn unbacked_root_table_faults_root_fetch() {
        let m = PagedMemory::new(1 << 20);
        let r = lookup(&m, Hpa::new(1 << 30), TableMode::Scalable, sid(), &caps());
        assert_eq!(r.unwrap_err().reason, R::SmRootFetch);
    }

    #[test]
    fn scalable_upper_half_is_used_for_devfn_0x80() {
        let m = PagedMemory::new(1 << 24);
        m.write(Hpa::new(RT), &ScalableRootEntry::new(None, Some(Hpa::new(CT))).to_bytes()).unwrap();
        let ctx = ScalableContextEntry::default().with(ScalableContextEntry::P, 1);
        m.write(Hpa::new(CT), &ctx.to_bytes()).unwrap();
        let r = lookup(&m, Hpa::new(RT), TableMode::Scalable, SourceId::new(0x80), &caps());
        assert!(matches!(r, Ok(Context::Scalable(_))));
        let r = lookup(&m, Hpa::new(RT), TableMode::Scalable, SourceId::new(0x00), &caps());
        assert_eq!(r.unwrap_err().reason, R::SmRootNotPresent);
    }
}
