//! The IOTLB caches, and the invalidations VT-d requires make it coherent:
//! with them, cached and uncached translations agree; without them a stale
//! translation is observable (VT-d §6.1, §6.5.2.3, §6.5.2.4).

use iommu_format::vtd::inv_desc::{InvDescriptor, IotlbScope, PasidIotlbScope};
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidEntryRepr, SecondStageCfg};
use iommu_format::vtd::regs::{gcmd, offset};
use iommu_hw::vtd::{Request, VtdConfig, VtdUnit};
use iommu_testkit::vtd::VtdSetup;
use iommu_testkit::{Format, PageAlloc, PageTable};
use iommu_types::{
    Access, DomainId, Gpa, Hpa, Iova, NullInterrupts, PageSize, PagedMemory, Pasid, Perm, PhysMem, RegisterBus,
    SourceId, Width,
};
use proptest::prelude::*;

const DEV: SourceId = SourceId::from_bdf(0, 3, 0);
const IQ: u64 = 0x0F00_0000;
const BASE_IOVA: u64 = 0x40_0000;
const PAGES: u64 = 8;
const RW: Perm = Perm { read: true, write: true, exec: false };
const FS_PASID: Pasid = Pasid::new(1);
const SS_PASID: Pasid = Pasid::new(2);
const FS_DID: u16 = 1;
const SS_DID: u16 = 2;

struct World {
    unit: VtdUnit<PagedMemory, NullInterrupts>,
    alloc: PageAlloc,
    fs: PageTable,
    ss: PageTable,
    tail: u64,
}

fn frame(n: u64) -> u64 {
    0x1000_0000 + n * 0x1000
}

fn world() -> World {
    let unit = VtdUnit::new(VtdConfig::full_featured(), PagedMemory::new(256 << 20), NullInterrupts);
    let mem = unit.mem();
    let mut alloc = PageAlloc::new(0x10_0000, 0x0E00_0000);
    let mut setup = VtdSetup::new(&mut alloc, true);
    setup.scalable_device(mem, &mut alloc, DEV, false, false);
    let mut fs = PageTable::new(Format::FirstStage, 4, &mut alloc);
    let mut ss = PageTable::new(Format::SecondStage, 4, &mut alloc);
    for p in 0..PAGES {
        fs.map(mem, &mut alloc, BASE_IOVA + p * 0x1000, frame(p), PageSize::Size4K, RW);
        ss.map(mem, &mut alloc, BASE_IOVA + p * 0x1000, frame(p), PageSize::Size4K, RW);
    }
    let fs_cfg =
        FirstStageCfg { root: Gpa::new(fs.root.raw()), levels: 4, sre: false, ere: false, wpe: false, eafe: false };
    let e = |did, config| PasidEntryRepr { fpd: false, did: DomainId::new(did), pwsnp: false, pgsnp: false, config };
    setup.pasid_entry(mem, &mut alloc, DEV, FS_PASID, &e(FS_DID, PasidConfig::FirstStage(fs_cfg)));
    let ss_cfg = SecondStageCfg { root: ss.root, levels: 4, ssade: false };
    setup.pasid_entry(mem, &mut alloc, DEV, SS_PASID, &e(SS_DID, PasidConfig::SecondStage(ss_cfg)));
    setup.enable(&unit);
    RegisterBus::write(&unit, offset::IQA, Width::W64, IQ | 1 << 11).unwrap();
    RegisterBus::write(&unit, offset::GCMD, Width::W32, (gcmd::TE | gcmd::QIE) as u64).unwrap();
    World { unit, alloc, fs, ss, tail: 0 }
}

impl World {
    fn translate(&self, pasid: Pasid, page: u64) -> Hpa {
        let req =
            Request { sid: DEV, pasid: Some(pasid), addr: Iova::new(BASE_IOVA + page * 0x1000), access: Access::READ };
        self.unit.translate(&req).expect("mapped page translates").addr
    }

