//! Scenario files: a machine (IOMMU, memory), its devices, processes and
//! VMs, and a timeline of operations with expectations. `docs/SCENARIOS.md`
//! is the reference of every key; [`parse`] turns TOML text into a checked
//! [`Scenario`] or one [`ScenarioError`] with file, line and what was
//! expected. Names are resolved here, so the engine never meets an unknown
//! device or an undefined bond.

mod error;
mod parse;

use iommu_format::smmuv3::event::EventId;
use iommu_format::vtd::fault::FaultReason;
use iommu_format::vtd::inv_desc::ResponseCode;
use iommu_os::Errno;
use iommu_types::{Perm, SourceId};

pub use error::ScenarioError;
pub use parse::{load, parse};

/// Which IOMMU the machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IommuKind {
    /// Intel VT-d, scalable mode.
    Vtd,
    /// Arm SMMUv3 (PASIDs are SubstreamIDs; no VMs).
    Smmuv3,
}

/// The architectural code of a refused DMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultCode {
    /// A VT-d fault reason (VT-d §7.1.3).
    Vtd(FaultReason),
    /// An SMMUv3 event number (SMMUv3 §7.3).
    Smmu(EventId),
}

impl std::fmt::Display for FaultCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultCode::Vtd(r) => write!(f, "{:#04x} {r:?}", u8::from(*r)),
            FaultCode::Smmu(e) => write!(f, "{:#04x} {}", *e as u8, e.name()),
        }
    }
}

/// The machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineSpec {
    /// The IOMMU.
    pub iommu: IommuKind,
    /// Host memory in MiB.
    pub memory_mib: u64,
    /// PASID width of the IOMMU (ECAP.PSS + 1), 1..=20.
    pub pasid_bits: u8,
    /// Per-device PASID policy of the kernel (`v2` or `v3`).
    pub policy: iommu_os::pasid::LocalPolicy,
}

/// Which invariant checkers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Checks {
    /// Every completed DMA reached only memory mapped for its attachment.
    pub isolation: bool,
    /// No cached translation disagrees with the tables after a step.
    pub stale: bool,
    /// At the end the host holds nothing more than before the first step.
    pub leaks: bool,
    /// Guest-created host state stays within each VM's budget.
    pub bounds: bool,
}

impl Default for Checks {
    fn default() -> Self {
        Self { isolation: true, stale: true, leaks: true, bounds: true }
    }
}

/// A device of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Its name in the scenario.
    pub name: String,
    /// Requester ID.
    pub sid: SourceId,
    /// PASIDs it supports (0: none).
    pub pasids: u32,
    /// ATS (a device TLB).
    pub ats: bool,
    /// PRI (page requests).
    pub pri: bool,
    /// PCI (false: a platform device).
    pub pci: bool,
    /// Its IOMMU group.
    pub group: u32,
    /// For a mediated device: its parent (a device index). It then has
    /// the parent's requester ID and capabilities.
    pub parent: Option<usize>,
}

/// A process (host, or guest inside a VM) and its initial mappings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Its name.
    pub name: String,
    /// `mmap`s done when it is created.
    pub maps: Vec<MapSpec>,
}

/// One mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSpec {
    /// Start (page aligned).
    pub va: u64,
    /// Length in bytes.
    pub len: u64,
    /// Permissions.
    pub perm: Perm,
}

/// A VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// Its name.
    pub name: String,
    /// Guest RAM in MiB.
    pub ram_mib: u64,
    /// Guest → host PASID policy.
    pub pasid_mode: iommu_vmm::PasidMode,
    /// Host interface for guest bindings.
    pub host_api: iommu_vmm::HostApi,
    /// Host PASID attachments the VMM lets the VM hold.
    pub max_pasids: u32,
    /// Guest page-request groups in flight.
    pub max_fault_groups: usize,
    /// Assigned devices: (host device index, guest requester ID).
    pub devices: Vec<(usize, SourceId)>,
    /// Guest processes.
    pub processes: Vec<ProcessSpec>,
    /// What the bounds checker allows this VM's host state to reach.
    pub budget: Budget,
}

/// Bounds on the host state a VM may make the host hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Budget {
    /// Host PASIDs attached for the VM.
    pub pasids: u32,
    /// Page-request groups pending for the VM's devices.
    pub fault_groups: usize,
    /// Objects in the VM's iommufd context.
    pub objects: usize,
}

/// Where an operation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ctx {
    /// The host kernel.
    Host,
    /// The guest kernel of VM `n`.
    Vm(usize),
}

/// How a DMA names its address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DmaSpace {
    /// No PASID (requests-without-PASID: the RID's domain).
    Rid,
    /// This PASID value.
    Pasid(u32),
    /// The PASID of bond `n` of the step's context.
    Bond(usize),
}

/// Fault-injection: what to write into a leaf page-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PteValue {
    /// This raw value.
    Raw(u64),
    /// Point at the frame of (host process, address), keeping the other bits.
    Redirect(usize, u64),
}

