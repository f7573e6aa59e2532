//! The kernel: processes (mms), the global PASID space, SVA bonds and the
//! I/O page-fault path on top of the IOMMU core (semantics §1.2 SVA rows,
//! §4.5, §4.6, §4.9; rules L2–L7).
//!
//! * a bond is per (group, PASID, mm) and refcounted (L2); SVA domains are
//!   per mm, shared between devices when the driver accepts them, and
//!   freed with their last attachment (L3);
//! * an mm's global PASID lives as long as the mm (L4): unbinding keeps
//!   it, the final drop of an exited mm frees it;
//! * a CPU `munmap` invalidates every IOMMU attachment of the mm before
//!   the pages go back to the allocator (mmu notifier, §4.6);
//! * exit while bound blocks the mm's PASIDs silently and keeps the bonds
//!   (L5); page requests for a dead mm are answered INVALID.

use std::collections::BTreeMap;

use iommu_types::{Pasid, Perm, PhysMem};

use crate::driver::{DomainRef, IommuDriver};
use crate::frames::FrameAllocator;
use crate::iommu::{GroupId, HandleKind, HandleType, Iommu, MmId};
use crate::iopf::{Fault, IopfQueue, Report, Response, ResponseCode};
use crate::mm::Mm;
use crate::pasid::{enqcmd_gp_fixup, DeviceId, DevicePasids, GlobalPasids, Ia32Pasid, LocalPolicy, MmPasids};
use crate::Errno;

mod gpasid;
pub mod iommufd;
pub mod memfd;
pub use gpasid::{
    gpasid_flags, GpasidBindData, IoasidSetId, FORMAT_INTEL_VTD, GPASID_BIND_ARGSZ, MAX_IOASID_SETS,
    MAX_MDEVS_PER_PARENT, MDEV_ID_BASE,
};

/// An SVA bond (`iommu_sva`): what [`Kernel::sva_bind`] returns and
/// [`Kernel::sva_unbind`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bond {
    /// The device bound.
    pub dev: DeviceId,
    /// Its group (the bond is per group).
    pub group: GroupId,
    /// The PASID the device must tag its DMA with.
    pub pasid: Pasid,
    /// The process.
    pub mm: MmId,
}

#[derive(Debug)]
struct BondState {
    bond: Bond,
    users: u32,
    /// Bound through a driver-chosen device-local PASID.
    local: bool,
}

#[derive(Debug)]
struct Process {
    mm: Mm,
    pasids: MmPasids,
    /// SVA domains of this mm with their attachment counts (L3).
    domains: Vec<(DomainRef, u32)>,
    /// x86 linear-address masking on: the CPU ignores upper address bits
    /// the IOMMU would not, so the mm cannot be shared with devices.
    lam: bool,
    /// IA32_PASID of each thread.
    threads: Vec<Ia32Pasid>,
    exited: bool,
}

/// Processes the kernel holds at most (bounded like everything else a
/// user can make it allocate).
pub const MAX_PROCESSES: usize = 4096;

/// What happened to one reported page-request group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultOutcome {
    /// The device.
    pub dev: DeviceId,
    /// PASID of the group.
    pub pasid: Option<Pasid>,
    /// Page request group index.
    pub grpid: u16,
    /// The answer sent.
    pub code: ResponseCode,
}

/// The kernel over one IOMMU instance.
#[derive(Debug)]
pub struct Kernel<D, M, F> {
    iommu: Iommu<D, M, F>,
    pasids: GlobalPasids,
    device_pasids: BTreeMap<DeviceId, DevicePasids>,
    policy: LocalPolicy,
    procs: BTreeMap<MmId, Process>,
    next_mm: u32,
    bonds: BTreeMap<(GroupId, u32), BondState>,
    iopf: IopfQueue,
    sets: BTreeMap<IoasidSetId, gpasid::IoasidSet>,
    guests: BTreeMap<(DeviceId, u32), gpasid::GuestBinding>,
    /// Aux domains in use, with their parent, PASID and users.
    aux: BTreeMap<DomainRef, gpasid::AuxAttachment>,
    /// Mediated devices → their parent (a physical device).
    mdevs: BTreeMap<DeviceId, DeviceId>,
    aux_used: std::collections::BTreeSet<DomainRef>,
    normal: std::collections::BTreeSet<DomainRef>,
    ictxs: BTreeMap<u32, iommufd::Ictx>,
    next_fd: u32,
    memfds: BTreeMap<u32, memfd::Memfd>,
    next_memfd: u32,
}

