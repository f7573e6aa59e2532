//! An iommufd-shaped user API (semantics §1.3, behaviour specs §5.3–§5.7):
//! the object interface a VMM uses to give a guest a device with nested,
//! PASID-granular translation.
//!
//! Objects live in a context (one per open "file", [`IommufdFd`]) and are
//! named by [`ObjId`]s:
//! * IOAS: an I/O address space of areas backed by memory files
//!   ([`Kernel::ioas_map_file`]), mirrored into every paging HWPT over it;
//! * device: a device bound to the context (DMA ownership claimed);
//! * HWPT paging (optionally a nest parent, optionally PASID-compatible),
//!   HWPT nested (a guest VT-d stage 1 over a nest parent or a vIOMMU);
//! * vIOMMU and vdevice (the guest's ID for a device);
//! * fault queue: page-request groups of attachments whose HWPT names it,
//!   read as 40-byte records with a cookie per group and answered with
//!   8-byte responses.
//!
//! References (L9) are computed from the objects themselves: an object
//! something else names cannot be destroyed (`EBUSY`). Closing the
//! context ([`Kernel::iommufd_close`]) detaches and destroys everything in
//! dependency order, which is how a VMM's death leaves nothing behind.
//!
//! Model choices, documented: no auto-domains (attaching an IOAS → `EINVAL`,
//! HWPTs are always explicit); no dirty tracking; faults are delivered for
//! PASID attachments (requests without PASID are answered INVALID).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use iommu_types::{Iova, Pasid, Perm, PhysMem};

use super::memfd::MemfdId;
use super::Kernel;
use crate::driver::{HwInfoData, IommuDriver};
use crate::frames::FrameAllocator;
use crate::iommu::{GroupId, HandleKind, NestedS1};
use crate::iopf::{self, FaultGroup, ResponseCode};
use crate::pasid::DeviceId;
use crate::{driver::DomainRef, Errno};

pub mod uapi;
use uapi::{hwpt_data, hwpt_flags, pgfault_flags, pgfault_perm, PgFault, VtdS1, VtdS1Invalidate};

/// An open iommufd context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IommufdFd(pub u32);

/// An object ID within a context (0 is never used: the default names
/// nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjId(pub u32);

/// Contexts the kernel holds at most.
pub const MAX_CONTEXTS: usize = 256;
/// Objects one context holds at most.
pub const MAX_OBJECTS: usize = 4096;
/// Areas one IOAS holds at most.
pub const MAX_AREAS: usize = 1024;

/// `IOMMU_HWPT_ALLOC` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HwptAlloc<'a> {
    /// [`uapi::hwpt_flags`].
    pub flags: u32,
    /// The device the HWPT is for.
    pub dev_id: ObjId,
    /// IOAS (paging), nest-parent HWPT or vIOMMU (nested).
    pub pt_id: ObjId,
    /// Fault queue, with FAULT_ID_VALID.
    pub fault_id: ObjId,
    /// [`uapi::hwpt_data`].
    pub data_type: u32,
    /// Length of the data block.
    pub data_len: u32,
    /// The data block (`None`: a null user pointer).
    pub data: Option<&'a [u8]>,
}

/// `IOMMU_HWPT_INVALIDATE` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Invalidate<'a> {
    /// [`uapi::INVALIDATE_DATA_VTD_S1`].
    pub data_type: u32,
    /// Size of one entry.
    pub entry_len: u32,
    /// Number of entries.
    pub entry_num: u32,
    /// The entries (`None`: a null user pointer).
    pub data: Option<&'a [u8]>,
}

/// `IOMMU_IOAS_MAP_FILE` arguments: `len` bytes of memory file `memfd`
/// from byte `offset`, at `iova`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MapFile {
    /// The file.
    pub memfd: MemfdId,
    /// Byte offset in the file (4 KiB aligned).
    pub offset: u64,
    /// Where in the IOAS.
    pub iova: Iova,
    /// Bytes (4 KiB aligned, non-zero).
    pub len: u64,
    /// Permissions of the mapping.
    pub perm: Perm,
}

/// What `IOMMU_GET_HW_INFO` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HwInfoOut {
    /// log2 of the device's PASID count (0: no PASID).
    pub max_pasid_log2: u8,
    /// Vendor registers.
    pub data: HwInfoData,
    /// Nesting supported.
    pub nesting: bool,
}

/// Fault queue readiness (`poll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Poll {
    /// Undelivered groups exist.
    pub readable: bool,
    /// Always.
    pub writable: bool,
}

#[derive(Debug)]
struct Area {
    len: u64,
    memfd: MemfdId,
    offset: u64,
    perm: Perm,
}

#[derive(Debug)]
struct Delivery {
    cookie: u32,
    group: iopf::GroupId,
    dev: DeviceId,
    pasid: Option<Pasid>,
    records: Vec<PgFault>,
}

#[derive(Debug, Default)]
struct FaultQueue {
    undelivered: VecDeque<Delivery>,
    delivered: BTreeMap<u32, Delivery>,
    next_cookie: u32,
}

#[derive(Debug)]
enum Obj {
    Ioas { areas: BTreeMap<u64, Area> },
    Device { dev: DeviceId, vdevice: Option<ObjId> },
    Paging { ioas: ObjId, domain: DomainRef, nest_parent: bool, pasid: bool, fault: Option<ObjId> },
    Nested { parent: ObjId, viommu: Option<ObjId>, domain: DomainRef, pasid: bool, fault: Option<ObjId> },
    Viommu { hwpt: ObjId },
    Vdevice { viommu: ObjId, idev: ObjId, virt_id: u64 },
    Fault(FaultQueue),
}