/// Whose page table a fault injection writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PteOwner {
    /// A host process.
    Process(usize),
    /// A host paging domain (by its name's index).
    Domain(usize),
}

/// One operation of the timeline. Indices refer to the scenario's lists;
/// names defined by `as` are numbered in order of definition per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    Mmap {
        ctx: Ctx,
        process: usize,
        map: MapSpec,
    },
    Munmap {
        ctx: Ctx,
        process: usize,
        va: u64,
        len: u64,
    },
    CpuWrite {
        ctx: Ctx,
        process: usize,
        va: u64,
        data: Vec<u8>,
    },
    CpuRead {
        ctx: Ctx,
        process: usize,
        va: u64,
        len: usize,
    },
    Exit {
        ctx: Ctx,
        process: usize,
    },
    Enqcmd {
        process: usize,
    },
    Bind {
        ctx: Ctx,
        device: usize,
        process: usize,
        bond: usize,
    },
    BindDevicePasid {
        ctx: Ctx,
        device: usize,
        process: usize,
        pasid: u32,
        bond: usize,
    },
    Unbind {
        ctx: Ctx,
        bond: usize,
    },
    Dma {
        ctx: Ctx,
        device: usize,
        space: DmaSpace,
        addr: u64,
        write: Option<Vec<u8>>,
        len: usize,
    },
    RandomDma {
        ctx: Ctx,
        device: usize,
        spaces: Vec<DmaSpace>,
        base: u64,
        span: u64,
        count: u64,
        seed: u64,
        write_percent: u8,
    },
    PasidAlloc {
        count: u32,
    },
    DomainAlloc {
        domain: usize,
        second_stage: bool,
        levels: u8,
        nest_parent: bool,
    },
    DomainFree {
        domain: usize,
    },
    Map {
        domain: usize,
        iova: u64,
        len: u64,
        perm: Perm,
    },
    Unmap {
        domain: usize,
        iova: u64,
        len: u64,
    },
    Attach {
        domain: usize,
        device: usize,
        pasid: Option<u32>,
    },
    Replace {
        domain: usize,
        device: usize,
        pasid: Option<u32>,
    },
    Detach {
        domain: Option<usize>,
        device: usize,
        pasid: Option<u32>,
    },
    AuxAttach {
        domain: usize,
        device: usize,
        pasid: usize,
    },
    AuxDetach {
        domain: usize,
        device: usize,
    },
    IoasidSetAlloc {
        set: usize,
        quota: u32,
    },
    IoasidAlloc {
        set: usize,
        pasid: usize,
    },
    IoasidFree {
        set: usize,
        pasid: usize,
    },
    GpasidBind {
        device: usize,
        set: usize,
        pasid: usize,
        gpasid: u32,
        gpgd: u64,
    },
    GpasidUnbind {
        device: usize,
        pasid: usize,
    },
    RemoveDevice {
        device: usize,
    },
    CorruptPte {
        owner: PteOwner,
        va: u64,
        value: PteValue,
    },
    VmRevoke {
        vm: usize,
        device: usize,
        gpasid: u32,
    },
    VmUnplug {
        vm: usize,
        device: usize,
    },
    VmDestroy {
        vm: usize,
    },
}

/// What a step must come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Success.
    Ok,
    /// Anything (the step just runs).
    Any,
    /// This errno.
    Errno(Errno),
    /// A DMA refused by the IOMMU, with this reason when given.
    Fault(Option<FaultCode>),
    /// A DMA whose page request was answered with this code.
    Response(ResponseCode),
}

/// One step of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Line of its `[[step]]` header in the file.
    pub line: usize,
    /// The operation.
    pub op: Op,
    /// Its expected outcome.
    pub expect: Expect,
    /// Bytes a read must return.
    pub expect_data: Option<Vec<u8>>,
    /// A free-text note shown in the report.
    pub note: Option<String>,
}

/// A checked scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it shows.
    pub description: String,
    /// Where it came from (a path, or `<built-in>`).
    pub origin: String,
    /// The machine.
    pub machine: MachineSpec,
    /// The checkers switched on.
    pub checks: Checks,
    /// Devices.
    pub devices: Vec<DeviceSpec>,
    /// Host processes.
    pub processes: Vec<ProcessSpec>,
    /// VMs.
    pub vms: Vec<VmSpec>,
    /// Names defined by `as`, per kind, in order: bonds (and aux-domain
    /// PASIDs) per context.
    pub bonds: Vec<(Ctx, String)>,
    /// Host paging domains.
    pub domains: Vec<String>,
    /// IOASID sets.
    pub sets: Vec<String>,
    /// IOASIDs (host PASIDs from sets).
    pub ioasids: Vec<String>,
    /// The timeline.
    pub steps: Vec<Step>,
}

/// The built-in default scenario (`iommu-sim run` without a file).
pub const DEFAULT_SCENARIO: &str = include_str!("default.toml");
