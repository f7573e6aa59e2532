//! Cache audit: model introspection, not an architectural feature.
//!
//! VT-d §6.5 leaves it to software to invalidate every cached translation
//! after it changes a table entry the translation came from; hardware may
//! keep using a stale entry until then. [`VtdUnit::audit_caches`] finds
//! the entries that a correct driver would have invalidated by now: it
//! walks the current tables again for each valid IOTLB and device-TLB entry
//! (through a read-only view of memory, so no accessed or dirty bit
//! changes and no fault is recorded) and reports every entry that maps
//! somewhere else or grants more than the tables do now. A simulator runs
//! it after each step of a scenario, when the OS says its invalidations
//! have completed.

use std::sync::atomic::Ordering;

use iommu_cache::{IotlbEntry, IotlbKey, NO_SPACE};
use iommu_format::vtd::fault::FaultReason;
use iommu_types::{
    Access, Hpa, InterruptSink, Iova, NullInterrupts, PageSize, Pasid, Perm, PhysMem, ReadOnly, SourceId,
};

use super::translate::{Request, TE_BIT};
use super::{VtdConfig, VtdUnit};

/// Which cache held a stale entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditedCache {
    /// The unit's IOTLB.
    Iotlb,
    /// An ATS endpoint's device TLB.
    DeviceTlb,
}

/// What the tables say now about a cached page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Current {
    /// Mapped to `frame` with `perm`.
    Mapped {
        /// Output frame now.
        frame: Hpa,
        /// Permissions now.
        perm: Perm,
    },
    /// The walk faults now with this reason.
    Fault(FaultReason),
}

/// A cached translation that no longer matches the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StaleEntry {
    /// The cache holding it.
    pub cache: AuditedCache,
    /// Requester it serves.
    pub sid: SourceId,
    /// PASID it serves, if any.
    pub pasid: Option<Pasid>,
    /// Input page base.
    pub addr: Iova,
    /// Page size.
    pub size: PageSize,
    /// Cached output frame.
    pub frame: Hpa,
    /// Cached permissions.
    pub perm: Perm,
    /// What a walk gives now.
    pub now: Current,
}

/// The result of an audit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheAudit {
    /// Valid entries checked.
    pub checked: usize,
    /// Entries that disagree with the tables.
    pub stale: Vec<StaleEntry>,
}

/// The access that re-checks a cached entry: the weakest one it allows,
/// in the request class (privileged, execute) it was filled for.
fn probe_access(flags: u8, perm: Perm) -> Access {
    let privileged = flags & 1 != 0;
    let exec = flags & 2 != 0;
    Access { read: perm.read || !perm.write, write: !perm.read && perm.write, exec, privileged }
}

/// Whether `cached` grants a permission `now` does not.
fn grants_more(cached: Perm, now: Perm) -> bool {
    (cached.read && !now.read) || (cached.write && !now.write) || (cached.exec && !now.exec)
}

impl<M: PhysMem, I: InterruptSink> VtdUnit<M, I> {
    /// Re-walks the current tables for every valid IOTLB and device-TLB
    /// entry and returns those that map elsewhere, or grant more, than the
    /// tables do now. Changes nothing: not the caches, not memory, not the
    /// fault log. Costs a walk per cached entry (not for the hot path).
    pub fn audit_caches(&self) -> CacheAudit {
        let active = self.active.load(Ordering::Acquire);
        let mut out = CacheAudit::default();
        if active & TE_BIT == 0 {
            return out;
        }
        // A fresh unit over a read-only view of the same memory, with the
        // same root and mode: its walks see exactly the current tables and
        // none of this unit's cached context or PASID entries.
        let cfg = VtdConfig {
            iotlb: (1, 1),
            context_cache: (1, 1),
            pasid_cache: (1, 1),
            device_tlb: (1, 1),
            notify_invalidations: false,
            ..self.cfg.clone()
        };
        let shadow = VtdUnit::new(cfg, ReadOnly(&self.mem), NullInterrupts);
        shadow.active.store(active, Ordering::Release);
        let mut check = |cache: AuditedCache, key: &IotlbKey, e: &IotlbEntry| {
            out.checked += 1;
            let pasid = (key.space != NO_SPACE).then(|| Pasid::new_truncate(u64::from(key.space)));
            let addr = Iova::new(key.page << key.size.shift());
            let flags = if cache == AuditedCache::Iotlb { key.flags } else { 0 };
            let req = Request { sid: SourceId::new(key.source), pasid, addr, access: probe_access(flags, e.perm) };
            let now = match shadow.resolve(&req, active) {
                Ok(t) => Current::Mapped { frame: Hpa::new(t.addr.raw() & !(key.size.bytes() - 1)), perm: t.perm },
                Err((reason, _)) => Current::Fault(reason),
            };
            let stale = match now {
                Current::Mapped { frame, perm } => frame != e.frame || grants_more(e.perm, perm),
                Current::Fault(_) => true,
            };
            if stale {
                out.stale.push(StaleEntry {
                    cache,
                    sid: SourceId::new(key.source),
                    pasid,
                    addr,
                    size: key.size,
                    frame: e.frame,
                    perm: e.perm,
                    now,
                });
            }
        };
        self.iotlb.cache().for_each_valid(|k, e, _| check(AuditedCache::Iotlb, k, e));
        self.devtlb.cache().for_each_valid(|k, e, _| check(AuditedCache::DeviceTlb, k, e));
        out
    }
}

