//! The fault-injection sweep (semantics §5.8 spec 52, the iommufd
//! `fail_nth` idea): every multi-step operation is re-run with its N-th
//! frame allocation, and separately its N-th hardware step (invalidation
//! queue submission), failing, for N = 1, 2, … until it passes. Every
//! failed run must return an error, leave the observable state exactly as
//! it was (slots, domains, bonds, hardware PASID entries, frames, PASIDs),
//! and the operation must then succeed when retried without injection.

mod common;
#[path = "common/sweep.rs"]
mod sweep;

use common::*;
use iommu_hw::vtd::VtdConfig;
use iommu_os::driver::DomainRef;
use iommu_os::frames::FrameAllocator;
use iommu_os::iommu::{GroupId, HandleKind, MmId};
use iommu_os::kernel::{GpasidBindData, IoasidSetId, FORMAT_INTEL_VTD, GPASID_BIND_ARGSZ};
use iommu_os::pasid::LocalPolicy;
use iommu_os::pgtable::PtFormat;
use iommu_os::Errno;
use iommu_types::{Gpa, Hpa, Iova, Pasid, Perm};

const FS4: PtFormat = PtFormat::FirstStage { levels: 4 };
const SS4: PtFormat = PtFormat::SecondStage { levels: 4 };
const RW: Perm = Perm { read: true, write: true, exec: false };
/// PASIDs from 64 up live in PASID tables the devices do not have yet, so
/// attaching there allocates.
const P: Pasid = Pasid::new(100);

/// What the sweep compares before and after a failed run.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    frames: usize,
    /// Global PASIDs in use, not counting those the mms own: a bind keeps
    /// the mm's PASID even when it fails (L4), by design.
    pasids: u32,
    domains: usize,
    slots: Vec<Vec<Pasid>>,
    rids: Vec<DomainRef>,
    entries: Vec<Option<[u64; 8]>>,
    sva: Vec<Vec<(DomainRef, u32)>>,
    guest: Vec<bool>,
}

/// The machine an operation runs on: the kernel, its devices (the first
/// two share group 1, the third is alone), processes, a domain, a set.
struct Ctx {
    os: Os,
    mms: Vec<MmId>,
    domain: DomainRef,
    other: DomainRef,
    set: IoasidSetId,
    hpasid: Pasid,
}

fn devs() -> [iommu_os::driver::DeviceInfo; 3] {
    [sva_dev(1), sva_dev(2), sva_dev(3)]
}

fn machine() -> Ctx {
    let (_u, mut os) = kernel_with(VtdConfig::full_featured().caching_mode(true), LocalPolicy::V2);
    let [a, b, c] = devs();
    os.add_device(a, GroupId(1)).unwrap();
    os.add_device(b, GroupId(1)).unwrap();
    os.add_device(c, GroupId(3)).unwrap();
    // PASIDs 1..100 are taken elsewhere, so the mm gets PASID 100.
    for _ in 1..100 {
        os.global_pasids_mut().alloc(1 << 20).unwrap();
    }
    let mms = vec![os.create_process().unwrap(), os.create_process().unwrap()];
    os.mmap(mms[0], Some(0x4000_0000), 0x4000, RW).unwrap();
    let domain = os.iommu_mut().alloc_paging(FS4, false).unwrap();
    let other = os.iommu_mut().alloc_paging(SS4, false).unwrap();
    let s2 = os.iommu_mut().alloc_paging(SS4, true).unwrap();
    os.iommu_mut().attach_rid(s2, c.id).unwrap();
    let set = os.ioasid_set_alloc(4).unwrap();
    let hpasid = os.ioasid_alloc(set).unwrap();
    Ctx { os, mms, domain, other, set, hpasid }
}

fn observe(c: &Ctx) -> Observed {
    let os = &c.os;
    let core = os.iommu();
    let owned = c.mms.iter().filter(|m| os.mm_pasids(**m).is_ok_and(|p| p.global().is_some())).count() as u32;
    let mut entries = Vec::new();
    for d in devs() {
        for p in [Pasid::ZERO, Pasid::new(1), P, c.hpasid] {
            entries.push(core.driver().pasid_entry(core.mem(), d.sid, p).map(|e| e.0));
        }
    }
    Observed {
        frames: core.frames().in_use(),
        pasids: os.global_pasids().in_use() - owned,
        domains: core.domain_count(),
        slots: devs().iter().map(|d| core.attached_pasids(d.id)).collect(),
        rids: devs().iter().map(|d| core.rid_domain(d.id).unwrap()).collect(),
        entries,
        sva: c.mms.iter().map(|m| os.sva_domains(*m)).collect(),
        guest: devs().iter().map(|d| os.gpasid_bound(d.id, c.hpasid)).collect(),
    }
}

sweep::swept_kernel!(Ctx, Observed);

