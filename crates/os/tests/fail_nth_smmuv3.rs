//! The fault-injection sweep (semantics §5.8 spec 52, the iommufd
//! `fail_nth` idea) over the SMMUv3 driver, at kernel level: every
//! multi-step operation is re-run with its N-th frame allocation, and
//! separately its N-th command-queue submission (a CMD_SYNC time-out),
//! failing, for N = 1, 2, … until it passes. Every failed run must return
//! an error, leave the observable state exactly as it was (slots, RID
//! domains, SVA domains, the raw STE of every master and its CDs, frames,
//! PASIDs), and the operation must then succeed when retried without
//! injection.
//!
//! Teardowns (unbind, exit, device removal) return no error: under each
//! failed submission they must still complete, leaving no live STE or CD
//! (DMA with the SubstreamID faults, no ATC entry survives), and once the
//! teardown is finished, frames and PASIDs are back where they would be
//! had the bind never happened.

#[path = "common/sweep.rs"]
mod sweep;

use std::sync::Arc;

use sweep::{Inject, Swept};

use iommu_format::smmuv3::ste::{Ste, SteConfig};
use iommu_hw::smmuv3::{AtsCompletion, Request, Smmu, SmmuConfig};
use iommu_os::driver::smmuv3::SmmuDriver;
use iommu_os::driver::{DeviceInfo, DomainRef, IommuDriver};
use iommu_os::frames::{FrameAllocator, RangeFrames};
use iommu_os::iommu::{GroupId, HandleKind, Iommu, MmId};
use iommu_os::kernel::{Bond, Kernel};
use iommu_os::pasid::{DeviceId, LocalPolicy};
use iommu_os::Errno;
use iommu_types::{Access, Hpa, Iova, NullInterrupts, PagedMemory, Pasid, Perm, SourceId, StreamId, SubstreamId};

type Mem = Arc<PagedMemory>;
type Model = Smmu<Mem, NullInterrupts>;
type Os = Kernel<SmmuDriver<Arc<Model>>, Mem, RangeFrames>;

const RW: Perm = Perm { read: true, write: true, exec: false };
/// Global PASIDs 1..100 are taken elsewhere, so the first mm gets 100.
const P: Pasid = Pasid::new(100);
/// A SubstreamID in the fifth 1024-CD leaf of a 2-level CD table.
const FAR: Pasid = Pasid::new(5000);
/// Where each process has a mapping, with its first page resident.
const VA: u64 = 0x4000_0000;
/// Where the stage-1 domain maps IOVA 0x1000_0000.
const IOVA: u64 = 0x1000_0000;
const DATA: u64 = 0x900_0000;
/// SubstreamIDs whose CDs the sweep compares (where the master has them).
const SSIDS: [u32; 4] = [0, 1, P.raw(), FAR.raw()];

/// What the sweep compares before and after a failed run.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    frames: usize,
    /// Global PASIDs in use, not counting those the mms own: a bind keeps
    /// the mm's PASID even when it fails (L4), by design.
    pasids: u32,
    domains: usize,
    slots: Vec<Vec<Pasid>>,
    rids: Vec<Option<DomainRef>>,
    /// The raw STE of every master (`None`: no stream-table leaf).
    stes: Vec<Option<[u64; 8]>>,
    /// The raw CDs at [`SSIDS`] below each master's PASID width (`None`:
    /// no CD table, or no leaf for that SubstreamID).
    cds: Vec<Option<[u64; 8]>>,
    sva: Vec<Vec<(DomainRef, u32)>>,
}

/// The machine an operation runs on: the kernel over the SMMUv3 driver
/// and model, its masters, two processes and three paging domains.
struct Ctx {
    os: Os,
    smmu: Arc<Model>,
    mms: Vec<MmId>,
    /// A stage-1 domain mapping [`IOVA`] → [`DATA`].
    s1: DomainRef,
    /// Another stage-1 domain (empty).
    other: DomainRef,
    /// A stage-2 domain (empty).
    s2: DomainRef,
}

/// A PCIe function at 00:n.0 with ATS, PRI and 20-bit PASIDs.
fn sva_dev(n: u8) -> DeviceInfo {
    DeviceInfo {
        id: DeviceId(n as u32),
        sid: SourceId::from_bdf(0, n, 0),
        max_pasids: 1 << 20,
        ats: true,
        pri: true,
        pci: true,
    }
}