impl Obj {
    /// Whether this object names `id`.
    fn refers_to(&self, id: ObjId) -> bool {
        match self {
            Obj::Paging { ioas, fault, .. } => *ioas == id || *fault == Some(id),
            Obj::Nested { parent, viommu, fault, .. } => *parent == id || *viommu == Some(id) || *fault == Some(id),
            Obj::Viommu { hwpt } => *hwpt == id,
            Obj::Vdevice { viommu, .. } => *viommu == id,
            _ => false,
        }
    }

    fn hwpt(&self) -> Option<(DomainRef, bool, Option<ObjId>)> {
        match self {
            Obj::Paging { domain, pasid, fault, .. } | Obj::Nested { domain, pasid, fault, .. } => {
                Some((*domain, *pasid, *fault))
            }
            _ => None,
        }
    }
}

/// The devices of one group attached at one PASID, and to what.
#[derive(Debug)]
struct AttachSet {
    hwpt: ObjId,
    devs: BTreeSet<ObjId>,
}

/// One iommufd context.
#[derive(Debug, Default)]
pub(super) struct Ictx {
    objs: BTreeMap<u32, Obj>,
    next: u32,
    /// (group, PASID; 0 = RID) → attachment.
    attach: BTreeMap<(GroupId, u32), AttachSet>,
}

impl Ictx {
    fn get(&self, id: ObjId) -> Result<&Obj, Errno> {
        self.objs.get(&id.0).ok_or(Errno::NoEnt)
    }

    fn insert(&mut self, o: Obj) -> Result<ObjId, Errno> {
        if self.objs.len() >= MAX_OBJECTS {
            return Err(Errno::NoSpc);
        }
        self.next = self.next.wrapping_add(1).max(1);
        while self.objs.contains_key(&self.next) {
            self.next = self.next.wrapping_add(1).max(1);
        }
        self.objs.insert(self.next, o);
        Ok(ObjId(self.next))
    }

    fn device(&self, id: ObjId) -> Result<DeviceId, Errno> {
        match self.objs.get(&id.0) {
            Some(Obj::Device { dev, .. }) => Ok(*dev),
            _ => Err(Errno::NoEnt),
        }
    }

    fn referenced(&self, id: ObjId) -> bool {
        self.objs.values().any(|o| o.refers_to(id)) || self.attach.values().any(|s| s.hwpt == id)
    }

    fn fault_queue(&mut self, id: ObjId) -> Option<&mut FaultQueue> {
        match self.objs.get_mut(&id.0) {
            Some(Obj::Fault(q)) => Some(q),
            _ => None,
        }
    }

    /// Takes every group of (`dev`, `pasid`) out of `fault`'s queue.
    fn take_groups(&mut self, fault: ObjId, dev: DeviceId, pasid: Option<Pasid>) -> Vec<iopf::GroupId> {
        let Some(q) = self.fault_queue(fault) else { return Vec::new() };
        let mine = |d: &Delivery| d.dev == dev && d.pasid == pasid;
        let mut out: Vec<_> = q.undelivered.iter().filter(|d| mine(d)).map(|d| d.group).collect();
        q.undelivered.retain(|d| !mine(d));
        out.extend(q.delivered.values().filter(|d| mine(d)).map(|d| d.group));
        q.delivered.retain(|_, d| !mine(d));
        out
    }
}

/// Marks a user handle as an iommufd one (other user handles, such as the
/// seed-era guest bindings', never set it).
const IOMMUFD_HANDLE: u64 = 1 << 63;

/// The attach handle value for (context, HWPT): what the fault path uses
/// to find the fault queue.
fn handle(fd: IommufdFd, hwpt: ObjId) -> HandleKind {
    HandleKind::User(IOMMUFD_HANDLE | ((fd.0 as u64) & 0x7FFF_FFFF) << 32 | hwpt.0 as u64)
}

/// The DMA-ownership token of a context.
fn owner(fd: IommufdFd) -> u64 {
    1 << 40 | fd.0 as u64
}

fn key(pasid: Option<Pasid>) -> u32 {
    pasid.map_or(0, |p| p.raw())
}

impl<D: IommuDriver, M: PhysMem, F: FrameAllocator> Kernel<D, M, F> {
    fn ictx(&self, fd: IommufdFd) -> Result<&Ictx, Errno> {
        self.ictxs.get(&fd.0).ok_or(Errno::NoEnt)
    }

    fn ictx_mut(&mut self, fd: IommufdFd) -> Result<&mut Ictx, Errno> {
        self.ictxs.get_mut(&fd.0).ok_or(Errno::NoEnt)
    }

    /// Opens a context.
    ///
    /// # Errors
    /// [`Errno::NoSpc`] beyond [`MAX_CONTEXTS`].
    pub fn iommufd_open(&mut self) -> Result<IommufdFd, Errno> {
        if self.ictxs.len() >= MAX_CONTEXTS {
            return Err(Errno::NoSpc);
        }
        // Context numbers stay below 2^31: they travel in attach handles.
        let next = |fd: u32| (fd.wrapping_add(1) & 0x7FFF_FFFF).max(1);
        let mut fd = self.next_fd;
        while self.ictxs.contains_key(&fd) {
            fd = next(fd);
        }
        self.next_fd = next(fd);
        self.ictxs.insert(fd, Ictx::default());
        Ok(IommufdFd(fd))
    }

    /// Closes a context: every attachment is detached (with the full
    /// teardown and drain, its faults answered INVALID), then vdevices,
    /// nested HWPTs, vIOMMUs, paging HWPTs, IOASes (unpinning their memory
    /// files) and fault queues are destroyed, and DMA ownership released.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] for an unknown context.
    pub fn iommufd_close(&mut self, fd: IommufdFd) -> Result<(), Errno> {
        let devs: Vec<ObjId> = self
            .ictx(fd)?
            .objs
            .iter()
            .filter(|(_, o)| matches!(o, Obj::Device { .. }))
            .map(|(id, _)| ObjId(*id))
            .collect();
        for d in devs {
            let _ = self.device_unbind(fd, d);
        }
        let rank = |o: &Obj| match o {
            Obj::Vdevice { .. } => 0,
            Obj::Nested { .. } => 1,
            Obj::Viommu { .. } => 2,
            Obj::Paging { .. } => 3,
            Obj::Ioas { .. } => 4,
            _ => 5,
        };
        let mut ids: Vec<(u8, ObjId)> = self.ictx(fd)?.objs.iter().map(|(id, o)| (rank(o), ObjId(*id))).collect();
        ids.sort();
        for (_, id) in ids {
            let _ = self.destroy(fd, id);
        }
        self.ictxs.remove(&fd.0);
        Ok(())
    }

