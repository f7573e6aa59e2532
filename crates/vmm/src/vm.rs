//! A VM: guest RAM in a host memory file, a guest kernel (the project's
//! own `os`) on a VT-d vIOMMU, assigned devices, and the VMM logic that
//! turns the guest's PASID entries into host nested attachments through
//! the host's iommufd-shaped API.
//!
//! The VMM acts on the guest's invalidations (caching mode obliges the
//! guest to issue one after every table change):
//! * PASID-cache invalidation → the guest PASID entry is read and the host
//!   attachment at the device's host PASID installed, replaced or removed
//!   (guest first stage → a nested HWPT over the VM's stage 2; guest
//!   pass-through → the stage 2 itself; anything else refused);
//! * PASID-IOTLB and device-TLB invalidations → `HWPT_INVALIDATE` on the
//!   nested HWPT (which flushes the host IOTLB and device TLB);
//! * context-cache invalidations → every PASID of the device resynced.
//!
//! What the guest cannot be trusted to do is done by the host anyway: a
//! detach always flushes the PASID cache, IOTLB and device TLB and drains
//! page requests, whatever invalidations the guest issued.
//!
//! Guest PASIDs map to host PASIDs one to one ([`PasidMode::Identity`]) or
//! through a host IOASID set with a quota ([`PasidMode::Translated`]); the
//! map is what programs the real device.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use iommu_format::vtd::inv_desc::{InvDescriptor, PasidCacheScope, PasidIotlbScope, ResponseCode as HwCode};
use iommu_format::vtd::page_req::PageRequest;
use iommu_hw::vtd::{Endpoint, EndpointDma, VtdUnit};
use iommu_os::driver::vtd::VtdDriver;
use iommu_os::driver::{DeviceInfo, IommuDriver};
use iommu_os::frames::{FrameAllocator, RangeFrames};
use iommu_os::iommu::{GroupId, Iommu};
use iommu_os::kernel::iommufd::uapi::{self, hwpt_data, hwpt_flags, PageResponse, PgFault, VtdS1, VtdS1Invalidate};
use iommu_os::kernel::iommufd::{HwptAlloc, Invalidate, IommufdFd, MapFile, ObjId};
use iommu_os::kernel::memfd::MemfdId;
use iommu_os::kernel::{GpasidBindData, IoasidSetId, Kernel};
use iommu_os::pasid::{DeviceId, LocalPolicy};
use iommu_os::Errno;
use iommu_types::{Access, Gpa, Hpa, InterruptSink, Iova, NullInterrupts, Pasid, Perm, PhysMem, SourceId};
use iommu_walk::vtd::page::{fs_only, FsWalk};

use crate::guest_mem::{DryRun, GuestMem};
use crate::viommu::{viommu_config, GuestEntry, GuestTables, TrapBus, VUnit};

/// The guest kernel: `os` over the vIOMMU and guest memory.
pub type GuestOs = Kernel<VtdDriver<TrapBus>, GuestMem, RangeFrames>;

/// How guest PASIDs become host PASIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasidMode {
    /// The guest PASID indexes the device's host PASID table directly.
    Identity,
    /// Host PASIDs come from the host's global space through a per-VM set
    /// with a quota (mediated devices, guest ENQCMD).
    Translated,
}

/// Which host interface the VMM uses for guest first-stage bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostApi {
    /// iommufd: a nested HWPT over the VM's stage 2, attached at the host
    /// PASID (the modern interface).
    Iommufd,
    /// The seed-era `bind_gpasid` / `unbind_gpasid` (removed from Linux in
    /// 5.18): the kernel nests the guest table over the device's RID
    /// domain. Needs [`PasidMode::Translated`] (host PASIDs from the VM's
    /// IOASID set); pass-through entries are refused.
    BindGpasid,
}

/// What shapes a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VmConfig {
    /// Guest RAM in 4 KiB pages.
    pub ram_pages: u64,
    /// Guest → host PASID policy.
    pub pasid_mode: PasidMode,
    /// Host PASID attachments the VM may hold at once (its nested HWPTs
    /// are bounded by the same number).
    pub max_pasids: u32,
    /// Guest page-request groups in flight at once.
    pub max_fault_groups: usize,
    /// Host interface for guest bindings.
    pub host_api: HostApi,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            ram_pages: 4096,
            pasid_mode: PasidMode::Identity,
            max_pasids: 64,
            max_fault_groups: 256,
            host_api: HostApi::Iommufd,
        }
    }
}

/// Why a VM operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VmError {
    /// The host refused.
    #[error("host: {0}")]
    Host(Errno),
    /// The guest kernel refused.
    #[error("guest: {0}")]
    Guest(Errno),
    /// No assigned device with that index.
    #[error("no assigned device {0}")]
    NoDevice(usize),
    /// The guest PASID has no host PASID (translated mode, not bound).
    #[error("guest PASID {0} has no host PASID")]
    NoHostPasid(u32),
    /// The DMA did not complete.
    #[error("DMA failed: {0:?}")]
    Dma(DmaFailure),
}