impl<D: IommuDriver, M: PhysMem, F: FrameAllocator> Kernel<D, M, F> {
    /// A kernel over `iommu`, with the device-local PASID rules of `policy`.
    pub fn new(iommu: Iommu<D, M, F>, policy: LocalPolicy) -> Self {
        Self {
            iommu,
            pasids: GlobalPasids::new(),
            device_pasids: BTreeMap::new(),
            policy,
            procs: BTreeMap::new(),
            next_mm: 1,
            bonds: BTreeMap::new(),
            iopf: IopfQueue::new(),
            sets: BTreeMap::new(),
            guests: BTreeMap::new(),
            aux: BTreeMap::new(),
            mdevs: BTreeMap::new(),
            aux_used: Default::default(),
            normal: Default::default(),
            ictxs: BTreeMap::new(),
            next_fd: 1,
            memfds: BTreeMap::new(),
            next_memfd: 1,
        }
    }

    /// The IOMMU core.
    pub fn iommu(&self) -> &Iommu<D, M, F> {
        &self.iommu
    }

    /// The IOMMU core, mutably (attach, map, fault injection).
    pub fn iommu_mut(&mut self) -> &mut Iommu<D, M, F> {
        &mut self.iommu
    }

    /// The global PASID allocator.
    pub fn global_pasids(&self) -> &GlobalPasids {
        &self.pasids
    }

    /// The global PASID allocator, mutably (other kernel users take PASIDs
    /// from it too, e.g. `iommu_alloc_global_pasid`).
    pub fn global_pasids_mut(&mut self) -> &mut GlobalPasids {
        &mut self.pasids
    }

    /// The I/O page-fault queue.
    pub fn iopf(&self) -> &IopfQueue {
        &self.iopf
    }

    /// Adds a device (see [`Iommu::add_device`]) and, with PRI, registers
    /// it for I/O page faults and gives it a device-local PASID space.
    ///
    /// # Errors
    /// [`Errno::Inval`] for an id at or above [`MDEV_ID_BASE`] (those name
    /// mediated devices); as [`Iommu::add_device`].
    pub fn add_device(&mut self, info: crate::driver::DeviceInfo, group: GroupId) -> Result<(), Errno> {
        if info.id.0 >= MDEV_ID_BASE {
            return Err(Errno::Inval);
        }
        self.iommu.add_device(info, group)?;
        if self.iommu.driver().iopf_capable(&info) {
            let _ = self.iopf.add_device(info.id);
        }
        if info.max_pasids > 0 {
            self.device_pasids.insert(info.id, DevicePasids::new(info.max_pasids));
        }
        Ok(())
    }

    // ---- processes -----------------------------------------------------

    /// A new process with an empty address space and one thread.
    ///
    /// # Errors
    /// [`Errno::NoMem`]; [`Errno::NoSpc`] beyond [`MAX_PROCESSES`].
    pub fn create_process(&mut self) -> Result<MmId, Errno> {
        if self.procs.len() >= MAX_PROCESSES {
            return Err(Errno::NoSpc);
        }
        // The process's page tables are what SVA hands the IOMMU: in its
        // first-stage format (x86-64 for VT-d, VMSAv8-64 for SMMUv3).
        let format = self.iommu.driver().table_format(false, 4);
        let (mem, frames) = self.iommu.mem_frames();
        let mm = Mm::with_format(mem, frames, format)?;
        let id = MmId(self.next_mm);
        self.next_mm = self.next_mm.wrapping_add(1).max(1);
        let proc = Process {
            mm,
            pasids: MmPasids::default(),
            domains: Vec::new(),
            threads: vec![Ia32Pasid::default()],
            lam: false,
            exited: false,
        };
        self.procs.insert(id, proc);
        Ok(id)
    }