    /// Objects a context holds.
    pub fn iommufd_objects(&self, fd: IommufdFd) -> usize {
        self.ictx(fd).map_or(0, |c| c.objs.len())
    }

    /// Open contexts.
    pub fn iommufd_contexts(&self) -> usize {
        self.ictxs.len()
    }

    // ---- IOAS ----------------------------------------------------------

    /// `IOMMU_IOAS_ALLOC`.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] (context), [`Errno::NoSpc`].
    pub fn ioas_alloc(&mut self, fd: IommufdFd) -> Result<ObjId, Errno> {
        self.ictx_mut(fd)?.insert(Obj::Ioas { areas: BTreeMap::new() })
    }

    fn hwpts_of_ioas(&self, fd: IommufdFd, ioas: ObjId) -> Vec<DomainRef> {
        let Ok(c) = self.ictx(fd) else { return Vec::new() };
        c.objs
            .values()
            .filter_map(|o| match o {
                Obj::Paging { ioas: i, domain, .. } if *i == ioas => Some(*domain),
                _ => None,
            })
            .collect()
    }

    /// `IOMMU_IOAS_MAP_FILE`: maps `len` bytes of memory file `memfd` from
    /// byte `offset` at `iova`, in the IOAS and every paging HWPT over it
    /// (all or nothing). The file is pinned until the area is unmapped.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] for unknown objects; [`Errno::Inval`] for
    /// misalignment, a zero length or a range beyond the file;
    /// [`Errno::Exist`] over an existing area; [`Errno::NoSpc`] beyond
    /// [`MAX_AREAS`]; mapping errors (nothing is left mapped).
    pub fn ioas_map_file(&mut self, fd: IommufdFd, ioas: ObjId, m: &MapFile) -> Result<(), Errno> {
        let MapFile { memfd, offset, iova, len, perm } = *m;
        let (base, pages) = self.memfd_range(memfd)?;
        let Obj::Ioas { areas } = self.ictx(fd)?.get(ioas)? else { return Err(Errno::Inval) };
        if (offset | iova.raw() | len) & 0xFFF != 0 || len == 0 {
            return Err(Errno::Inval);
        }
        let end = iova.raw().checked_add(len).ok_or(Errno::Overflow)?;
        if offset.checked_add(len).is_none_or(|e| e > pages << 12) {
            return Err(Errno::Inval);
        }
        if areas.len() >= MAX_AREAS {
            return Err(Errno::NoSpc);
        }
        let overlaps = areas.range(..end).next_back().is_some_and(|(a, ar)| a + ar.len > iova.raw());
        if overlaps {
            return Err(Errno::Exist);
        }
        let pa = iommu_types::Hpa::new(base.raw() + offset);
        let mut done = Vec::new();
        for d in self.hwpts_of_ioas(fd, ioas) {
            match self.iommu.map(d, iova, pa, len, perm).and_then(|f| self.iommu.flush(f)) {
                Ok(()) => done.push(d),
                Err(e) => {
                    for d in done {
                        if let Ok(f) = self.iommu.unmap(d, iova, len) {
                            let _ = self.iommu.flush(f);
                        }
                    }
                    return Err(e);
                }
            }
        }
        if let Ok(Obj::Ioas { areas }) = self.ictx_mut(fd).and_then(|c| c.objs.get_mut(&ioas.0).ok_or(Errno::NoEnt)) {
            areas.insert(iova.raw(), Area { len, memfd, offset, perm });
        }
        self.memfd_pin(memfd);
        Ok(())
    }

    /// `IOMMU_IOAS_UNMAP`: removes every area inside [`iova`, `iova + len`)
    /// from the IOAS and its HWPTs (flushed before the file is unpinned).
    /// Returns the bytes unmapped.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] when no area lies inside the range; unknown objects.
    pub fn ioas_unmap(&mut self, fd: IommufdFd, ioas: ObjId, iova: Iova, len: u64) -> Result<u64, Errno> {
        let end = iova.raw().saturating_add(len);
        let Obj::Ioas { areas } = self.ictx(fd)?.get(ioas)? else { return Err(Errno::Inval) };
        let inside: Vec<u64> =
            areas.range(iova.raw()..end).filter(|(a, ar)| a.saturating_add(ar.len) <= end).map(|(a, _)| *a).collect();
        if inside.is_empty() {
            return Err(Errno::NoEnt);
        }
        let domains = self.hwpts_of_ioas(fd, ioas);
        let mut total = 0;
        for a in inside {
            let Ok(Obj::Ioas { areas }) = self.ictx_mut(fd).and_then(|c| c.objs.get_mut(&ioas.0).ok_or(Errno::NoEnt))
            else {
                break;
            };
            let Some(area) = areas.remove(&a) else { continue };
            for d in &domains {
                if let Ok(f) = self.iommu.unmap(*d, Iova::new(a), area.len) {
                    let _ = self.iommu.flush(f);
                }
            }
            total += area.len;
            self.memfd_unpin(area.memfd);
        }
        Ok(total)
    }

    // ---- devices -------------------------------------------------------