    fn remap(&mut self, pasid: Pasid, page: u64, to: u64) {
        let table = if pasid == FS_PASID { &mut self.fs } else { &mut self.ss };
        table.map(self.unit.mem(), &mut self.alloc, BASE_IOVA + page * 0x1000, frame(to), PageSize::Size4K, RW);
    }

    /// The invalidation VT-d requires after changing a present leaf: a
    /// PASID-based IOTLB invalidation for first-stage, an IOTLB page
    /// invalidation for second-stage, each followed by a wait.
    fn invalidate(&mut self, pasid: Pasid, page: u64) {
        let addr = Iova::new(BASE_IOVA + page * 0x1000);
        let d = if pasid == FS_PASID {
            InvDescriptor::PasidIotlb {
                did: DomainId::new(FS_DID),
                pasid,
                scope: PasidIotlbScope::Page { addr, am: 0, ih: false },
            }
        } else {
            InvDescriptor::Iotlb {
                scope: IotlbScope::Page { did: DomainId::new(SS_DID), addr, am: 0, ih: false },
                dr: false,
                dw: false,
            }
        };
        let wait = InvDescriptor::Wait {
            interrupt: false,
            status: Some((Hpa::new(IQ + 0x8000), 1)),
            fence: true,
            drain_page_requests: false,
        };
        for desc in [d, wait] {
            self.unit.mem().write(Hpa::new(IQ + self.tail), &desc.encode().to_bytes()).unwrap();
            self.tail = (self.tail + 32) % 4096;
        }
        RegisterBus::write(&self.unit, offset::IQT, Width::W64, self.tail).unwrap();
    }
}

/// Without the invalidation, the second translation still returns the old
/// frame: the IOTLB really caches.
#[test]
fn remap_without_invalidation_serves_the_stale_translation() {
    let mut w = world();
    for pasid in [FS_PASID, SS_PASID] {
        assert_eq!(w.translate(pasid, 3), Hpa::new(frame(3)));
        w.remap(pasid, 3, 6);
        assert_eq!(w.translate(pasid, 3), Hpa::new(frame(3)), "pasid {pasid}");
    }
}

#[test]
fn remap_with_invalidation_serves_the_new_translation() {
    let mut w = world();
    for pasid in [FS_PASID, SS_PASID] {
        assert_eq!(w.translate(pasid, 3), Hpa::new(frame(3)));
        w.remap(pasid, 3, 6);
        w.invalidate(pasid, 3);
        assert_eq!(w.translate(pasid, 3), Hpa::new(frame(6)), "pasid {pasid}");
    }
}

/// Invalidating one PASID's page leaves the other PASID's cached entries.
#[test]
fn pasid_iotlb_invalidation_does_not_touch_second_stage_entries() {
    let mut w = world();
    w.translate(SS_PASID, 2);
    w.remap(SS_PASID, 2, 7);
    w.invalidate(FS_PASID, 2);
    assert_eq!(w.translate(SS_PASID, 2), Hpa::new(frame(2)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// With every required invalidation, every translation equals the
    /// current tables (the reference), whatever the IOTLB holds.
    #[test]
    fn with_required_invalidations_cached_and_uncached_agree(
        ops in proptest::collection::vec((any::<bool>(), 0..PAGES, 0..(4 * PAGES), any::<bool>()), 1..40)
    ) {
        let mut w = world();
        let identity: [u64; PAGES as usize] = core::array::from_fn(|p| p as u64);
        let mut reference = [identity; 2];
        for (fs_side, page, to, probe_first) in ops {
            let (pasid, idx) = if fs_side { (FS_PASID, 0) } else { (SS_PASID, 1) };
            if probe_first {
                prop_assert_eq!(w.translate(pasid, page), Hpa::new(frame(reference[idx][page as usize])));
            }
            w.remap(pasid, page, to);
            w.invalidate(pasid, page);
            reference[idx][page as usize] = to;
            prop_assert_eq!(w.translate(pasid, page), Hpa::new(frame(to)));
        }
    }
}