    fn proc(&self, mm: MmId) -> Result<&Process, Errno> {
        self.procs.get(&mm).ok_or(Errno::NoEnt)
    }

    fn proc_mut(&mut self, mm: MmId) -> Result<&mut Process, Errno> {
        self.procs.get_mut(&mm).ok_or(Errno::NoEnt)
    }

    fn live_mut(&mut self, mm: MmId) -> Result<&mut Process, Errno> {
        match self.procs.get_mut(&mm) {
            Some(p) if !p.exited => Ok(p),
            Some(_) => Err(Errno::Fault),
            None => Err(Errno::NoEnt),
        }
    }

    /// The process's address space.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] for an unknown (or finally dropped) mm.
    pub fn mm(&self, mm: MmId) -> Result<&Mm, Errno> {
        Ok(&self.proc(mm)?.mm)
    }

    /// The process's PASIDs.
    ///
    /// # Errors
    /// [`Errno::NoEnt`].
    pub fn mm_pasids(&self, mm: MmId) -> Result<&MmPasids, Errno> {
        Ok(&self.proc(mm)?.pasids)
    }

    /// Whether the kernel still holds `mm` (exited mms are held until
    /// their last SVA domain is gone).
    pub fn mm_exists(&self, mm: MmId) -> bool {
        self.procs.contains_key(&mm)
    }

    /// `mmap` in the process.
    ///
    /// # Errors
    /// As [`Mm::mmap`]; [`Errno::Fault`] after exit.
    pub fn mmap(&mut self, mm: MmId, addr: Option<u64>, len: u64, perm: Perm) -> Result<u64, Errno> {
        self.live_mut(mm)?.mm.mmap(addr, len, perm)
    }

    /// A CPU store into the process (pages fault in).
    ///
    /// # Errors
    /// As [`Mm::write`].
    pub fn cpu_write(&mut self, mm: MmId, addr: u64, data: &[u8]) -> Result<(), Errno> {
        let p = self.procs.get_mut(&mm).filter(|p| !p.exited).ok_or(Errno::Fault)?;
        let (mem, frames) = self.iommu.mem_frames();
        p.mm.write(mem, frames, addr, data)
    }

    /// A CPU load from the process (pages fault in).
    ///
    /// # Errors
    /// As [`Mm::read`].
    pub fn cpu_read(&mut self, mm: MmId, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let p = self.procs.get_mut(&mm).filter(|p| !p.exited).ok_or(Errno::Fault)?;
        let (mem, frames) = self.iommu.mem_frames();
        p.mm.read(mem, frames, addr, buf)
    }

    /// CPU `munmap`: the PTEs go, then the mmu notifier invalidates the
    /// range in every IOMMU attachment of the mm's SVA domains (PASID-based
    /// IOTLB and device TLB, §4.6), and only then are the pages freed.
    ///
    /// # Errors
    /// As [`Mm::munmap`]; queue errors (the pages are then kept, never
    /// reused while a device may still reach them).
    pub fn munmap(&mut self, mm: MmId, addr: u64, len: u64) -> Result<(), Errno> {
        let mem = self.iommu.mem();
        let p = self.procs.get_mut(&mm).filter(|p| !p.exited).ok_or(Errno::Fault)?;
        let obligation = p.mm.munmap(mem, addr, len)?;
        let domains: Vec<DomainRef> = p.domains.iter().map(|(d, _)| *d).collect();
        let (start, end) = (obligation.start(), obligation.end());
        for d in domains {
            self.iommu.flush_domain_range(d, start, end)?;
        }
        obligation.complete(self.iommu.frames_mut());
        Ok(())
    }