    /// Binds `dev` to the context (VFIO cdev bind): claims its group's DMA
    /// ownership.
    ///
    /// # Errors
    /// [`Errno::Busy`] when the group is in kernel use (an SVA bond, an
    /// attach) or owned elsewhere, or the device is bound here already.
    pub fn device_bind(&mut self, fd: IommufdFd, dev: DeviceId) -> Result<ObjId, Errno> {
        if self.ictx(fd)?.objs.values().any(|o| matches!(o, Obj::Device { dev: d, .. } if *d == dev)) {
            return Err(Errno::Busy);
        }
        self.iommu.claim_dma_owner(dev, owner(fd))?;
        match self.ictx_mut(fd)?.insert(Obj::Device { dev, vdevice: None }) {
            Ok(id) => Ok(id),
            Err(e) => {
                self.iommu.release_dma_owner(dev, owner(fd));
                Err(e)
            }
        }
    }

    /// Unbinds a device: detaches it everywhere, destroys its vdevice and
    /// releases DMA ownership.
    ///
    /// # Errors
    /// [`Errno::NoEnt`].
    pub fn device_unbind(&mut self, fd: IommufdFd, idev: ObjId) -> Result<(), Errno> {
        let dev = self.ictx(fd)?.device(idev)?;
        let group = self.iommu.group_of(dev)?;
        let keys: Vec<u32> = self
            .ictx(fd)?
            .attach
            .iter()
            .filter(|((g, _), s)| *g == group && s.devs.contains(&idev))
            .map(|((_, p), _)| *p)
            .collect();
        for p in keys {
            let pasid = if p == 0 { None } else { Some(Pasid::new_truncate(p as u64)) };
            let _ = self.device_detach(fd, idev, pasid);
        }
        let c = self.ictx_mut(fd)?;
        if let Some(Obj::Device { vdevice: Some(v), .. }) = c.objs.get(&idev.0) {
            let v = *v;
            c.objs.remove(&v.0);
        }
        c.objs.remove(&idev.0);
        self.iommu.release_dma_owner(dev, owner(fd));
        Ok(())
    }

    /// `IOMMU_GET_HW_INFO`.
    ///
    /// # Errors
    /// [`Errno::NoEnt`].
    pub fn get_hw_info(&self, fd: IommufdFd, idev: ObjId) -> Result<HwInfoOut, Errno> {
        let info = self.iommu.device(self.ictx(fd)?.device(idev)?)?;
        let hw = self.iommu.driver().hw_info();
        let log2 = if info.max_pasids > 1 && hw.pasid { 31 - info.max_pasids.leading_zeros() } else { 0 };
        Ok(HwInfoOut { max_pasid_log2: log2 as u8, data: hw.data, nesting: hw.nesting })
    }

    // ---- HWPTs ---------------------------------------------------------

    /// `IOMMU_HWPT_ALLOC` (semantics §1.3; specs 22–27): a paging HWPT over
    /// an IOAS, or a nested one over a nest-parent HWPT or a vIOMMU.
    ///
    /// # Errors
    /// As the semantics table: [`Errno::OpNotSupp`] for unknown or
    /// unsupported flags and data types; [`Errno::Inval`] for a wrong
    /// `pt_id` type, a parent that cannot nest, data length mismatches and
    /// stage-1 data the hardware refuses; [`Errno::NoEnt`] for unknown
    /// objects; [`Errno::Fault`] for missing data; [`Errno::TooBig`].
    pub fn hwpt_alloc(&mut self, fd: IommufdFd, req: &HwptAlloc<'_>) -> Result<ObjId, Errno> {
        if req.flags & !hwpt_flags::ALL != 0 {
            return Err(Errno::OpNotSupp);
        }
        let c = self.ictx(fd)?;
        let dev = c.device(req.dev_id)?;
        let info = self.iommu.device(dev)?;
        let hw = self.iommu.driver().hw_info();
        let fault = if req.flags & hwpt_flags::FAULT_ID_VALID != 0 {
            match c.get(req.fault_id)? {
                Obj::Fault(_) => Some(req.fault_id),
                _ => return Err(Errno::NoEnt),
            }
        } else {
            None
        };
        let pasid = req.flags & hwpt_flags::ALLOC_PASID != 0;
        if pasid && (!hw.pasid || info.max_pasids == 0) {
            return Err(Errno::OpNotSupp);
        }
        let obj = match c.get(req.pt_id)? {
            Obj::Ioas { areas } => {
                let nest_parent = req.flags & hwpt_flags::NEST_PARENT != 0;
                if nest_parent && fault.is_some()
                    || req.flags & hwpt_flags::DIRTY_TRACKING != 0
                    || nest_parent && !hw.nesting
                {
                    return Err(Errno::OpNotSupp);
                }
                // The data type and the length must agree (§1.3): NONE
                // with data, or a type with none, is EINVAL.
                if (req.data_type == hwpt_data::NONE) != (req.data_len == 0) {
                    return Err(Errno::Inval);
                }
                if req.data_type != hwpt_data::NONE {
                    return Err(Errno::OpNotSupp);
                }
                let areas: Vec<(u64, MemfdId, u64, u64, Perm)> =
                    areas.iter().map(|(a, ar)| (*a, ar.memfd, ar.offset, ar.len, ar.perm)).collect();
                let format = self.iommu.driver().table_format(true, 4);
                let domain = self.iommu.alloc_paging(format, nest_parent)?;
                for (iova, memfd, offset, len, perm) in areas {
                    let mapped = self.memfd_base(memfd).and_then(|base| {
                        let pa = iommu_types::Hpa::new(base.raw() + offset);
                        self.iommu.map(domain, Iova::new(iova), pa, len, perm).and_then(|f| self.iommu.flush(f))
                    });
                    if let Err(e) = mapped {
                        let _ = self.iommu.free_domain(domain);
                        return Err(e);
                    }
                }
                Obj::Paging { ioas: req.pt_id, domain, nest_parent, pasid, fault }
            }
            parent @ (Obj::Paging { .. } | Obj::Viommu { .. }) => {
                if req.flags & !(hwpt_flags::FAULT_ID_VALID | hwpt_flags::ALLOC_PASID) != 0 {
                    return Err(Errno::OpNotSupp);
                }
                let (parent_hwpt, viommu) = match parent {
                    Obj::Viommu { hwpt } => (*hwpt, Some(req.pt_id)),
                    _ => (req.pt_id, None),
                };
                let Obj::Paging { domain: parent_domain, nest_parent: true, .. } = c.get(parent_hwpt)? else {
                    return Err(Errno::Inval);
                };
                let parent_domain = *parent_domain;
                let s1 = decode_vtd_s1(req)?;
                let domain = self.iommu.alloc_nested(parent_domain, s1)?;
                Obj::Nested { parent: parent_hwpt, viommu, domain, pasid, fault }
            }
            _ => return Err(Errno::Inval),
        };
        let domain = obj.hwpt().map(|h| h.0);
        match self.ictx_mut(fd)?.insert(obj) {
            Ok(id) => Ok(id),
            Err(e) => {
                if let Some(d) = domain {
                    let _ = self.iommu.free_domain(d);
                }
                Err(e)
            }
        }
    }