/// A platform master (stall model) with 2 SubstreamID bits.
fn platform(n: u8) -> DeviceInfo {
    DeviceInfo { pci: false, ats: false, pri: false, max_pasids: 4, ..sva_dev(n) }
}

/// The first two share group 1, the third is alone, the fourth is a
/// platform master in its own group.
fn devs() -> [DeviceInfo; 4] {
    [sva_dev(1), sva_dev(2), sva_dev(3), platform(4)]
}

/// A master added by the `add_device` sweep: on bus 1, so its StreamID
/// (256) needs a new stream-table leaf.
fn newcomer() -> DeviceInfo {
    DeviceInfo { id: DeviceId(9), sid: SourceId::from_bdf(1, 0, 0), ..sva_dev(9) }
}

fn sid(d: &DeviceInfo) -> u32 {
    d.sid.raw() as u32
}

fn machine() -> Ctx {
    let mem: Mem = Arc::new(PagedMemory::new(256 << 20));
    let smmu = Arc::new(Smmu::new(SmmuConfig::full(), mem.clone(), NullInterrupts));
    let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x800_0000));
    let drv = SmmuDriver::probe(smmu.clone(), &*mem, &mut frames).expect("probe");
    let mut os = Kernel::new(Iommu::new(0, drv, mem, frames), LocalPolicy::V2);
    let [a, b, c, p] = devs();
    os.add_device(a, GroupId(1)).unwrap();
    os.add_device(b, GroupId(1)).unwrap();
    os.add_device(c, GroupId(3)).unwrap();
    os.add_device(p, GroupId(4)).unwrap();
    for _ in 1..100 {
        os.global_pasids_mut().alloc(1 << 20).unwrap();
    }
    let mut mms = Vec::new();
    for _ in 0..2 {
        let mm = os.create_process().unwrap();
        os.mmap(mm, Some(VA), 0x4000, RW).unwrap();
        os.cpu_write(mm, VA, &[0x5a; 8]).unwrap();
        mms.push(mm);
    }
    let s1_format = os.iommu().driver().table_format(false, 4);
    let s2_format = os.iommu().driver().table_format(true, 4);
    let s1 = os.iommu_mut().alloc_paging(s1_format, false).unwrap();
    let flush = os.iommu_mut().map(s1, Iova::new(IOVA), Hpa::new(DATA), 0x2000, RW).unwrap();
    os.iommu_mut().flush(flush).unwrap();
    let other = os.iommu_mut().alloc_paging(s1_format, false).unwrap();
    let s2 = os.iommu_mut().alloc_paging(s2_format, false).unwrap();
    Ctx { os, smmu, mms, s1, other, s2 }
}

fn observe(c: &Ctx) -> Observed {
    let os = &c.os;
    let core = os.iommu();
    let (drv, mem) = (core.driver(), &**core.mem());
    let owned = c.mms.iter().filter(|m| os.mm_pasids(**m).is_ok_and(|p| p.global().is_some())).count() as u32;
    let mut cds = Vec::new();
    for d in devs() {
        for ssid in SSIDS.into_iter().filter(|s| *s < d.max_pasids) {
            cds.push(drv.read_cd(mem, sid(&d), ssid).ok().map(|cd| cd.words()));
        }
    }
    let all = devs().into_iter().chain([newcomer()]);
    Observed {
        frames: core.frames().in_use(),
        pasids: os.global_pasids().in_use() - owned,
        domains: core.domain_count(),
        slots: devs().iter().map(|d| core.attached_pasids(d.id)).collect(),
        rids: devs().iter().map(|d| core.rid_domain(d.id).ok()).collect(),
        stes: all.map(|d| drv.read_ste(mem, sid(&d)).ok().map(|s| s.words())).collect(),
        cds,
        sva: c.mms.iter().map(|m| os.sva_domains(*m)).collect(),
    }
}

sweep::swept_kernel!(Ctx, Observed);

/// [`sweep::sweep`] on this file's machine.
fn sweep(name: &str, prepare: fn(&mut Ctx), op: fn(&mut Ctx) -> Result<(), Errno>) -> [u64; 2] {
    sweep::sweep(name, prepare, op)
}