    /// Process exit (semantics L5, §4.5): every PASID of the mm's SVA
    /// domains is made to block silently (VT-d: P clear, FPD set, no drain),
    /// the address space is torn down, the bonds stay until unbound. With
    /// no SVA domain left the mm is dropped at once and its PASID freed.
    ///
    /// # Errors
    /// [`Errno::NoEnt`]; [`Errno::Fault`] if it already exited.
    pub fn exit(&mut self, mm: MmId) -> Result<(), Errno> {
        let p = self.live_mut(mm)?;
        p.exited = true;
        let domains: Vec<DomainRef> = p.domains.iter().map(|(d, _)| *d).collect();
        for d in domains {
            for (dev, pasid) in self.iommu.domain_attachments(d) {
                self.iommu.block_dev_pasid_silently(dev, pasid);
            }
        }
        let mem = self.iommu.mem();
        let p = self.procs.get_mut(&mm).ok_or(Errno::NoEnt)?;
        let obligation = p.mm.exit(mem);
        obligation.complete(self.iommu.frames_mut());
        self.maybe_drop_mm(mm);
        Ok(())
    }

    /// The mm's final drop (`__mmdrop`): once exited and without SVA
    /// domains, its PASID returns to the allocator (L4).
    fn maybe_drop_mm(&mut self, mm: MmId) {
        if !self.procs.get(&mm).is_some_and(|p| p.exited && p.domains.is_empty()) {
            return;
        }
        if let Some(p) = self.procs.remove(&mm) {
            p.pasids.drop_mm(&mut self.pasids);
            let (mem, frames) = self.iommu.mem_frames();
            p.mm.destroy(mem, frames);
        }
    }

    /// A new thread in the process, with a clear IA32_PASID; returns its
    /// index.
    ///
    /// # Errors
    /// [`Errno::Fault`] after exit; [`Errno::NoSpc`] beyond 1024 threads.
    pub fn spawn_thread(&mut self, mm: MmId) -> Result<usize, Errno> {
        let p = self.live_mut(mm)?;
        if p.threads.len() >= 1024 {
            return Err(Errno::NoSpc);
        }
        p.threads.push(Ia32Pasid::default());
        Ok(p.threads.len() - 1)
    }

    /// A thread's IA32_PASID.
    pub fn ia32_pasid(&self, mm: MmId, thread: usize) -> Option<Ia32Pasid> {
        self.procs.get(&mm)?.threads.get(thread).copied()
    }

    /// Enables x86 LAM for the mm (`arch_prctl(ARCH_ENABLE_TAGGED_ADDR)`).
    ///
    /// # Errors
    /// [`Errno::Busy`] once the mm has SVA domains (the kernel refuses LAM
    /// on an mm shared with devices); [`Errno::Fault`] after exit.
    pub fn enable_lam(&mut self, mm: MmId) -> Result<(), Errno> {
        let p = self.live_mut(mm)?;
        if !p.domains.is_empty() {
            return Err(Errno::Busy);
        }
        p.lam = true;
        Ok(())
    }

    /// Removes a device (semantics L7): it must have no bond or PASID
    /// attachment left, and no mediated device under it; its pending
    /// page-request groups are answered INVALID and its partial requests
    /// dropped before the IOMMU forgets it.
    ///
    /// # Errors
    /// [`Errno::Busy`] while it parents mdevs; as [`Iommu::remove_device`].
    pub fn remove_device(&mut self, dev: DeviceId) -> Result<(), Errno> {
        let info = self.iommu.device(dev)?;
        if self.mdevs.values().any(|p| *p == dev)
            || (info.max_pasids > 0 && !self.iommu.attached_pasids(dev).is_empty())
        {
            return Err(Errno::Busy);
        }
        for r in self.iopf.remove_device(dev) {
            let _ = self.respond(r);
        }
        self.device_pasids.remove(&dev);
        self.iommu.remove_device(dev)
    }