    /// The core domain behind a HWPT (for inspection).
    ///
    /// # Errors
    /// [`Errno::NoEnt`], [`Errno::Inval`] for a non-HWPT.
    pub fn hwpt_domain(&self, fd: IommufdFd, hwpt: ObjId) -> Result<DomainRef, Errno> {
        self.ictx(fd)?.get(hwpt)?.hwpt().map(|h| h.0).ok_or(Errno::Inval)
    }

    /// `IOMMU_HWPT_INVALIDATE` on a nested HWPT (specs 43–46): entries are
    /// handled in order, each flushing the IOTLB and device TLBs wherever
    /// the HWPT is attached. Returns the result and the number of entries
    /// handled, which is reported even on error (partial progress).
    pub fn hwpt_invalidate(&mut self, fd: IommufdFd, id: ObjId, req: &Invalidate<'_>) -> (Result<(), Errno>, u32) {
        let domain = match self.ictx(fd).and_then(|c| c.get(id)) {
            Err(e) => return (Err(e), 0),
            Ok(Obj::Nested { domain, .. }) => *domain,
            Ok(Obj::Viommu { .. }) => return (Err(Errno::OpNotSupp), 0),
            Ok(_) => return (Err(Errno::Inval), 0),
        };
        if req.data_type != uapi::INVALIDATE_DATA_VTD_S1 {
            return (Err(Errno::Inval), 0);
        }
        if req.entry_num == 0 {
            return (Ok(()), 0);
        }
        if req.entry_len as usize != uapi::VTD_S1_INVALIDATE_LEN {
            return (Err(Errno::Inval), 0);
        }
        let Some(data) = req.data else { return (Err(Errno::Inval), 0) };
        let mut done = 0;
        for i in 0..req.entry_num as usize {
            let at = i * uapi::VTD_S1_INVALIDATE_LEN;
            let Some(Ok(bytes)) = data.get(at..at + uapi::VTD_S1_INVALIDATE_LEN).map(<&[u8; 24]>::try_from) else {
                return (Err(Errno::Fault), done);
            };
            let (start, end) = match VtdS1Invalidate::decode(bytes) {
                Ok(r) => r,
                Err(e) => return (Err(e), done),
            };
            if end > start {
                if let Err(e) = self.iommu.flush_domain_range(domain, start, end) {
                    return (Err(e), done);
                }
            }
            done += 1;
        }
        (Ok(()), done)
    }

    // ---- vIOMMU and vdevice -----------------------------------------------

    /// `IOMMU_VIOMMU_ALLOC` (spec 48) over nest-parent HWPT `hwpt`.
    ///
    /// # Errors
    /// [`Errno::OpNotSupp`] for flags or a type the IOMMU does not offer
    /// (only [`uapi::VIOMMU_TYPE_INTEL_VTD`] on VT-d); [`Errno::NoEnt`];
    /// [`Errno::Inval`] for a HWPT that is not a nest parent.
    pub fn viommu_alloc(
        &mut self,
        fd: IommufdFd,
        ty: u32,
        flags: u32,
        idev: ObjId,
        hwpt: ObjId,
    ) -> Result<ObjId, Errno> {
        if flags != 0 {
            return Err(Errno::OpNotSupp);
        }
        let c = self.ictx(fd)?;
        c.device(idev)?;
        match c.get(hwpt)? {
            Obj::Paging { nest_parent: true, .. } => {}
            _ => return Err(Errno::Inval),
        }
        let supported =
            matches!(self.iommu.driver().hw_info().data, HwInfoData::Vtd { .. }) && ty == uapi::VIOMMU_TYPE_INTEL_VTD;
        if !supported {
            return Err(Errno::OpNotSupp);
        }
        self.ictx_mut(fd)?.insert(Obj::Viommu { hwpt })
    }

    /// `IOMMU_VDEVICE_ALLOC` (spec 50): the guest's ID (`virt_id`, a
    /// virtual requester ID on VT-d) for a device in a vIOMMU.
    ///
    /// # Errors
    /// [`Errno::NoEnt`]; [`Errno::Inval`] for a non-vIOMMU or an ID beyond
    /// 16 bits; [`Errno::Exist`] for a second vdevice of the device or a
    /// virtual ID in use.
    pub fn vdevice_alloc(&mut self, fd: IommufdFd, viommu: ObjId, idev: ObjId, virt_id: u64) -> Result<ObjId, Errno> {
        let c = self.ictx(fd)?;
        let Obj::Device { vdevice, .. } = c.get(idev)? else { return Err(Errno::NoEnt) };
        if !matches!(c.get(viommu)?, Obj::Viommu { .. }) || virt_id > 0xFFFF {
            return Err(Errno::Inval);
        }
        let taken = c
            .objs
            .values()
            .any(|o| matches!(o, Obj::Vdevice { viommu: v, virt_id: x, .. } if *v == viommu && *x == virt_id));
        if vdevice.is_some() || taken {
            return Err(Errno::Exist);
        }
        let c = self.ictx_mut(fd)?;
        let id = c.insert(Obj::Vdevice { viommu, idev, virt_id })?;
        if let Some(Obj::Device { vdevice, .. }) = c.objs.get_mut(&idev.0) {
            *vdevice = Some(id);
        }
        Ok(id)
    }