/// How a device DMA ended when it did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DmaFailure {
    /// The translation was refused (a fault was recorded, or blocked
    /// silently).
    Fault,
    /// A page request was answered with this code.
    Answered(HwCode),
    /// A page request got no answer.
    NoResponse,
    /// The page request could not be queued.
    RequestRefused,
    /// Still not translated after the retries.
    Retries,
}

/// What one device DMA does.
#[derive(Debug)]
pub enum DmaAccess<'a> {
    /// Writes these bytes.
    Write(&'a [u8]),
    /// Reads into this buffer.
    Read(&'a mut [u8]),
}

/// What the VMM did, for traces and tests (bounded log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmmEvent {
    /// A guest PASID became a host attachment (`nested`: through a nested
    /// HWPT; else the stage 2 for a pass-through entry).
    Bound {
        /// Assigned device index.
        dev: usize,
        /// Guest PASID.
        gpasid: u32,
        /// Host PASID.
        hpasid: u32,
        /// Nested (guest first stage) or stage 2 only.
        nested: bool,
        /// It replaced an earlier attachment.
        replaced: bool,
    },
    /// The host attachment of a guest PASID was removed.
    Unbound {
        /// Assigned device index.
        dev: usize,
        /// Guest PASID.
        gpasid: u32,
        /// Host PASID.
        hpasid: u32,
    },
    /// A guest entry was not turned into a host attachment.
    Refused {
        /// Assigned device index.
        dev: usize,
        /// Guest PASID.
        gpasid: u32,
        /// Why.
        errno: Errno,
    },
    /// A guest invalidation forwarded as `HWPT_INVALIDATE`.
    Invalidated {
        /// Assigned device index.
        dev: usize,
        /// Guest PASID.
        gpasid: u32,
    },
    /// A host page request forwarded into the vIOMMU's page request queue.
    FaultForwarded {
        /// Assigned device index.
        dev: usize,
        /// Guest PASID.
        gpasid: u32,
        /// Group index.
        prgi: u16,
    },
    /// A host page request the host answered itself (stage-2 side).
    FaultByHost {
        /// Assigned device index.
        dev: usize,
        /// Guest PASID.
        gpasid: u32,
        /// The answer.
        success: bool,
    },
    /// The guest's page group response passed to the host.
    FaultAnswered {
        /// Assigned device index.
        dev: usize,
        /// Guest PASID.
        gpasid: u32,
        /// Group index.
        prgi: u16,
        /// The answer.
        success: bool,
    },
}

/// Events kept at most.
pub const MAX_EVENTS: usize = 4096;

/// Counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VmStats {
    /// Invalidation descriptors the VMM handled.
    pub invalidations: u64,
    /// PASID resyncs.
    pub resyncs: u64,
    /// Page requests forwarded to the guest.
    pub faults_forwarded: u64,
    /// Page requests the host answered itself.
    pub faults_by_host: u64,
}