    /// A thread executes ENQCMD: with a valid IA32_PASID it proceeds; else
    /// the #GP fix-up loads the mm's global PASID once (spec 71). Returns
    /// the PASID the instruction carries.
    ///
    /// # Errors
    /// [`Errno::Fault`] when the #GP stands (no global PASID).
    pub fn enqcmd(&mut self, mm: MmId, thread: usize) -> Result<Pasid, Errno> {
        let p = self.live_mut(mm)?;
        let pasids = p.pasids.clone();
        let msr = p.threads.get_mut(thread).ok_or(Errno::Inval)?;
        if msr.0 & Ia32Pasid::VALID == 0 && !enqcmd_gp_fixup(msr, &pasids) {
            return Err(Errno::Fault);
        }
        Ok(Pasid::new_truncate(msr.0 & 0xF_FFFF))
    }

    // ---- SVA -----------------------------------------------------------

    /// `iommu_sva_bind_device` (semantics §1.2, specs 1–9): the mm's global
    /// PASID (allocated on first bind and kept), then the same bond again
    /// if (group, PASID) already holds this mm, else an existing SVA domain
    /// of the mm if the driver accepts it, else a new one.
    ///
    /// # Errors
    /// [`Errno::NoDev`] (no PASID allocated); [`Errno::Overflow`],
    /// [`Errno::NoSpc`], [`Errno::Busy`] (mixed kinds under v2, or the slot
    /// used by something else); [`Errno::Fault`] for an exited mm; driver
    /// errors; [`Errno::Busy`] for an mm with LAM enabled (spec 12).
    pub fn sva_bind(&mut self, dev: DeviceId, mm: MmId) -> Result<Bond, Errno> {
        let info = self.iommu.device(dev)?;
        let policy = self.policy;
        let p = self.live_mut(mm)?;
        if p.lam {
            return Err(Errno::Busy);
        }
        let mut pasids = p.pasids.clone();
        let pasid = pasids.acquire_global(&mut self.pasids, info.max_pasids, policy)?;
        // Kept even if the rest fails (L4).
        self.proc_mut(mm)?.pasids = pasids;
        self.bind_at(dev, mm, pasid, false)
    }

    /// `iommu_sva_bind_device_pasid` (the 2026 proposal, spec 70): binds at
    /// a PASID the device's driver chose from the device's own space.
    ///
    /// # Errors
    /// [`Errno::Inval`] for PASID 0; [`Errno::Overflow`] beyond the device's
    /// `max_pasids`; under v2 [`Errno::Busy`] when the mm uses its global
    /// PASID and [`Errno::NoSpc`] for a second local value; as
    /// [`Kernel::sva_bind`] otherwise.
    pub fn sva_bind_device_pasid(&mut self, dev: DeviceId, mm: MmId, pasid: Pasid) -> Result<Bond, Errno> {
        let info = self.iommu.device(dev)?;
        let policy = self.policy;
        let group = self.iommu.group_of(dev)?;
        let p = self.live_mut(mm)?;
        if p.lam {
            return Err(Errno::Busy);
        }
        let mut pasids = p.pasids.clone();
        pasids.acquire_local(dev, pasid, info.max_pasids, policy)?;
        let existing = self.bonds.contains_key(&(group, pasid.raw()));
        if !existing {
            let space = self.device_pasids.get_mut(&dev).ok_or(Errno::Inval)?;
            space.claim(pasid)?;
        }
        match self.bind_at(dev, mm, pasid, true) {
            Ok(b) => {
                self.proc_mut(mm)?.pasids = pasids;
                Ok(b)
            }
            Err(e) => {
                if !existing {
                    if let Some(space) = self.device_pasids.get_mut(&dev) {
                        let _ = space.free(pasid);
                    }
                }
                Err(e)
            }
        }
    }