#[cfg(test)]
mod tests {
    use iommu_format::vtd::inv_desc::{InvDescriptor, PasidIotlbScope};
    use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidEntryRepr};
    use iommu_format::vtd::regs::{gcmd, offset as o};
    use iommu_testkit::vtd::VtdSetup;
    use iommu_testkit::{Format, PageAlloc, PageTable};
    use iommu_types::{DomainId, Gpa, PagedMemory, RegisterBus, Width};

    use super::*;

    const SID: SourceId = SourceId::from_bdf(0, 1, 0);
    const PASID: Pasid = Pasid::new(5);
    const VA: u64 = 0x4000_0000;
    const DATA: u64 = 0x300_0000;
    const IQ: u64 = 0x20_0000;
    const RW: Perm = Perm { read: true, write: true, exec: false };

    type Unit = VtdUnit<PagedMemory, NullInterrupts>;

    /// A unit translating PASID 5 of `SID` (ATS allowed) through a
    /// first-stage table that maps VA → DATA; queued invalidation on.
    fn setup() -> (Unit, PageTable) {
        let u = VtdUnit::new(VtdConfig::full_featured(), PagedMemory::new(64 << 20), NullInterrupts);
        let mem = u.mem();
        let mut alloc = PageAlloc::new(0x40_0000, 0x100_0000);
        let mut setup = VtdSetup::new(&mut alloc, true);
        setup.scalable_device(mem, &mut alloc, SID, true, false);
        let mut fs = PageTable::new(Format::FirstStage, 4, &mut alloc);
        fs.map(mem, &mut alloc, VA, DATA, PageSize::Size4K, RW);
        let cfg =
            FirstStageCfg { root: Gpa::new(fs.root.raw()), levels: 4, sre: false, ere: false, wpe: false, eafe: false };
        let entry = PasidEntryRepr {
            fpd: false,
            did: DomainId::new(1),
            pwsnp: false,
            pgsnp: false,
            config: PasidConfig::FirstStage(cfg),
        };
        setup.pasid_entry(mem, &mut alloc, SID, PASID, &entry);
        setup.enable(&u);
        RegisterBus::write(&u, o::IQA, Width::W64, IQ | 1 << 11).unwrap();
        RegisterBus::write(&u, o::GCMD, Width::W32, (gcmd::TE | gcmd::QIE) as u64).unwrap();
        (u, fs)
    }

    fn dma(u: &Unit) -> Hpa {
        let req = Request { sid: SID, pasid: Some(PASID), addr: Iova::new(VA + 8), access: Access::READ };
        u.translate(&req).unwrap().addr
    }

    fn leaf(fs: &PageTable) -> Hpa {
        fs.entry_addr(VA, 1).unwrap()
    }

    #[test]
    fn audit_of_a_fresh_cached_translation_finds_nothing_stale() {
        let (u, _) = setup();
        assert_eq!(dma(&u), Hpa::new(DATA + 8));
        let a = u.audit_caches();
        assert_eq!((a.checked, a.stale.len()), (1, 0));
    }

    #[test]
    fn cleared_leaf_without_invalidation_is_reported_stale_with_the_current_fault() {
        let (u, fs) = setup();
        dma(&u);
        u.mem().write_u64(leaf(&fs), 0).unwrap();
        let a = u.audit_caches();
        assert_eq!(a.stale.len(), 1);
        let s = a.stale[0];
        assert_eq!(
            (s.cache, s.sid, s.pasid, s.addr, s.frame),
            (AuditedCache::Iotlb, SID, Some(PASID), Iova::new(VA), Hpa::new(DATA))
        );
        assert!(matches!(s.now, Current::Fault(_)), "{:?}", s.now);
    }

    #[test]
    fn redirected_leaf_is_reported_stale_with_the_new_frame() {
        let (u, fs) = setup();
        dma(&u);
        let old = u.mem().read_u64(leaf(&fs)).unwrap();
        u.mem().write_u64(leaf(&fs), (old & 0xFFF) | (DATA + 0x1000)).unwrap();
        let a = u.audit_caches();
        assert_eq!(a.stale.len(), 1);
        assert!(matches!(a.stale[0].now, Current::Mapped { frame, .. } if frame == Hpa::new(DATA + 0x1000)));
    }

    #[test]
    fn pasid_iotlb_invalidation_leaves_nothing_stale() {
        let (u, fs) = setup();
        dma(&u);
        u.mem().write_u64(leaf(&fs), 0).unwrap();
        let d = InvDescriptor::PasidIotlb { did: DomainId::new(1), pasid: PASID, scope: PasidIotlbScope::AllNonGlobal };
        u.mem().write(Hpa::new(IQ), &d.encode().to_bytes()).unwrap();
        RegisterBus::write(&u, o::IQT, Width::W64, 32).unwrap();
        let a = u.audit_caches();
        assert_eq!((a.checked, a.stale.len()), (0, 0));
    }

    #[test]
    fn audit_sets_no_accessed_bit_and_records_no_fault() {
        let (u, fs) = setup();
        dma(&u);
        let a_bit = 1 << 5;
        let old = u.mem().read_u64(leaf(&fs)).unwrap();
        u.mem().write_u64(leaf(&fs), old & !a_bit).unwrap();
        let faults = u.stats.faults_recorded.load(Ordering::Relaxed);
        u.mem().write_u64(fs.entry_addr(VA, 2).unwrap(), 0).unwrap();
        assert_eq!(u.audit_caches().stale.len(), 1);
        assert_eq!(u.mem().read_u64(leaf(&fs)).unwrap() & a_bit, 0, "A untouched");
        assert_eq!(u.stats.faults_recorded.load(Ordering::Relaxed), faults, "no fault recorded");
    }

    /// VT-d §6.2: a translation request is served from the IOTLB; after an
    /// invalidation it is not.
    #[test]
    fn ats_translation_request_hits_the_iotlb_until_invalidated() {
        use crate::vtd::AtsCompletion;
        let (u, fs) = setup();
        dma(&u);
        let hits = u.iotlb().cache().stats().hits;
        let c = u.ats_translate(SID, Some(PASID), Iova::new(VA), Access::READ);
        assert!(matches!(c, AtsCompletion::Translated { frame, .. } if frame == Hpa::new(DATA)), "{c:?}");
        assert_eq!(u.iotlb().cache().stats().hits, hits + 1);
        u.mem().write_u64(leaf(&fs), 0).unwrap();
        let d = InvDescriptor::PasidIotlb { did: DomainId::new(1), pasid: PASID, scope: PasidIotlbScope::AllNonGlobal };
        u.mem().write(Hpa::new(IQ), &d.encode().to_bytes()).unwrap();
        RegisterBus::write(&u, o::IQT, Width::W64, 32).unwrap();
        assert_eq!(u.ats_translate(SID, Some(PASID), Iova::new(VA + 0x1000), Access::READ), AtsCompletion::NoAccess);
        assert_eq!(u.ats_translate(SID, Some(PASID), Iova::new(VA), Access::READ), AtsCompletion::NoAccess);
    }
}