/// A device assigned to the VM.
#[derive(Debug, Clone)]
pub struct Assigned {
    /// The host's device.
    pub host: DeviceId,
    /// Its virtual requester ID in the guest.
    pub vsid: SourceId,
    /// The guest kernel's name for it.
    pub guest: DeviceId,
    /// The iommufd device object.
    pub idev: ObjId,
    /// PASIDs it supports.
    pub max_pasids: u32,
    endpoint: Endpoint,
    removed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shadow {
    hpasid: Pasid,
    /// The nested HWPT, or `None` for the stage 2 (pass-through entry).
    hwpt: Option<ObjId>,
    want: GuestEntry,
}

/// One VM.
#[derive(Debug)]
pub struct Vm {
    cfg: VmConfig,
    fd: IommufdFd,
    memfd: MemfdId,
    ioas: ObjId,
    s2: Option<ObjId>,
    viommu: Option<ObjId>,
    faultq: Option<ObjId>,
    set: Option<IoasidSetId>,
    ram: GuestMem,
    unit: Arc<VUnit>,
    bus: TrapBus,
    guest: GuestOs,
    devs: Vec<Assigned>,
    shadows: BTreeMap<(usize, u32), Shadow>,
    /// Guest PASIDs whose host PASID the host took away (free before
    /// unbind): not re-established until the guest entry goes away.
    revoked: BTreeSet<(usize, u32)>,
    /// (device, guest PASID, group index) → fault-queue cookie.
    pending: BTreeMap<(usize, u32, u16), u32>,
    events: VecDeque<VmmEvent>,
    /// Counters.
    pub stats: VmStats,
}

/// Guest frames start above the first MiB (left to firmware, by habit).
const GUEST_FRAMES_START: u64 = 1 << 20;
/// Page-request group indices are 9 bits (VT-d §7.5.1).
const PRGI_MASK: u32 = 0x1FF;

impl Vm {
    /// Creates a VM: guest RAM as a host memory file mapped at IOVA 0 of a
    /// new IOAS (GPA = IOVA), the vIOMMU over it, and the guest kernel
    /// probed on the vIOMMU. Devices come with [`Vm::assign_device`].
    ///
    /// # Errors
    /// Host or guest errors; nothing is left behind on the host.
    pub fn create<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        host: &mut Kernel<D, M, F>,
        host_mem: Arc<dyn PhysMem + Send + Sync>,
        cfg: VmConfig,
    ) -> Result<Self, VmError> {
        if cfg.ram_pages << 12 <= GUEST_FRAMES_START {
            return Err(VmError::Host(Errno::Inval));
        }
        let memfd = host.memfd_create(cfg.ram_pages).map_err(VmError::Host)?;
        let fd = match host.iommufd_open() {
            Ok(fd) => fd,
            Err(e) => {
                let _ = host.memfd_close(memfd);
                return Err(VmError::Host(e));
            }
        };
        let undo = |host: &mut Kernel<D, M, F>, set: Option<IoasidSetId>, e: VmError| {
            let _ = host.iommufd_close(fd);
            if let Some(s) = set {
                let _ = host.ioasid_set_free(s);
            }
            let _ = host.memfd_close(memfd);
            e
        };
        let size = cfg.ram_pages << 12;
        let ioas = match host.ioas_alloc(fd).and_then(|ioas| {
            let m = MapFile { memfd, offset: 0, iova: Iova::new(0), len: size, perm: Perm::ALL };
            host.ioas_map_file(fd, ioas, &m).map(|_| ioas)
        }) {
            Ok(i) => i,
            Err(e) => return Err(undo(host, None, VmError::Host(e))),
        };
        let set = match cfg.pasid_mode {
            PasidMode::Identity => None,
            PasidMode::Translated => match host.ioasid_set_alloc(cfg.max_pasids) {
                Ok(s) => Some(s),
                Err(e) => return Err(undo(host, None, VmError::Host(e))),
            },
        };
        let base = match host.memfd_range(memfd) {
            Ok((b, _)) => b,
            Err(e) => return Err(undo(host, set, VmError::Host(e))),
        };
        let ram = GuestMem::new(host_mem, base, size);
        let unit = Arc::new(VtdUnit::new(viommu_config(19), ram.clone(), NullInterrupts));
        let bus = TrapBus::new(unit.clone());
        let mut frames = RangeFrames::new(Hpa::new(GUEST_FRAMES_START), Hpa::new(size));
        let driver = match VtdDriver::probe(bus.clone(), &ram, &mut frames) {
            Ok(d) => d,
            Err(e) => return Err(undo(host, set, VmError::Guest(e))),
        };
        let guest = Kernel::new(Iommu::new(0, driver, ram.clone(), frames), LocalPolicy::V2);
        // Bring-up invalidations concern no device yet.
        let _ = unit.take_invalidations();
        Ok(Self {
            cfg,
            fd,
            memfd,
            ioas,
            s2: None,
            viommu: None,
            faultq: None,
            set,
            ram,
            unit,
            bus,
            guest,
            devs: Vec::new(),
            shadows: BTreeMap::new(),
            revoked: BTreeSet::new(),
            pending: BTreeMap::new(),
            events: VecDeque::new(),
            stats: VmStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VmConfig {
        &self.cfg
    }

    /// The VM's iommufd context on the host.
    pub fn iommufd(&self) -> IommufdFd {
        self.fd
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestMem {
        &self.ram
    }

    /// The vIOMMU model.
    pub fn viommu(&self) -> &VUnit {
        &self.unit
    }

    /// MMIO exits of the guest kernel to the vIOMMU.
    pub fn exits(&self) -> u64 {
        self.bus.exits()
    }

    /// The guest kernel, for inspection (changes go through
    /// [`Vm::run_guest`]).
    pub fn guest(&self) -> &GuestOs {
        &self.guest
    }

    /// The assigned devices, by index.
    pub fn devices(&self) -> &[Assigned] {
        &self.devs
    }

    /// The VMM's events so far (oldest first; at most [`MAX_EVENTS`]).
    pub fn events(&self) -> impl Iterator<Item = &VmmEvent> + '_ {
        self.events.iter()
    }

    /// The host PASID a guest PASID of device `dev` is bound to.
    pub fn host_pasid(&self, dev: usize, gpasid: Pasid) -> Option<Pasid> {
        self.shadows.get(&(dev, gpasid.raw())).map(|s| s.hpasid)
    }

    /// Guest PASIDs with a host attachment: (device, guest PASID, host
    /// PASID, nested).
    pub fn bindings(&self) -> Vec<(usize, Pasid, Pasid, bool)> {
        self.shadows
            .iter()
            .map(|((d, g), s)| (*d, Pasid::new_truncate(*g as u64), s.hpasid, s.hwpt.is_some()))
            .collect()
    }

    fn event(&mut self, e: VmmEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Assigns host device `host_dev` to the guest at virtual requester ID
    /// `vsid`: it is bound to the VM's iommufd context, its RID attached
    /// to the VM's stage 2 (guest DMA without PASID uses guest-physical
    /// addresses), given a vdevice, and added to the guest kernel. The
    /// first device also creates the stage-2 HWPT, the vIOMMU object and
    /// the fault queue. Returns the device's index.
    ///
    /// # Errors
    /// Host errors (the device is unbound again) and guest errors.
    pub fn assign_device<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        host_dev: DeviceId,
        vsid: SourceId,
    ) -> Result<usize, VmError> {
        let info = host.iommu().device(host_dev).map_err(VmError::Host)?;
        let idev = host.device_bind(self.fd, host_dev).map_err(VmError::Host)?;
        let r = self.plumb_device(host, idev, vsid);
        if let Err(e) = r {
            let _ = host.device_unbind(self.fd, idev);
            return Err(VmError::Host(e));
        }
        let index = self.devs.len();
        let guest = DeviceId(index as u32 + 1);
        let ginfo =
            DeviceInfo { id: guest, sid: vsid, max_pasids: info.max_pasids, ats: info.ats, pri: info.pri, pci: true };
        let added = self.run_guest(host, |g| g.add_device(ginfo, GroupId(guest.0)));
        if let Err(e) = added {
            let _ = host.device_unbind(self.fd, idev);
            return Err(VmError::Guest(e));
        }
        self.devs.push(Assigned {
            host: host_dev,
            vsid,
            guest,
            idev,
            max_pasids: info.max_pasids,
            endpoint: Endpoint::new(info.sid),
            removed: false,
        });
        Ok(index)
    }

    fn plumb_device<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        idev: ObjId,
        vsid: SourceId,
    ) -> Result<(), Errno> {
        let fd = self.fd;
        let s2 = match self.s2 {
            Some(s) => s,
            None => {
                let req = HwptAlloc {
                    flags: hwpt_flags::NEST_PARENT | hwpt_flags::ALLOC_PASID,
                    dev_id: idev,
                    pt_id: self.ioas,
                    ..Default::default()
                };
                let s2 = host.hwpt_alloc(fd, &req)?;
                let viommu = match host.viommu_alloc(fd, uapi::VIOMMU_TYPE_INTEL_VTD, 0, idev, s2) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = host.destroy(fd, s2);
                        return Err(e);
                    }
                };
                let q = match host.fault_queue_alloc(fd, 0) {
                    Ok(q) => q,
                    Err(e) => {
                        let _ = host.destroy(fd, viommu);
                        let _ = host.destroy(fd, s2);
                        return Err(e);
                    }
                };
                self.s2 = Some(s2);
                self.viommu = Some(viommu);
                self.faultq = Some(q);
                s2
            }
        };
        let viommu = self.viommu.ok_or(Errno::Inval)?;
        host.vdevice_alloc(fd, viommu, idev, vsid.raw() as u64)?;
        host.device_attach(fd, idev, None, s2)
    }