/// [`sweep::sweep`] on this file's machine.
fn sweep(name: &str, prepare: fn(&mut Ctx), op: fn(&mut Ctx) -> Result<(), Errno>) -> [u64; 2] {
    sweep::sweep(name, prepare, op)
}

fn nothing(_: &mut Ctx) {}

/// Bind data for the context's host PASID (guest root at GPA 2 MiB).
fn gpasid_data(c: &Ctx) -> GpasidBindData {
    GpasidBindData {
        argsz: GPASID_BIND_ARGSZ,
        format: FORMAT_INTEL_VTD,
        flags: 0,
        hpasid: c.hpasid.raw() as u64,
        gpasid: 0,
        gpgd: Gpa::new(0x20_0000),
        addr_width: 48,
    }
}

#[test]
fn spec52_sva_first_bind_fails_cleanly_at_every_step() {
    let f = sweep("sva_bind", nothing, |c| c.os.sva_bind(sva_dev(3).id, c.mms[0]).map(|_| ()));
    assert!(f[0] > 0 && f[1] > 0, "{f:?}");
}

#[test]
fn spec52_sva_bind_of_a_two_device_group_fails_cleanly_at_every_step() {
    let f = sweep("sva_bind group", nothing, |c| c.os.sva_bind(sva_dev(1).id, c.mms[0]).map(|_| ()));
    assert!(f[0] > 1 && f[1] > 1, "{f:?}");
}

#[test]
fn spec52_sva_bind_sharing_a_domain_fails_cleanly_at_every_step() {
    let f = sweep(
        "sva_bind shared",
        |c| {
            c.os.sva_bind(sva_dev(3).id, c.mms[0]).unwrap();
        },
        |c| c.os.sva_bind(sva_dev(1).id, c.mms[0]).map(|_| ()),
    );
    assert!(f[0] > 0 && f[1] > 0, "{f:?}");
}

#[test]
fn spec52_pasid_attach_fails_cleanly_at_every_step() {
    let f = sweep("attach", nothing, |c| {
        c.os.iommu_mut().attach_dev_pasid(c.domain, sva_dev(1).id, P, Some(HandleKind::User(1)))
    });
    assert!(f[0] > 1 && f[1] > 1, "{f:?}");
}

#[test]
fn spec52_pasid_replace_fails_cleanly_at_every_step() {
    let f = sweep(
        "replace",
        |c| {
            let d = c.domain;
            c.os.iommu_mut().attach_dev_pasid(d, sva_dev(3).id, P, Some(HandleKind::User(1))).unwrap();
        },
        |c| c.os.iommu_mut().replace_dev_pasid(c.other, sva_dev(3).id, P, HandleKind::User(2)),
    );
    assert!(f[1] > 0, "{f:?}");
}

#[test]
fn spec52_rid_replace_fails_cleanly_at_every_step() {
    let f = sweep("rid replace", nothing, |c| c.os.iommu_mut().replace_rid(c.other, sva_dev(1).id));
    assert!(f[1] > 0, "{f:?}");
}

#[test]
fn spec52_gpasid_bind_fails_cleanly_at_every_step() {
    let f = sweep("bind_gpasid", nothing, |c| c.os.bind_gpasid(sva_dev(3).id, c.set, &gpasid_data(c)));
    assert!(f[0] > 0 && f[1] > 0, "{f:?}");
}

#[test]
fn spec52_ioasid_set_free_with_bindings_completes_under_injection() {
    let f = sweep(
        "ioasid_set_free",
        |c| {
            c.os.bind_gpasid(sva_dev(3).id, c.set, &gpasid_data(c)).unwrap();
        },
        |c| {
            // A teardown cannot be undone: a failed step is retried, so the
            // free always completes and nothing stays bound.
            let r = c.os.ioasid_set_free(c.set);
            assert!(!c.os.gpasid_bound(sva_dev(3).id, c.hpasid));
            r.or(Ok(()))
        },
    );
    assert_eq!(f, [0, 0]);
}

#[test]
fn spec52_map_fails_cleanly_at_every_allocation() {
    let f = sweep("map", nothing, |c| {
        let flush = c.os.iommu_mut().map(c.domain, Iova::new(0x40_0000_0000), Hpa::new(0x900_0000), 0x3000, RW)?;
        c.os.iommu_mut().flush(flush)
    });
    assert!(f[0] > 0, "{f:?}");
}

#[test]
fn spec52_device_add_fails_cleanly_at_every_step() {
    let f = sweep("add_device", nothing, |c| c.os.add_device(sva_dev(9), GroupId(9)));
    assert!(f[0] > 0 && f[1] > 0, "{f:?}");
}

#[test]
fn spec52_bind_device_pasid_fails_cleanly_at_every_step() {
    let f = sweep("bind_device_pasid", nothing, |c| {
        c.os.sva_bind_device_pasid(sva_dev(3).id, c.mms[1], Pasid::new(300)).map(|_| ())
    });
    assert!(f[0] > 0 && f[1] > 0, "{f:?}");
}