/// [`sweep::sweep_retaining`] on this file's machine.
fn sweep_retaining(
    name: &str,
    prepare: fn(&mut Ctx),
    op: fn(&mut Ctx) -> Result<(), Errno>,
    retained: fn(&mut Observed, &Observed),
) -> [u64; 2] {
    sweep::sweep_retaining(name, prepare, op, retained)
}

/// Runs `op` after `prepare` once cleanly and then with each of its
/// submissions failing in turn; `check` runs after each (without
/// injection), given what `op` returned. Returns how many submissions the
/// clean run took.
fn sweep_submissions<T, R>(
    prepare: impl Fn(&mut Ctx) -> T,
    op: impl Fn(&mut Ctx, &T) -> R,
    check: impl Fn(&mut Ctx, &T, R, &str),
) -> u64 {
    let mut clean = machine();
    let t = prepare(&mut clean);
    let start = clean.steps(Inject::Step);
    let r = op(&mut clean, &t);
    let total = clean.steps(Inject::Step) - start;
    check(&mut clean, &t, r, "clean run");
    for n in 1..=total {
        let mut c = machine();
        let t = prepare(&mut c);
        c.inject(Inject::Step, Some(n));
        let r = op(&mut c, &t);
        c.inject(Inject::Step, None);
        check(&mut c, &t, r, &format!("submission {n} failed"));
    }
    total
}

fn nothing(_: &mut Ctx) {}

fn request(dev: &DeviceInfo, ssid: Option<Pasid>, addr: u64) -> Request {
    let ssid = ssid.map(|p| SubstreamId::try_new(p.raw()).unwrap());
    Request { sid: StreamId(sid(dev)), ssid, addr, access: Access::READ }
}

/// Translates through the model (filling the TLB and configuration
/// caches) and through ATS (filling the endpoint's ATC); both must work.
fn warm(c: &Ctx, dev: &DeviceInfo, ssid: Option<Pasid>, addr: u64) {
    assert!(c.smmu.translate(&request(dev, ssid, addr)).is_ok(), "DMA translates before the operation");
    let sub = ssid.map(|p| SubstreamId::try_new(p.raw()).unwrap());
    let ats = c.smmu.ats_translate(StreamId(sid(dev)), sub, addr);
    assert!(matches!(ats, AtsCompletion::Translated { .. }), "{ats:?}");
}

/// DMA from `dev` with `ssid` faults, its ATC holds nothing for it, and
/// no TLB entry reachable through its STE and CD outlives the tables.
fn assert_dead(c: &Ctx, dev: &DeviceInfo, ssid: Option<Pasid>, addr: u64, what: &str) {
    let t = c.smmu.translate(&request(dev, ssid, addr));
    assert!(t.is_err(), "{what}: DMA with {ssid:?} still translates: {t:?}");
    let (sid, sub) = (StreamId(sid(dev)), ssid.map(|p| SubstreamId::try_new(p.raw()).unwrap()));
    assert_eq!(c.smmu.atc_entries(sid, Some(sub)), 0, "{what}: ATC entries left");
    assert_eq!(c.smmu.audit_caches(&[(sid, sub)]).stale, [], "{what}: stale cached translations");
}

/// An SVA bond of the first mm on the third device (PASID 100), with the
/// model's caches and the device's ATC holding its translation.
fn bound(c: &mut Ctx) -> Bond {
    let bond = c.os.sva_bind(sva_dev(3).id, c.mms[0]).unwrap();
    assert_eq!(bond.pasid, P);
    warm(c, &sva_dev(3), Some(P), VA);
    bond
}

#[test]
fn spec52_smmuv3_first_sva_bind_fails_cleanly_at_every_step() {
    // CD table (L1 and the first leaf), CD write, STE switch to the CD
    // table, ATC invalidation before ATS is enabled.
    let f = sweep("sva_bind", nothing, |c| c.os.sva_bind(sva_dev(3).id, c.mms[0]).map(|_| ()));
    assert!(f[0] > 0 && f[1] > 0, "{f:?}");
}