    /// The device object behind virtual ID `virt_id` of `viommu`.
    pub fn vdevice_lookup(&self, fd: IommufdFd, viommu: ObjId, virt_id: u64) -> Option<ObjId> {
        self.ictx(fd).ok()?.objs.values().find_map(|o| match o {
            Obj::Vdevice { viommu: v, idev, virt_id: x } if *v == viommu && *x == virt_id => Some(*idev),
            _ => None,
        })
    }

    // ---- fault queues --------------------------------------------------

    /// `IOMMU_FAULT_QUEUE_ALLOC`.
    ///
    /// # Errors
    /// [`Errno::OpNotSupp`] for non-zero flags.
    pub fn fault_queue_alloc(&mut self, fd: IommufdFd, flags: u32) -> Result<ObjId, Errno> {
        if flags != 0 {
            return Err(Errno::OpNotSupp);
        }
        self.ictx_mut(fd)?.insert(Obj::Fault(FaultQueue { next_cookie: 1, ..Default::default() }))
    }

    /// Reads whole fault groups as 40-byte records into at most `count`
    /// bytes (spec 37–38): a group that does not fit stays undelivered.
    ///
    /// # Errors
    /// [`Errno::SPipe`] for a non-zero offset or a count that is not a
    /// multiple of the record size; [`Errno::NoEnt`], [`Errno::Inval`].
    pub fn fault_read(&mut self, fd: IommufdFd, fault: ObjId, count: usize, offset: u64) -> Result<Vec<u8>, Errno> {
        if offset != 0 || count % uapi::PGFAULT_LEN != 0 {
            return Err(Errno::SPipe);
        }
        let q = self.ictx_mut(fd)?.fault_queue(fault).ok_or(Errno::Inval)?;
        let mut out = Vec::new();
        while let Some(d) = q.undelivered.front() {
            if out.len() + d.records.len() * uapi::PGFAULT_LEN > count {
                break;
            }
            let Some(d) = q.undelivered.pop_front() else { break };
            for r in &d.records {
                out.extend_from_slice(&r.to_bytes());
            }
            q.delivered.insert(d.cookie, d);
        }
        Ok(out)
    }

    /// Writes 8-byte responses (specs 36, 39): each answers the delivered
    /// group of its cookie with SUCCESS or INVALID, once. Returns the bytes
    /// consumed, or the first error when nothing was consumed.
    ///
    /// # Errors
    /// [`Errno::SPipe`] for a non-zero offset; [`Errno::Inval`] for a length
    /// that is not a multiple of 8, an unknown cookie or a code other than
    /// SUCCESS and INVALID.
    pub fn fault_write(&mut self, fd: IommufdFd, fault: ObjId, data: &[u8], offset: u64) -> Result<usize, Errno> {
        if offset != 0 {
            return Err(Errno::SPipe);
        }
        if data.len() % uapi::PAGE_RESPONSE_LEN != 0 {
            return Err(Errno::Inval);
        }
        self.ictx(fd)?;
        let mut done = 0;
        for chunk in data.chunks_exact(uapi::PAGE_RESPONSE_LEN) {
            let Ok(b) = <&[u8; 8]>::try_from(chunk) else { break };
            let r = uapi::PageResponse::from_bytes(b);
            let code = match r.code {
                uapi::PAGE_RESP_SUCCESS => ResponseCode::Success,
                uapi::PAGE_RESP_INVALID => ResponseCode::Invalid,
                _ => break,
            };
            let q = self.ictx_mut(fd)?.fault_queue(fault).ok_or(Errno::Inval)?;
            let Some(d) = q.delivered.remove(&r.cookie) else { break };
            if let Some(resp) = self.iopf.respond(d.group, code) {
                let _ = self.respond(resp);
            }
            done += uapi::PAGE_RESPONSE_LEN;
        }
        // Bytes consumed, or the first error when nothing was.
        if done == 0 && !data.is_empty() {
            return Err(Errno::Inval);
        }
        Ok(done)
    }

    /// `poll` on a fault queue (spec 41).
    ///
    /// # Errors
    /// [`Errno::NoEnt`], [`Errno::Inval`].
    pub fn fault_poll(&mut self, fd: IommufdFd, fault: ObjId) -> Result<Poll, Errno> {
        let q = self.ictx_mut(fd)?.fault_queue(fault).ok_or(Errno::Inval)?;
        Ok(Poll { readable: !q.undelivered.is_empty(), writable: true })
    }

