//! IOMMU drivers. Each programs its hardware only through
//! [`RegisterBus`](iommu_types::RegisterBus), memory
//! ([`PhysMem`](iommu_types::PhysMem)) and interrupts, as a kernel driver
//! does, so it runs unchanged on the model, on a fake, or as a guest driver
//! on a vIOMMU.
//!
//! The core ([`crate::iommu`]) talks to a driver only through
//! [`IommuDriver`], so the SMMUv3 driver slots in beside VT-d.

use iommu_types::{Gpa, Hpa, Pasid, PhysMem, SourceId};

use crate::frames::FrameAllocator;
use crate::iopf::{Fault, Response};
use crate::pasid::DeviceId;
use crate::pgtable::PtFormat;
use crate::Errno;

pub mod smmuv3;
pub mod vtd;

/// Names a domain of one IOMMU core: the instance that created it and an
/// index there. A domain of another instance is refused with `EINVAL`
/// (semantics §1.2, attach).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainRef {
    /// The IOMMU core instance.
    pub instance: u16,
    /// Index within the instance.
    pub index: u32,
}

/// What a domain translates through, as a driver needs it to program an
/// entry (VT-d PASID entry, SMMUv3 CD/STE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainConfig {
    /// No DMA gets through.
    Blocked,
    /// Output = input (pass-through).
    Identity,
    /// An OS-built second-stage table.
    SecondStage {
        /// Root table.
        root: Hpa,
        /// Paging levels (3, 4 or 5).
        levels: u8,
    },
    /// An OS-built first-stage table (DMA API on a PASID) or a process's CPU
    /// page tables (SVA).
    FirstStage {
        /// Root table.
        root: Hpa,
        /// Paging levels (4 or 5).
        levels: u8,
        /// Supervisor requests allowed (kernel address spaces).
        supervisor: bool,
    },
    /// A guest's first stage nested over a parent second stage.
    Nested {
        /// Guest first-stage root, a guest-physical address.
        fs_root: Gpa,
        /// Guest paging levels (4 or 5).
        fs_levels: u8,
        /// Supervisor requests enabled by the guest.
        sre: bool,
        /// Extended-accessed flag enabled by the guest.
        eafe: bool,
        /// Write protect enable.
        wpe: bool,
        /// The parent's second-stage root.
        ss_root: Hpa,
        /// The parent's levels.
        ss_levels: u8,
        /// The parent domain (its DID tags stage-2-only translations).
        parent: DomainRef,
    },
}

/// A domain as a driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DomainDesc {
    /// Identity.
    pub id: DomainRef,
    /// Translation.
    pub config: DomainConfig,
    /// An SVA domain (a process's page tables; page faults go to the mm).
    pub sva: bool,
}

/// A device as the core hands it to a driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceInfo {
    /// The OS's name for it.
    pub id: DeviceId,
    /// Requester ID.
    pub sid: SourceId,
    /// PASIDs supported (0: none); semantics §1.1 `max_pasids`.
    pub max_pasids: u32,
    /// ATS enabled.
    pub ats: bool,
    /// PRI enabled.
    pub pri: bool,
    /// A PCI function (false: a platform device, e.g. an SMMUv3 client
    /// with a StreamID but no PCIe capabilities).
    pub pci: bool,
}

/// Where a flush goes: one (device, PASID) a domain is attached at.
pub type FlushTarget = (DeviceInfo, Pasid);

/// The operations the core needs from an IOMMU driver (Linux's
/// `iommu_ops` / `iommu_domain_ops`, reduced to what PASID attach needs).
/// Every operation either succeeds or leaves the hardware as it was.
pub trait IommuDriver {
    /// Short name ("vt-d", "smmuv3").
    fn name(&self) -> &'static str;

    /// Sets the device up (context entry, PASID table).
    ///
    /// # Errors
    /// Driver errors; nothing is left half-built.
    fn probe_device(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        dev: &DeviceInfo,
    ) -> Result<(), Errno>;

    /// Forgets a device whose every PASID entry is gone: its context and
    /// PASID structures are torn down and freed.
    fn release_device(&mut self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, dev: &DeviceInfo);

    /// Makes (`dev`, `pasid`) translate through `new`; PASID 0 is the RID.
    /// `old` is what is installed now. Semantics §1.1: `EINVAL` means this
    /// domain is incompatible with the device (the caller may try another);
    /// on any error the old configuration is in effect.
    ///
    /// # Errors
    /// As above.
    fn set_dev_pasid(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        dev: &DeviceInfo,
        pasid: Pasid,
        new: &DomainDesc,
        old: Option<&DomainDesc>,
    ) -> Result<(), Errno>;

    /// Removes whatever (`dev`, `pasid`) translates through (the blocked
    /// domain's `set_dev_pasid`): the full teardown with flushes and page
    /// request drain. With `fault_ignore` (mm exit) the entry is left
    /// blocking silently and not drained; a later call without it finishes.
    /// Page-table structures the device no longer needs may be freed to
    /// `frames`.
    fn remove_dev_pasid(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        dev: &DeviceInfo,
        pasid: Pasid,
        fault_ignore: bool,
    );