    fn dev(&self, dev: usize) -> Result<&Assigned, VmError> {
        self.devs.get(dev).filter(|d| !d.removed).ok_or(VmError::NoDevice(dev))
    }

    // ---- the guest runs ------------------------------------------------

    /// Runs guest kernel code, then handles the invalidations it queued on
    /// the vIOMMU (the vCPU's MMIO exits) before anything else happens in
    /// the machine.
    pub fn run_guest<R, D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        f: impl FnOnce(&mut GuestOs) -> R,
    ) -> R {
        let r = f(&mut self.guest);
        self.handle_invalidations(host);
        r
    }

    /// Acts on every invalidation the guest issued since the last call.
    pub fn handle_invalidations<D: IommuDriver, M: PhysMem, F: FrameAllocator>(&mut self, host: &mut Kernel<D, M, F>) {
        let n = self.unit.take_invalidations();
        // Resyncs are coalesced per batch: a resync reads the guest's final
        // entry and a host attach or replace flushes on its own, so doing
        // each PASID once, after the batch, gives the same host state, and
        // a guest cannot make one exit cost a full table scan per
        // descriptor.
        let mut resync_every = n.lost;
        let mut resync: BTreeSet<u32> = BTreeSet::new();
        for d in n.descriptors {
            self.stats.invalidations += 1;
            match d {
                InvDescriptor::PasidCache { scope: PasidCacheScope::Pasid(p), .. } => {
                    resync.insert(p.raw());
                }
                InvDescriptor::PasidCache { .. } | InvDescriptor::ContextCache(_) => resync_every = true,
                InvDescriptor::PasidIotlb { pasid, scope, .. } => {
                    let entry = match scope {
                        PasidIotlbScope::AllNonGlobal => VtdS1Invalidate::ALL,
                        PasidIotlbScope::Page { addr, am, ih } => VtdS1Invalidate {
                            addr: addr.raw(),
                            npages: 1u64 << am.min(52),
                            flags: if ih { uapi::VTD_INV_FLAGS_LEAF } else { 0 },
                            reserved: 0,
                        },
                    };
                    for dev in 0..self.devs.len() {
                        self.forward_invalidation(host, dev, pasid.raw(), entry);
                    }
                }
                InvDescriptor::PasidDeviceTlb { sid, pasid, global, .. } => {
                    let devs: Vec<usize> = (0..self.devs.len()).filter(|i| self.devs[*i].vsid == sid).collect();
                    for dev in devs {
                        let targets: Vec<u32> = self
                            .shadows
                            .keys()
                            .filter(|(d, g)| *d == dev && (global || *g == pasid.raw()))
                            .map(|(_, g)| *g)
                            .collect();
                        for g in targets {
                            self.forward_invalidation(host, dev, g, VtdS1Invalidate::ALL);
                        }
                    }
                }
                InvDescriptor::Iotlb { .. } | InvDescriptor::DeviceTlb { .. } => {
                    let all: Vec<(usize, u32)> = self.shadows.keys().copied().collect();
                    for (dev, g) in all {
                        self.forward_invalidation(host, dev, g, VtdS1Invalidate::ALL);
                    }
                }
                _ => {}
            }
        }
        if resync_every {
            self.resync_all(host);
        } else {
            for p in resync {
                for dev in 0..self.devs.len() {
                    self.resync(host, dev, p);
                }
            }
        }
    }

    fn forward_invalidation<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        dev: usize,
        gpasid: u32,
        entry: VtdS1Invalidate,
    ) {
        let Some(Shadow { hwpt: Some(hwpt), .. }) = self.shadows.get(&(dev, gpasid)).copied() else { return };
        let bytes = entry.to_bytes();
        let req = Invalidate {
            data_type: uapi::INVALIDATE_DATA_VTD_S1,
            entry_len: bytes.len() as u32,
            entry_num: 1,
            data: Some(&bytes),
        };
        let _ = host.hwpt_invalidate(self.fd, hwpt, &req);
        self.event(VmmEvent::Invalidated { dev, gpasid });
    }

    /// Makes every host attachment follow the guest's tables again: each
    /// PASID present in the guest's tables or shadowed now is resynced (a
    /// global PASID-cache or context-cache invalidation, lost notices).
    pub fn resync_all<D: IommuDriver, M: PhysMem, F: FrameAllocator>(&mut self, host: &mut Kernel<D, M, F>) {
        for dev in 0..self.devs.len() {
            let Ok(d) = self.dev(dev) else { continue };
            let mut pasids: BTreeSet<u32> =
                GuestTables { unit: &self.unit }.present_pasids(d.vsid, d.max_pasids).iter().map(|p| p.raw()).collect();
            pasids.extend(self.shadows.keys().filter(|(x, _)| *x == dev).map(|(_, g)| *g));
            for g in pasids {
                self.resync(host, dev, g);
            }
        }
    }

    /// Makes the host attachment of (`dev`, `gpasid`) follow the guest's
    /// PASID entry.
    fn resync<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        dev: usize,
        gpasid: u32,
    ) {
        let Ok(vsid) = self.dev(dev).map(|d| d.vsid) else { return };
        self.stats.resyncs += 1;
        let want = GuestTables { unit: &self.unit }.entry(vsid, Pasid::new_truncate(gpasid as u64));
        let cur = self.shadows.get(&(dev, gpasid)).copied();
        if matches!(want, GuestEntry::Absent) {
            self.revoked.remove(&(dev, gpasid));
        }
        if cur.map(|s| s.want) == Some(want) || self.revoked.contains(&(dev, gpasid)) {
            return;
        }
        match want {
            GuestEntry::Absent | GuestEntry::Unsupported => {
                if cur.is_some() {
                    self.unshadow(host, dev, gpasid);
                }
                if want == GuestEntry::Unsupported {
                    self.event(VmmEvent::Refused { dev, gpasid, errno: Errno::OpNotSupp });
                }
            }
            GuestEntry::FirstStage { .. } | GuestEntry::PassThrough => {
                if let Err(errno) = self.shadow(host, dev, gpasid, want, cur) {
                    self.event(VmmEvent::Refused { dev, gpasid, errno });
                }
            }
        }
    }

    fn shadow<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        dev: usize,
        gpasid: u32,
        want: GuestEntry,
        cur: Option<Shadow>,
    ) -> Result<(), Errno> {
        let fd = self.fd;
        let d = self.dev(dev).map_err(|_| Errno::NoDev)?.clone();
        if cur.is_none() && self.shadows.len() >= self.cfg.max_pasids as usize {
            return Err(Errno::NoSpc);
        }
        if gpasid == 0 || gpasid >= d.max_pasids {
            return Err(Errno::Inval);
        }
        let (hpasid, fresh) = match (cur, self.set) {
            (Some(s), _) => (s.hpasid, false),
            (None, None) => (Pasid::new_truncate(gpasid as u64), false),
            (None, Some(set)) => (host.ioasid_alloc(set)?, true),
        };
        let my_set = self.set;
        let release = |host: &mut Kernel<D, M, F>| {
            if let (true, Some(set)) = (fresh, my_set) {
                let _ = host.ioasid_free(set, hpasid);
            }
        };
        if self.cfg.host_api == HostApi::BindGpasid {
            let r = self.bind_gpasid(host, &d, gpasid, hpasid, want, cur);
            if r.is_err() {
                release(host);
            }
            return r;
        }
        let hwpt = match want {
            GuestEntry::FirstStage(s1) => {
                let data = VtdS1::from(&s1).to_bytes();
                let req = HwptAlloc {
                    flags: hwpt_flags::ALLOC_PASID | hwpt_flags::FAULT_ID_VALID,
                    dev_id: d.idev,
                    pt_id: self.viommu.ok_or(Errno::NoDev)?,
                    fault_id: self.faultq.ok_or(Errno::NoDev)?,
                    data_type: hwpt_data::VTD_S1,
                    data_len: data.len() as u32,
                    data: Some(&data),
                };
                match host.hwpt_alloc(fd, &req) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        release(host);
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        let target = match hwpt.or(self.s2) {
            Some(t) => t,
            None => {
                release(host);
                return Err(Errno::NoDev);
            }
        };
        let attached = match cur {
            Some(_) => host.device_replace(fd, d.idev, Some(hpasid), target),
            None => host.device_attach(fd, d.idev, Some(hpasid), target),
        };
        if let Err(e) = attached {
            if let Some(h) = hwpt {
                let _ = host.destroy(fd, h);
            }
            release(host);
            return Err(e);
        }
        if let Some(Shadow { hwpt: Some(old), .. }) = cur {
            let _ = host.destroy(fd, old);
            self.pending.retain(|(x, g, _), _| !(*x == dev && *g == gpasid));
        }
        self.shadows.insert((dev, gpasid), Shadow { hpasid, hwpt, want });
        self.event(VmmEvent::Bound {
            dev,
            gpasid,
            hpasid: hpasid.raw(),
            nested: hwpt.is_some(),
            replaced: cur.is_some(),
        });
        Ok(())
    }

    /// [`HostApi::BindGpasid`]: (re)binds the guest table at `hpasid` with
    /// the seed-era call; a change of table is an unbind then a bind (the
    /// call refuses a second bind of the same device-PASID with EBUSY).
    fn bind_gpasid<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        d: &Assigned,
        gpasid: u32,
        hpasid: Pasid,
        want: GuestEntry,
        cur: Option<Shadow>,
    ) -> Result<(), Errno> {
        let set = self.set.ok_or(Errno::Inval)?;
        let GuestEntry::FirstStage(s1) = want else { return Err(Errno::OpNotSupp) };
        let data = GpasidBindData::for_guest(hpasid, Pasid::new_truncate(gpasid as u64), &s1);
        if cur.is_some() {
            host.unbind_gpasid(d.host, hpasid)?;
        }
        host.bind_gpasid(d.host, set, &data)?;
        let dev = self.devs.iter().position(|x| x.idev == d.idev).ok_or(Errno::NoDev)?;
        self.shadows.insert((dev, gpasid), Shadow { hpasid, hwpt: None, want });
        self.event(VmmEvent::Bound { dev, gpasid, hpasid: hpasid.raw(), nested: true, replaced: cur.is_some() });
        Ok(())
    }

    /// Removes the host attachment of (`dev`, `gpasid`): detach (the host
    /// flushes and drains), destroy the nested HWPT, free the host PASID.
    fn unshadow<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        dev: usize,
        gpasid: u32,
    ) {
        let Some(s) = self.shadows.remove(&(dev, gpasid)) else { return };
        if let Some(d) = self.devs.get(dev) {
            match self.cfg.host_api {
                HostApi::Iommufd => {
                    let _ = host.device_detach(self.fd, d.idev, Some(s.hpasid));
                }
                HostApi::BindGpasid => {
                    let _ = host.unbind_gpasid(d.host, s.hpasid);
                }
            }
        }
        if let Some(h) = s.hwpt {
            let _ = host.destroy(self.fd, h);
        }
        if let Some(set) = self.set {
            let _ = host.ioasid_free(set, s.hpasid);
        }
        self.pending.retain(|(x, g, _), _| !(*x == dev && *g == gpasid));
        self.event(VmmEvent::Unbound { dev, gpasid, hpasid: s.hpasid.raw() });
    }

    /// The host takes a guest PASID's host PASID away while the guest
    /// still uses it ("free before unbind", spec 68): the attachment is
    /// detached with the full teardown first, then the host PASID freed.
    /// The guest's entry is not re-established until the guest removes it.
    ///
    /// # Errors
    /// [`VmError::NoHostPasid`] when it is not bound.
    pub fn revoke_pasid<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        dev: usize,
        gpasid: Pasid,
    ) -> Result<(), VmError> {
        if !self.shadows.contains_key(&(dev, gpasid.raw())) {
            return Err(VmError::NoHostPasid(gpasid.raw()));
        }
        self.unshadow(host, dev, gpasid.raw());
        self.revoked.insert((dev, gpasid.raw()));
        Ok(())
    }

    // ---- page faults -----------------------------------------------------

    /// Takes the page-request groups the host delivered to the VM's fault
    /// queue. A group whose page the guest's first stage does not map (or
    /// maps without the access) is forwarded into the vIOMMU's page request
    /// queue for the guest; a group the guest's tables do resolve is a
    /// stage-2 matter and answered by the host (SUCCESS when the address is
    /// guest RAM, INVALID otherwise). Returns the groups forwarded.
    pub fn forward_faults<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
    ) -> usize {
        let Some(q) = self.faultq else { return 0 };
        let Ok(bytes) = host.fault_read(self.fd, q, uapi::PGFAULT_LEN * 256, 0) else { return 0 };
        let mut groups: Vec<Vec<PgFault>> = Vec::new();
        for chunk in bytes.chunks_exact(uapi::PGFAULT_LEN) {
            let Ok(b) = <&[u8; uapi::PGFAULT_LEN]>::try_from(chunk) else { continue };
            let r = PgFault::from_bytes(b);
            match groups.last_mut() {
                Some(g) if g.last().is_some_and(|l| l.cookie == r.cookie) => g.push(r),
                _ => groups.push(vec![r]),
            }
        }
        let mut forwarded = 0;
        for g in groups {
            if self.forward_group(host, &g) {
                forwarded += 1;
            }
        }
        forwarded
    }

    fn answer<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        cookie: u32,
        success: bool,
    ) {
        let Some(q) = self.faultq else { return };
        let code = if success { uapi::PAGE_RESP_SUCCESS } else { uapi::PAGE_RESP_INVALID };
        let _ = host.fault_write(self.fd, q, &PageResponse { cookie, code }.to_bytes(), 0);
    }

    fn forward_group<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        records: &[PgFault],
    ) -> bool {
        let Some(last) = records.last().copied() else { return false };
        let dev = self.devs.iter().position(|d| d.idev.0 == last.dev_id && !d.removed);
        let found = dev.and_then(|dev| {
            self.shadows
                .iter()
                .find(|((x, _), s)| *x == dev && s.hpasid.raw() == last.pasid)
                .map(|((_, g), s)| (dev, *g, *s))
        });
        let Some((dev, gpasid, shadow)) = found else {
            self.answer(host, last.cookie, false);
            return false;
        };
        let access = Access {
            read: last.perm & uapi::pgfault_perm::READ != 0,
            write: last.perm & uapi::pgfault_perm::WRITE != 0,
            exec: last.perm & uapi::pgfault_perm::EXEC != 0,
            privileged: last.perm & uapi::pgfault_perm::PRIV != 0,
        };
        if let Some(ok) = self.stage2_verdict(shadow.want, last.addr, access) {
            self.answer(host, last.cookie, ok);
            self.stats.faults_by_host += 1;
            self.event(VmmEvent::FaultByHost { dev, gpasid, success: ok });
            return false;
        }
        let prgi = (last.grpid & PRGI_MASK) as u16;
        if self.pending.len() >= self.cfg.max_fault_groups || self.pending.contains_key(&(dev, gpasid, prgi)) {
            self.answer(host, last.cookie, false);
            return false;
        }
        let vsid = self.devs[dev].vsid;
        for r in records {
            let req = PageRequest {
                rid: vsid,
                pasid: Some(Pasid::new_truncate(gpasid as u64)),
                addr: Iova::new(r.addr & !0xFFF),
                read: r.perm & uapi::pgfault_perm::READ != 0,
                write: r.perm & uapi::pgfault_perm::WRITE != 0,
                exec: r.perm & uapi::pgfault_perm::EXEC != 0,
                privileged: r.perm & uapi::pgfault_perm::PRIV != 0,
                lpig: r.flags & uapi::pgfault_flags::LAST_PAGE != 0,
                prgi,
                private: [0, 0],
            };
            let _ = self.unit.page_request(&req);
        }
        self.pending.insert((dev, gpasid, prgi), last.cookie);
        self.stats.faults_forwarded += 1;
        self.event(VmmEvent::FaultForwarded { dev, gpasid, prgi });
        true
    }

    /// Whether a fault is the host's to answer: `Some(answer)` when the
    /// guest's first stage grants the access (so only the stage 2 can have
    /// failed), `None` when the guest must handle it. The VMM's walk does
    /// not touch the guest's Accessed/Dirty flags.
    fn stage2_verdict(&self, want: GuestEntry, addr: u64, access: Access) -> Option<bool> {
        let gpa = match want {
            GuestEntry::FirstStage(s1) => {
                let levels = if s1.addr_width == 57 { 5 } else { 4 };
                let w = FsWalk { root: s1.root, levels, haw: 52, fs1gp: true, wpe: s1.wpe, eafe: s1.eafe };
                let t = fs_only(&DryRun(&self.ram), &w, addr, access).ok()?;
                if !t.perm.allows(access) || !t.user && !access.privileged {
                    return None;
                }
                t.frame.raw() | addr & (t.size.bytes() - 1)
            }
            _ => addr,
        };
        Some(self.ram.host_address(Gpa::new(gpa)).is_some())
    }

    /// Passes the guest's page group responses to the host fault queue.
    /// Returns how many.
    pub fn forward_responses<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
    ) -> usize {
        let mut n = 0;
        for dev in 0..self.devs.len() {
            let vsid = self.devs[dev].vsid;
            for r in self.unit.take_responses(vsid) {
                let gpasid = r.pasid.map_or(0, |p| p.raw());
                let Some(cookie) = self.pending.remove(&(dev, gpasid, r.prgi)) else { continue };
                let success = r.code == HwCode::Success;
                self.answer(host, cookie, success);
                self.event(VmmEvent::FaultAnswered { dev, gpasid, prgi: r.prgi, success });
                n += 1;
            }
        }
        n
    }

    /// One round of the VMM's fault loop: guest invalidations, host faults
    /// forwarded, the guest's page-request handler run, its answers passed
    /// back to the host.
    pub fn pump<D: IommuDriver, M: PhysMem, F: FrameAllocator>(&mut self, host: &mut Kernel<D, M, F>) {
        self.handle_invalidations(host);
        if self.forward_faults(host) > 0 {
            let _ = self.run_guest(host, |g| g.service_page_requests());
        }
        self.forward_responses(host);
    }

    // ---- device DMA ------------------------------------------------------

    fn dma_pasid(&self, dev: usize, gpasid: Option<Pasid>) -> Result<Option<Pasid>, VmError> {
        let Some(g) = gpasid else { return Ok(None) };
        if let Some(s) = self.shadows.get(&(dev, g.raw())) {
            return Ok(Some(s.hpasid));
        }
        match self.cfg.pasid_mode {
            // The device uses the PASID the guest programmed.
            PasidMode::Identity => Ok(Some(g)),
            PasidMode::Translated => Err(VmError::NoHostPasid(g.raw())),
        }
    }

    /// The assigned device `dev` writes `data` (within one page) at `addr`
    /// of guest PASID `gpasid` (`None`: a guest-physical address without
    /// PASID). Page requests are served (host, VMM, guest) and the access
    /// retried, a few times at most.
    ///
    /// # Errors
    /// [`VmError::Dma`] when it does not complete.
    pub fn dma_write<D: IommuDriver, M: PhysMem, F: FrameAllocator, HM: PhysMem, I: InterruptSink>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        unit: &VtdUnit<HM, I>,
        dev: usize,
        gpasid: Option<Pasid>,
        addr: u64,
        data: &[u8],
    ) -> Result<(), VmError> {
        self.dma_access(host, unit, dev, gpasid, addr, DmaAccess::Write(data)).map(|_| ())
    }

    /// As [`Vm::dma_write`], reading `len` bytes.
    ///
    /// # Errors
    /// [`VmError::Dma`].
    pub fn dma_read<D: IommuDriver, M: PhysMem, F: FrameAllocator, HM: PhysMem, I: InterruptSink>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        unit: &VtdUnit<HM, I>,
        dev: usize,
        gpasid: Option<Pasid>,
        addr: u64,
        len: usize,
    ) -> Result<Vec<u8>, VmError> {
        let mut buf = vec![0u8; len];
        self.dma_access(host, unit, dev, gpasid, addr, DmaAccess::Read(&mut buf))?;
        Ok(buf)
    }

    /// One DMA of assigned device `dev` (within one page), as
    /// [`Vm::dma_write`] / [`Vm::dma_read`]; returns the host-physical
    /// address it reached.
    ///
    /// # Errors
    /// [`VmError::Dma`].
    pub fn dma_access<D: IommuDriver, M: PhysMem, F: FrameAllocator, HM: PhysMem, I: InterruptSink>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        unit: &VtdUnit<HM, I>,
        dev: usize,
        gpasid: Option<Pasid>,
        addr: u64,
        mut access: DmaAccess<'_>,
    ) -> Result<Hpa, VmError> {
        self.dev(dev)?;
        let hpasid = self.dma_pasid(dev, gpasid)?;
        for _ in 0..4 {
            let ep = &mut self.devs[dev].endpoint;
            let r = match &mut access {
                DmaAccess::Write(d) => ep.write(unit, hpasid, Iova::new(addr), d),
                DmaAccess::Read(b) => ep.read(unit, hpasid, Iova::new(addr), b),
            };
            match r {
                EndpointDma::Done(hpa) => return Ok(hpa),
                EndpointDma::Failed => return Err(VmError::Dma(DmaFailure::Fault)),
                EndpointDma::RequestRefused(_) => return Err(VmError::Dma(DmaFailure::RequestRefused)),
                EndpointDma::PageRequested(prgi) => {
                    let _ = host.service_page_requests();
                    self.pump(host);
                    match self.devs[dev].endpoint.response(unit, prgi) {
                        Some(HwCode::Success) => {}
                        Some(code) => return Err(VmError::Dma(DmaFailure::Answered(code))),
                        None => return Err(VmError::Dma(DmaFailure::NoResponse)),
                    }
                }
            }
        }
        Err(VmError::Dma(DmaFailure::Retries))
    }

    // ---- teardown --------------------------------------------------------

    /// Surprise removal of assigned device `dev`: every host attachment of
    /// it is detached (flushes, drain, faults answered), the device unbound
    /// from the VM. The guest kernel is not told (as with a yanked card);
    /// the host may then remove the device.
    ///
    /// # Errors
    /// [`VmError::NoDevice`].
    pub fn unplug<D: IommuDriver, M: PhysMem, F: FrameAllocator>(
        &mut self,
        host: &mut Kernel<D, M, F>,
        dev: usize,
    ) -> Result<(), VmError> {
        self.dev(dev)?;
        let mine: Vec<u32> = self.shadows.keys().filter(|(d, _)| *d == dev).map(|(_, g)| *g).collect();
        for g in mine {
            self.unshadow(host, dev, g);
        }
        let idev = self.devs[dev].idev;
        let _ = host.device_unbind(self.fd, idev);
        self.devs[dev].removed = true;
        Ok(())
    }

    /// Destroys the VM whatever the guest left bound (guest crash, VM kill):
    /// the iommufd context is closed (every attachment detached with the
    /// full teardown and drain, every fault answered, every object
    /// destroyed, DMA ownership released), the VM's host PASIDs freed and
    /// guest RAM returned to the host.
    pub fn destroy<D: IommuDriver, M: PhysMem, F: FrameAllocator>(self, host: &mut Kernel<D, M, F>) {
        let _ = host.iommufd_close(self.fd);
        if let Some(set) = self.set {
            let _ = host.ioasid_set_free(set);
        }
        let _ = host.memfd_close(self.memfd);
    }
}