    /// The fault path for a group whose attach handle is a user handle:
    /// the group goes to the HWPT's fault queue and stays pending until
    /// user space answers; without a queue it is answered INVALID.
    pub(super) fn iommufd_deliver(&mut self, h: u64, group: &FaultGroup) -> Option<ResponseCode> {
        let invalid = Some(ResponseCode::Invalid);
        if h & IOMMUFD_HANDLE == 0 {
            return invalid;
        }
        let fd = IommufdFd((h >> 32) as u32 & 0x7FFF_FFFF);
        let hwpt = ObjId(h as u32);
        let Some(c) = self.ictxs.get_mut(&fd.0) else { return invalid };
        let Some((_, _, Some(fault))) = c.objs.get(&hwpt.0).and_then(Obj::hwpt) else { return invalid };
        let dev_id = c.objs.iter().find_map(|(id, o)| match o {
            Obj::Device { dev, .. } if *dev == group.dev => Some(*id),
            _ => None,
        });
        let (Some(dev_id), Some(q)) = (dev_id, c.fault_queue(fault)) else { return invalid };
        let cookie = q.next_cookie;
        q.next_cookie = q.next_cookie.wrapping_add(1).max(1);
        let records = group
            .faults
            .iter()
            .map(|f| PgFault {
                flags: if f.pasid.is_some() { pgfault_flags::PASID_VALID } else { 0 }
                    | if f.last { pgfault_flags::LAST_PAGE } else { 0 },
                dev_id,
                pasid: f.pasid.map_or(0, |p| p.raw()),
                grpid: f.grpid as u32,
                perm: [
                    (f.access.read, pgfault_perm::READ),
                    (f.access.write, pgfault_perm::WRITE),
                    (f.access.exec, pgfault_perm::EXEC),
                    (f.access.privileged, pgfault_perm::PRIV),
                ]
                .iter()
                .filter(|(on, _)| *on)
                .fold(0, |acc, (_, bit)| acc | bit),
                addr: f.addr.raw(),
                length: 4096,
                cookie,
            })
            .collect();
        q.undelivered.push_back(Delivery { cookie, group: group.id, dev: group.dev, pasid: group.pasid, records });
        None
    }

    /// Answers INVALID every group of (`dev`, `pasid`) in `fault`'s queue
    /// (detach, replace, destroy: spec 40, each exactly once).
    fn fault_abort(&mut self, fd: IommufdFd, fault: Option<ObjId>, dev: DeviceId, pasid: Option<Pasid>) {
        let Some(fault) = fault else { return };
        let Ok(c) = self.ictx_mut(fd) else { return };
        for g in c.take_groups(fault, dev, pasid) {
            if let Some(r) = self.iopf.respond(g, ResponseCode::Invalid) {
                let _ = self.respond(r);
            }
        }
    }

    // ---- attach / replace / detach ---------------------------------------

    /// Checks `hwpt` may serve (`idev`, `pasid`) and returns the device, its
    /// group and the HWPT's domain (semantics §1.3 device attach, specs
    /// 28–31, 49).
    fn check_attach(
        &self,
        fd: IommufdFd,
        idev: ObjId,
        pasid: Option<Pasid>,
        hwpt: ObjId,
    ) -> Result<(DeviceId, GroupId, DomainRef), Errno> {
        let c = self.ictx(fd)?;
        let Obj::Device { dev, vdevice } = c.get(idev)? else { return Err(Errno::NoEnt) };
        let info = self.iommu.device(*dev)?;
        let group = self.iommu.group_of(*dev)?;
        let obj = c.get(hwpt)?;
        let Some((domain, pasid_ok, _)) = obj.hwpt() else { return Err(Errno::Inval) };
        if let Obj::Nested { viommu: Some(v), .. } = obj {
            let has = vdevice.and_then(|vd| c.objs.get(&vd.0));
            if !matches!(has, Some(Obj::Vdevice { viommu, .. }) if viommu == v) {
                return Err(Errno::NoEnt);
            }
        }
        match pasid {
            Some(p) => {
                if info.max_pasids == 0 || p.raw() >= info.max_pasids || !pasid_ok {
                    return Err(Errno::Inval);
                }
                if let Some(rid) = c.attach.get(&(group, 0)) {
                    if !c.get(rid.hwpt).ok().and_then(Obj::hwpt).is_some_and(|h| h.1) {
                        return Err(Errno::Inval);
                    }
                }
            }
            None => {
                let pasids_live = c.attach.keys().any(|(g, p)| *g == group && *p != 0)
                    || !self.iommu.attached_pasids(*dev).is_empty();
                if !pasid_ok && pasids_live {
                    return Err(Errno::Inval);
                }
            }
        }
        Ok((*dev, group, domain))
    }

    /// Attaches device `idev` at `pasid` (`None`: the RID) to `hwpt`
    /// (specs 28–32): the first device of its group performs the core
    /// attach with a user attach handle; others join a matching one.
    ///
    /// # Errors
    /// [`Errno::Inval`] for incompatible HWPTs and PASIDs (see the
    /// semantics table), an IOAS or another group member on a different
    /// HWPT; [`Errno::Busy`] when this device is attached there already;
    /// [`Errno::NoEnt`] for a vIOMMU HWPT without the device's vdevice;
    /// core and driver errors.
    pub fn device_attach(
        &mut self,
        fd: IommufdFd,
        idev: ObjId,
        pasid: Option<Pasid>,
        hwpt: ObjId,
    ) -> Result<(), Errno> {
        let (dev, group, domain) = self.check_attach(fd, idev, pasid, hwpt)?;
        let k = (group, key(pasid));
        if let Some(set) = self.ictx(fd)?.attach.get(&k) {
            if set.devs.contains(&idev) {
                return Err(Errno::Busy);
            }
            if set.hwpt != hwpt {
                return Err(Errno::Inval);
            }
        } else {
            match pasid {
                Some(p) => self.iommu.attach_dev_pasid(domain, dev, p, Some(handle(fd, hwpt)))?,
                None => self.iommu.attach_rid(domain, dev)?,
            }
        }
        let c = self.ictx_mut(fd)?;
        c.attach.entry(k).or_insert_with(|| AttachSet { hwpt, devs: BTreeSet::new() }).devs.insert(idev);
        Ok(())
    }