    fn bind_at(&mut self, dev: DeviceId, mm: MmId, pasid: Pasid, local: bool) -> Result<Bond, Errno> {
        let group = self.iommu.group_of(dev)?;
        if let Some(b) = self.bonds.get_mut(&(group, pasid.raw())) {
            if b.bond.mm == mm {
                b.users += 1;
                return Ok(b.bond);
            }
            return Err(Errno::Busy);
        }
        if self.iommu.pasid_domain(dev, pasid).is_some() {
            return Err(Errno::Busy);
        }
        let handle = Some(HandleKind::Sva(mm));
        let candidates: Vec<DomainRef> = self.proc(mm)?.domains.iter().map(|(d, _)| *d).collect();
        let mut chosen = None;
        for d in candidates {
            match self.iommu.attach_dev_pasid(d, dev, pasid, handle) {
                Ok(()) => {
                    chosen = Some(d);
                    break;
                }
                Err(Errno::Inval) => continue,
                Err(e) => return Err(e),
            }
        }
        let d = match chosen {
            Some(d) => d,
            None => {
                let cr3 = self.proc(mm)?.mm.cr3();
                let d = self.iommu.alloc_sva(mm, cr3)?;
                if let Err(e) = self.iommu.attach_dev_pasid(d, dev, pasid, handle) {
                    let _ = self.iommu.free_domain(d);
                    return Err(e);
                }
                self.proc_mut(mm)?.domains.push((d, 0));
                d
            }
        };
        if let Some(entry) = self.proc_mut(mm)?.domains.iter_mut().find(|(x, _)| *x == d) {
            entry.1 += 1;
        }
        let bond = Bond { dev, group, pasid, mm };
        self.bonds.insert((group, pasid.raw()), BondState { bond, users: 1, local });
        Ok(bond)
    }

    /// How many binds a bond carries (0 once gone).
    pub fn bond_users(&self, bond: &Bond) -> u32 {
        self.bonds.get(&(bond.group, bond.pasid.raw())).filter(|b| b.bond == *bond).map_or(0, |b| b.users)
    }

    /// The SVA domains of an mm with their attachment counts.
    pub fn sva_domains(&self, mm: MmId) -> Vec<(DomainRef, u32)> {
        self.procs.get(&mm).map(|p| p.domains.clone()).unwrap_or_default()
    }

    /// `iommu_sva_unbind_device`: drops one user; the last one detaches
    /// the PASID (teardown with flushes and drain), answers INVALID to the
    /// PASID's pending page requests, drops the SVA domain's count and
    /// frees it at zero. The global PASID stays with the mm (L4); an exited
    /// mm is finally dropped with its last domain.
    pub fn sva_unbind(&mut self, bond: &Bond) {
        let key = (bond.group, bond.pasid.raw());
        let Some(b) = self.bonds.get_mut(&key).filter(|b| b.bond == *bond) else { return };
        b.users -= 1;
        if b.users > 0 {
            return;
        }
        let local = b.local;
        self.bonds.remove(&key);
        let Ok(handle) = self.iommu.attach_handle_get(bond.dev, bond.pasid, HandleType::Sva) else { return };
        let d = handle.domain;
        self.quiesce_pasid(bond.dev, bond.pasid);
        self.iommu.detach_dev_pasid(d, bond.dev, bond.pasid);
        if local {
            if let Some(space) = self.device_pasids.get_mut(&bond.dev) {
                let _ = space.free(bond.pasid);
            }
        }
        let mut free = false;
        if let Some(p) = self.procs.get_mut(&bond.mm) {
            if local {
                p.pasids.release_local(bond.dev, bond.pasid);
            }
            if let Some(i) = p.domains.iter().position(|(x, _)| *x == d) {
                p.domains[i].1 -= 1;
                if p.domains[i].1 == 0 {
                    p.domains.remove(i);
                    free = true;
                }
            }
        }
        if free {
            let _ = self.iommu.free_domain(d);
        }
        self.maybe_drop_mm(bond.mm);
    }

    // ---- I/O page faults ----------------------------------------------