#[test]
fn spec52_smmuv3_sva_bind_of_a_two_device_group_fails_cleanly_at_every_step() {
    let f = sweep("sva_bind group", nothing, |c| c.os.sva_bind(sva_dev(1).id, c.mms[0]).map(|_| ()));
    assert!(f[0] > 1 && f[1] > 1, "{f:?}");
}

#[test]
fn spec52_smmuv3_sva_bind_of_a_stall_master_at_a_device_pasid_fails_cleanly_at_every_step() {
    let f = sweep("bind_device_pasid", nothing, |c| {
        c.os.sva_bind_device_pasid(platform(4).id, c.mms[1], Pasid::new(2)).map(|_| ())
    });
    assert!(f[0] > 0 && f[1] > 0, "{f:?}");
}

#[test]
fn spec52_smmuv3_pasid_attach_needing_a_cd_leaf_fails_cleanly_at_every_step() {
    // The group's CD tables exist (PASID 100 is bound); SubstreamID 5000
    // lives in a leaf neither device has yet.
    let f = sweep(
        "attach 5000",
        |c| {
            c.os.sva_bind(sva_dev(1).id, c.mms[0]).unwrap();
        },
        |c| c.os.iommu_mut().attach_dev_pasid(c.s1, sva_dev(1).id, FAR, Some(HandleKind::User(1))),
    );
    assert!(f[0] > 1 && f[1] > 1, "{f:?}");
}

#[test]
fn spec52_smmuv3_pasid_replace_fails_cleanly_at_every_step() {
    let f = sweep(
        "replace",
        |c| {
            let d = c.s1;
            c.os.iommu_mut().attach_dev_pasid(d, sva_dev(3).id, FAR, Some(HandleKind::User(1))).unwrap();
        },
        |c| c.os.iommu_mut().replace_dev_pasid(c.other, sva_dev(3).id, FAR, HandleKind::User(2)),
    );
    // A replace rewrites a CD in a leaf that exists: it allocates nothing.
    assert_eq!(f[0], 0, "{f:?}");
    assert!(f[1] > 0, "{f:?}");
}

#[test]
fn spec52_smmuv3_rid_replace_from_identity_to_stage_1_fails_cleanly_at_every_step() {
    // S1DSS becomes "substream 0": a CD table per device, CD 0, the STE.
    let f = sweep("rid replace", nothing, |c| c.os.iommu_mut().replace_rid(c.s1, sva_dev(1).id));
    assert!(f[0] > 1 && f[1] > 1, "{f:?}");
}

#[test]
fn spec52_smmuv3_rid_replace_to_stage_1_under_a_bound_pasid_fails_cleanly_at_every_step() {
    // The CD table exists: only CD 0 and the STE's S1DSS change.
    let f = sweep(
        "rid replace under sva",
        |c| {
            c.os.sva_bind(sva_dev(3).id, c.mms[0]).unwrap();
        },
        |c| c.os.iommu_mut().replace_rid(c.s1, sva_dev(3).id),
    );
    assert_eq!(f[0], 0, "{f:?}");
    assert!(f[1] > 0, "{f:?}");
}

#[test]
fn spec52_smmuv3_rid_attach_of_a_stage_2_domain_fails_cleanly_at_every_step() {
    // The device has no PASID attached, so a stage-2 STE is allowed.
    let f = sweep("rid attach s2", nothing, |c| c.os.iommu_mut().attach_rid(c.s2, sva_dev(3).id));
    // A stage-2 STE needs a VMID, no memory: only submissions can fail.
    assert_eq!(f[0], 0, "{f:?}");
    assert!(f[1] > 0, "{f:?}");
}

/// What a failed `add_device` leaves by design: the stream-table leaf it
/// allocated for the newcomer's StreamID, all STEs aborting. Leaves stay
/// for the SMMU's lifetime, shared by the 256 StreamIDs they cover (as in
/// Linux, and as `release_device_returns_every_frame_the_device_took` in
/// `smmuv3_driver.rs` asserts).
fn stream_table_leaf(before: &mut Observed, after: &Observed) {
    let abort = Ste::default().with(Ste::V, 1).with_config(SteConfig::Abort).words();
    let i = before.stes.len() - 1;
    if before.stes[i].is_none() && after.stes[i] == Some(abort) {
        before.stes[i] = Some(abort);
        before.frames += 4;
    }
}