    /// Replaces what (`idev`, `pasid`) is attached to (specs 33–35). On
    /// success the old HWPT's pending faults for it are answered INVALID;
    /// on failure the old attachment stays in effect.
    ///
    /// # Errors
    /// [`Errno::Inval`] when nothing is attached there or the new HWPT is
    /// incompatible; core and driver errors.
    pub fn device_replace(
        &mut self,
        fd: IommufdFd,
        idev: ObjId,
        pasid: Option<Pasid>,
        hwpt: ObjId,
    ) -> Result<(), Errno> {
        let group = self.iommu.group_of(self.ictx(fd)?.device(idev)?)?;
        let k = (group, key(pasid));
        let old = match self.ictx(fd)?.attach.get(&k) {
            Some(s) if s.devs.contains(&idev) => s.hwpt,
            _ => return Err(Errno::Inval),
        };
        let (dev, _, domain) = self.check_attach(fd, idev, pasid, hwpt)?;
        if old == hwpt {
            return Ok(());
        }
        match pasid {
            Some(p) => self.iommu.replace_dev_pasid(domain, dev, p, handle(fd, hwpt))?,
            None => self.iommu.replace_rid(domain, dev)?,
        }
        let old_fault = self.ictx(fd)?.get(old).ok().and_then(Obj::hwpt).and_then(|h| h.2);
        if let Some(s) = self.ictx_mut(fd)?.attach.get_mut(&k) {
            s.hwpt = hwpt;
        }
        self.fault_abort(fd, old_fault, dev, pasid);
        Ok(())
    }

    /// Detaches (`idev`, `pasid`). When the last device of the group
    /// leaves, the core detach runs (teardown, flushes, drain), and every
    /// fault of the attachment is answered INVALID.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] when not attached there.
    pub fn device_detach(&mut self, fd: IommufdFd, idev: ObjId, pasid: Option<Pasid>) -> Result<(), Errno> {
        let dev = self.ictx(fd)?.device(idev)?;
        let group = self.iommu.group_of(dev)?;
        let k = (group, key(pasid));
        let c = self.ictx_mut(fd)?;
        let set = c.attach.get_mut(&k).filter(|s| s.devs.contains(&idev)).ok_or(Errno::NoEnt)?;
        set.devs.remove(&idev);
        if !set.devs.is_empty() {
            return Ok(());
        }
        let hwpt = set.hwpt;
        c.attach.remove(&k);
        let (domain, _, fault) = c.get(hwpt)?.hwpt().ok_or(Errno::Inval)?;
        match pasid {
            Some(p) => {
                self.quiesce_pasid(dev, p);
                self.iommu.detach_dev_pasid(domain, dev, p);
            }
            None => {
                self.iommu.detach_rid(dev)?;
            }
        }
        self.fault_abort(fd, fault, dev, pasid);
        Ok(())
    }

    /// The HWPT (`idev`, `pasid`) is attached to.
    pub fn device_attached(&self, fd: IommufdFd, idev: ObjId, pasid: Option<Pasid>) -> Option<ObjId> {
        let c = self.ictx(fd).ok()?;
        let group = self.iommu.group_of(c.device(idev).ok()?).ok()?;
        c.attach.get(&(group, key(pasid))).filter(|s| s.devs.contains(&idev)).map(|s| s.hwpt)
    }

    // ---- destroy -------------------------------------------------------

    /// `IOMMU_DESTROY` (L9, specs 26, 48).
    ///
    /// # Errors
    /// [`Errno::NoEnt`]; [`Errno::Busy`] while another object or an
    /// attachment names it; [`Errno::Inval`] for a device (unbind it).
    pub fn destroy(&mut self, fd: IommufdFd, id: ObjId) -> Result<(), Errno> {
        let c = self.ictx(fd)?;
        if matches!(c.get(id)?, Obj::Device { .. }) {
            return Err(Errno::Inval);
        }
        if c.referenced(id) {
            return Err(Errno::Busy);
        }
        let c = self.ictx_mut(fd)?;
        let Some(obj) = c.objs.remove(&id.0) else { return Err(Errno::NoEnt) };
        match obj {
            Obj::Ioas { areas } => {
                for a in areas.values() {
                    self.memfd_unpin(a.memfd);
                }
            }
            Obj::Paging { domain, .. } | Obj::Nested { domain, .. } => {
                if let Err(e) = self.iommu.free_domain(domain) {
                    // The core still uses it: keep the object.
                    if let Ok(c) = self.ictx_mut(fd) {
                        c.objs.insert(id.0, obj);
                    }
                    return Err(e);
                }
            }
            Obj::Vdevice { idev, .. } => {
                if let Some(Obj::Device { vdevice, .. }) = c.objs.get_mut(&idev.0) {
                    *vdevice = None;
                }
            }
            Obj::Fault(q) => {
                let groups: Vec<_> = q.undelivered.iter().chain(q.delivered.values()).map(|d| d.group).collect();
                for g in groups {
                    if let Some(r) = self.iopf.respond(g, ResponseCode::Invalid) {
                        let _ = self.respond(r);
                    }
                }
            }
            Obj::Viommu { .. } | Obj::Device { .. } => {}
        }
        Ok(())
    }
}

/// Decodes the VT-d stage-1 block of a nested `HWPT_ALLOC` (spec 24–25).
fn decode_vtd_s1(req: &HwptAlloc<'_>) -> Result<NestedS1, Errno> {
    match req.data_type {
        // No data at all is EOPNOTSUPP (§1.3 nested row: data_len 0); type
        // NONE with data is EINVAL (spec 24).
        hwpt_data::NONE => return Err(if req.data_len == 0 { Errno::OpNotSupp } else { Errno::Inval }),
        hwpt_data::VTD_S1 => {}
        _ => return Err(Errno::OpNotSupp),
    }
    if req.data_len == 0 {
        return Err(Errno::Inval);
    }
    let data = req.data.ok_or(Errno::Fault)?;
    let data = data.get(..req.data_len as usize).ok_or(Errno::Fault)?;
    VtdS1::decode(data)?.to_nested()
}