    /// Invalidates the translations of `domain` for input addresses in
    /// [`start`, `end`) at every target (IOTLB and device TLBs);
    /// `leaf_only` when no table page was freed.
    ///
    /// # Errors
    /// Queue errors.
    fn flush_range(
        &mut self,
        mem: &dyn PhysMem,
        domain: &DomainDesc,
        targets: &[FlushTarget],
        start: u64,
        end: u64,
        leaf_only: bool,
    ) -> Result<(), Errno>;

    /// Whether PASIDs can be in use while the RID translates through `rid`
    /// (semantics L10; SMMUv3: a stage-2-only STE cannot carry a CD table).
    /// VT-d scalable mode has no such limit: the RID is just PASID 0.
    ///
    /// # Errors
    /// The errno the core returns: `EINVAL` when a PASID attach meets such
    /// a RID domain, `EBUSY` when such a RID attach meets live PASIDs.
    fn check_rid_with_pasids(&self, rid: &DomainDesc, attaching_rid: bool) -> Result<(), Errno> {
        let _ = (rid, attaching_rid);
        Ok(())
    }

    /// What `IOMMU_GET_HW_INFO` reports about this IOMMU (semantics §1.3).
    fn hw_info(&self) -> HwInfo {
        HwInfo::default()
    }

    /// Checks a guest's stage-1 data for a nested domain against what the
    /// hardware can do (semantics §5.3 #25: a 5-level guest table without
    /// 5-level support, SRE or EAFE without the capability).
    ///
    /// # Errors
    /// [`Errno::Inval`].
    fn check_nested_s1(&self, s1: &crate::iommu::NestedS1) -> Result<(), Errno> {
        let _ = s1;
        Ok(())
    }

    /// The page-table format this IOMMU walks for a first- or second-stage
    /// table of `levels` levels (VT-d §9.7/§9.8 by default; SMMUv3 walks
    /// VMSAv8-64 tables). The core builds domain tables, and the kernel
    /// process page tables, in it.
    fn table_format(&self, second_stage: bool, levels: u8) -> PtFormat {
        if second_stage {
            PtFormat::SecondStage { levels }
        } else {
            PtFormat::FirstStage { levels }
        }
    }

    /// Whether the device can take I/O page faults through this IOMMU, so
    /// the kernel registers it with the IOPF core: PRI for PCIe functions,
    /// and whatever else the IOMMU offers (SMMUv3 stalls, §3.12.2).
    fn iopf_capable(&self, dev: &DeviceInfo) -> bool {
        dev.pri
    }

    /// Whether the IOMMU may cache not-present entries (VT-d caching mode),
    /// so that new mappings need an invalidation too.
    fn caches_not_present(&self) -> bool;

    /// The domain is gone: release its tag (DID, ASID).
    fn domain_freed(&mut self, domain: DomainRef);

    /// Page requests the hardware queued since the last call, for the
    /// IOPF core, with the driver-level rules applied (stop markers
    /// dropped, requests the core cannot take answered INVALID). `lookup`
    /// names the device behind a requester ID.
    ///
    /// # Errors
    /// Register access errors.
    fn take_faults(
        &mut self,
        mem: &dyn PhysMem,
        lookup: &dyn Fn(SourceId) -> Option<DeviceId>,
    ) -> Result<FaultBatch, Errno>;

    /// Re-arms page requests after an overflow (once the IOPF core has
    /// discarded its partial requests).
    ///
    /// # Errors
    /// Register access errors.
    fn clear_fault_overflow(&mut self) -> Result<(), Errno>;

    /// Sends a page response to the device.
    ///
    /// # Errors
    /// Queue errors.
    fn send_page_response(&mut self, mem: &dyn PhysMem, dev: &DeviceInfo, r: &Response) -> Result<(), Errno>;
}

/// Vendor data of `IOMMU_GET_HW_INFO` (semantics §1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HwInfoData {
    /// No vendor data.
    #[default]
    None,
    /// Intel VT-d: the capability and extended capability registers.
    Vtd {
        /// CAP_REG.
        cap: u64,
        /// ECAP_REG.
        ecap: u64,
    },
    /// Arm SMMUv3: the ID registers.
    Smmuv3 {
        /// SMMU_IDR0–IDR5.
        idr: [u32; 6],
    },
}

/// What a driver reports about its IOMMU for `IOMMU_GET_HW_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HwInfo {
    /// Vendor registers.
    pub data: HwInfoData,
    /// Nested translation is supported (a nest parent can be allocated).
    pub nesting: bool,
    /// PASID-tagged DMA is supported (ALLOC_PASID domains can be made).
    pub pasid: bool,
}

/// What one pass over a driver's page-request queue produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultBatch {
    /// Faults for the IOPF core, in arrival order.
    pub faults: Vec<Fault>,
    /// Requests were lost to a queue overflow: discard partial groups, then
    /// [`IommuDriver::clear_fault_overflow`].
    pub overflow: bool,
}