    /// The page-request interrupt handler: takes every queued request from
    /// the driver, reports each to the IOPF core and answers complete
    /// groups; after an overflow the partial groups are discarded before
    /// the driver re-arms the queue (spec 58). Returns the groups answered.
    ///
    /// # Errors
    /// Driver errors reading the queue.
    pub fn service_page_requests(&mut self) -> Result<Vec<FaultOutcome>, Errno> {
        let sids: BTreeMap<u16, DeviceId> = self.iommu.devices().map(|i| (i.sid.raw(), i.id)).collect();
        let (driver, mem) = self.iommu.driver_and_mem();
        let batch = driver.take_faults(mem, &|sid| sids.get(&sid.raw()).copied())?;
        let mut out = Vec::new();
        for f in batch.faults {
            out.extend(self.report_fault(f));
        }
        if batch.overflow {
            self.iopf.discard_partial();
            self.iommu.driver_mut().clear_fault_overflow()?;
        }
        Ok(out)
    }

    /// Semantics §4.4 steps 2–3, before a PASID's teardown and drain: the
    /// requests already queued are handled, and every group of the PASID
    /// still pending on any member of `dev`'s group is answered INVALID.
    fn quiesce_pasid(&mut self, dev: DeviceId, pasid: Pasid) {
        let _ = self.service_page_requests();
        let Ok(group) = self.iommu.group_of(dev) else { return };
        for m in self.iommu.group_members(group) {
            for r in self.iopf.flush_pasid(m, Some(pasid)) {
                let _ = self.respond(r);
            }
        }
    }

    /// Sends a page response through the driver.
    fn respond(&mut self, r: Response) -> Result<(), Errno> {
        let info = self.iommu.device(r.dev)?;
        let (driver, mem) = self.iommu.driver_and_mem();
        driver.send_page_response(mem, &info, &r)
    }

    /// Handles one page request (semantics §4.9): non-last requests wait
    /// in the partial list; a group complete is handled by the SVA handler
    /// of the (group, PASID)'s handle and answered SUCCESS when every fault
    /// resolved, INVALID otherwise (no handle, no SVA handle, dead mm,
    /// access the VMA forbids). Returns the group's outcome when one was
    /// answered.
    pub fn report_fault(&mut self, fault: Fault) -> Option<FaultOutcome> {
        match self.iopf.report(fault) {
            Report::Partial | Report::Dropped => None,
            Report::Respond(r) => {
                let out = FaultOutcome { dev: r.dev, pasid: r.pasid, grpid: r.grpid, code: r.code };
                let _ = self.respond(r);
                Some(out)
            }
            Report::Group(group) => {
                let user = group
                    .pasid
                    .and_then(|p| self.iommu.attach_handle_get(group.dev, p, HandleType::User).ok())
                    .and_then(|h| match h.kind {
                        HandleKind::User(h) => Some(h),
                        HandleKind::Sva(_) => None,
                    });
                let code = match user {
                    // Delivered to user space, answered when it responds.
                    Some(h) => self.iommufd_deliver(h, &group)?,
                    None => self.sva_handle(group.dev, group.pasid, &group.faults),
                };
                let r = self.iopf.respond(group.id, code)?;
                let out = FaultOutcome { dev: r.dev, pasid: r.pasid, grpid: r.grpid, code: r.code };
                let _ = self.respond(r);
                Some(out)
            }
        }
    }

    /// The SVA fault handler: faults in order, the first error sticky.
    fn sva_handle(&mut self, dev: DeviceId, pasid: Option<Pasid>, faults: &[Fault]) -> ResponseCode {
        let Some(pasid) = pasid else { return ResponseCode::Invalid };
        let Ok(handle) = self.iommu.attach_handle_get(dev, pasid, HandleType::Sva) else {
            return ResponseCode::Invalid;
        };
        let HandleKind::Sva(mm) = handle.kind else { return ResponseCode::Invalid };
        let Some(p) = self.procs.get_mut(&mm).filter(|p| !p.exited) else { return ResponseCode::Invalid };
        let (mem, frames) = self.iommu.mem_frames();
        for f in faults {
            let access = f.access;
            if p.mm.handle_fault(mem, frames, f.addr.raw(), access).is_err() {
                return ResponseCode::Invalid;
            }
        }
        ResponseCode::Success
    }
}