#[test]
fn spec52_smmuv3_device_add_fails_cleanly_at_every_step_but_keeps_the_stream_table_leaf() {
    let f = sweep_retaining("add_device", nothing, |c| c.os.add_device(newcomer(), GroupId(9)), stream_table_leaf);
    assert!(f[0] > 0 && f[1] > 0, "{f:?}");
}

#[test]
fn spec52_smmuv3_pasid_replace_leaves_no_stale_translation_under_any_failed_submission() {
    // Whether the replace fails (the old domain stays) or succeeds with a
    // failed step behind it (the old ASID's TLB entries and the ATC still
    // to invalidate), DMA through SubstreamID 5000 must see exactly the
    // domain attached there: no cache may keep the other one.
    let dev = sva_dev(3);
    let n = sweep_submissions(
        |c| {
            let d = c.s1;
            c.os.iommu_mut().attach_dev_pasid(d, dev.id, FAR, Some(HandleKind::User(1))).unwrap();
            warm(c, &dev, Some(FAR), IOVA);
        },
        |c, ()| c.os.iommu_mut().replace_dev_pasid(c.other, dev.id, FAR, HandleKind::User(2)),
        |c, (), r, what| {
            let now = c.os.iommu().pasid_domain(dev.id, FAR);
            assert_eq!(now, Some(if r.is_ok() { c.other } else { c.s1 }), "{what}: {r:?}");
            let dma = c.smmu.translate(&request(&dev, Some(FAR), IOVA)).ok().map(|t| t.pa);
            assert_eq!(dma, r.is_err().then_some(DATA), "{what}: {r:?}");
            let sub = SubstreamId::try_new(FAR.raw()).ok();
            let audit = c.smmu.audit_caches(&[(StreamId(sid(&dev)), sub)]);
            assert_eq!(audit.stale, [], "{what}: {r:?}");
        },
    );
    assert!(n > 0);
}

#[test]
fn spec52_smmuv3_sva_unbind_completes_under_every_failed_submission() {
    let baseline = observe(&machine());
    let n = sweep_submissions(
        bound,
        |c, bond| c.os.sva_unbind(bond),
        |c, _, (), what| {
            assert_dead(c, &sva_dev(3), Some(P), VA, what);
            assert_eq!(observe(c), baseline, "{what}: state after unbind");
        },
    );
    assert!(n > 0);
}

#[test]
fn spec52_smmuv3_exit_of_a_bound_process_completes_under_every_failed_submission() {
    let baseline = {
        let mut c = machine();
        c.os.exit(c.mms[0]).unwrap();
        observe(&c)
    };
    let n = sweep_submissions(
        bound,
        |c, _| c.os.exit(c.mms[0]).unwrap(),
        |c, bond, (), what| {
            // The release CD: DMA faults (no stale TLB entry), the bond stays.
            assert_dead(c, &sva_dev(3), Some(P), VA, what);
            assert_eq!(c.os.bond_users(bond), 1, "{what}");
            c.os.sva_unbind(bond);
            assert_dead(c, &sva_dev(3), Some(P), VA, what);
            assert_eq!(observe(c), baseline, "{what}: state after exit and unbind");
        },
    );
    assert!(n > 0);
}

#[test]
fn spec52_smmuv3_removal_of_a_device_with_a_stage_1_rid_completes_under_every_failed_submission() {
    // Semantics L7: a device with a PASID attached cannot be removed
    // (EBUSY), so the live CD here is CD 0 of a stage-1 RID domain.
    let baseline = {
        let mut c = machine();
        c.os.remove_device(sva_dev(3).id).unwrap();
        observe(&c)
    };
    let n = sweep_submissions(
        |c| {
            c.os.iommu_mut().replace_rid(c.s1, sva_dev(3).id).unwrap();
            warm(c, &sva_dev(3), None, IOVA);
        },
        |c, _| c.os.remove_device(sva_dev(3).id).unwrap(),
        |c, _, (), what| {
            assert_dead(c, &sva_dev(3), None, IOVA, what);
            assert_eq!(observe(c), baseline, "{what}: state after removal");
        },
    );
    assert!(n > 0);
}
