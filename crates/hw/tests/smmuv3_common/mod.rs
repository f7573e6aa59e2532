//! Programmed SMMUv3 instances, built the way a driver builds them with
//! `iommu_testkit::smmuv3`: stream table, CD table and translation tables
//! written to memory, then the registers (STRTAB_BASE/CFG, the queues, CR2,
//! CR0 = EVENTQEN | CMDQEN, CMD_CFGI_ALL + CMD_TLBI_NSNH_ALL + CMD_SYNC,
//! CR0 |= SMMUEN) programmed through the MMIO window.
//!
//! Shared by `tests/smmuv3_no_alloc.rs` and `benches/smmuv3_translate.rs`
//! (through `#[path]`), so not every item is used by every includer.
#![allow(dead_code)]

use std::sync::Arc;

use iommu_format::smmuv3::desc::Granule;
use iommu_format::smmuv3::ste::S1Dss;
use iommu_hw::smmuv3::{Request, Smmu, SmmuConfig};
use iommu_testkit::smmuv3::{
    cd_for, s1_attrs, s2_attrs, ste_s2, BumpAlloc, CdTable, Driver, DriverConfig, SetupError, StreamTable, VmsaTables,
};
use iommu_types::{Access, BusError, NullInterrupts, PagedMemory, RegisterBus, StreamId, Width};

/// The SMMU type every setup builds.
pub type Unit = Smmu<PagedMemory, NullInterrupts>;

/// Size of the SMMU's memory.
pub const MEM_SIZE: u64 = 256 << 20;
/// Tables, CDs and queues are allocated from `[TABLES_START, TABLES_END)`.
pub const TABLES_START: u64 = 0x10_0000;
/// End of the table range.
pub const TABLES_END: u64 = 0x400_0000;
/// Physical address of the first data page; page `i` is `DATA_PA + i * 4 KiB`.
pub const DATA_PA: u64 = 0x800_0000;
/// In the nested setups every IPA is its PA plus this (below 2^39, so a
/// 3-level stage 2 reaches it).
pub const IPA_OFFSET: u64 = 0x40_0000_0000;
/// First mapped input address (a VA, or an IPA for stage 2 only); page `i`
/// is `INPUT_BASE + i * 4 KiB`.
pub const INPUT_BASE: u64 = 0x1234_5600_0000;
/// An input address no setup maps (not present at the start level).
pub const UNMAPPED: u64 = 0x7000_0000_0000;
/// In the nested setups, a VA whose stage-1 leaf points at [`UNMAPPED_IPA`].
pub const S2_HOLE_VA: u64 = 0x2000_0000_0000;
/// An IPA stage 2 does not map.
pub const UNMAPPED_IPA: u64 = 0x7F_0000_0000;
/// Most pages a setup can map.
pub const MAX_PAGES: usize = ((MEM_SIZE - DATA_PA) >> 12) as usize;

/// The StreamID every setup programs.
pub const SID: u32 = 8;
/// Stage-2 VMID.
pub const VMID: u16 = 5;
/// Stage-1 ASID.
pub const ASID: u16 = 7;
/// log2 of the event queue entries: room for every fault a test records.
pub const EVENTQ_LOG2: u32 = 11;

/// Which translation a setup programs (4K granule everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Stage 1 only, 4 levels (48-bit VA).
    S1,
    /// Stage 2 only, 4 levels (48-bit IPA, start level 0).
    S2,
    /// 4-level stage 1 nested over a 4-level stage 2.
    Nested4x4,
    /// 4-level stage 1 nested over a 3-level stage 2 (39-bit IPA, start level 1).
    Nested4x3,
}

impl Kind {
    /// Every setup.
    pub const ALL: [Kind; 4] = [Kind::S1, Kind::S2, Kind::Nested4x4, Kind::Nested4x3];

    /// A short name for messages and benchmark ids.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::S1 => "s1",
            Kind::S2 => "s2",
            Kind::Nested4x4 => "nested4x4",
            Kind::Nested4x3 => "nested4x3",
        }
    }

    /// Descriptor fetches of a full walk: n levels of stage 1 over m of
    /// stage 2 take (n+1)(m+1) − 1.
    pub const fn walk_refs(self) -> u32 {
        match self {
            Kind::S1 | Kind::S2 => 4,
            Kind::Nested4x4 => 24,
            Kind::Nested4x3 => 19,
        }
    }
}

/// The register bus of a shared SMMU, so that a setup can own both the SMMU
/// and a [`Driver`] for it.
#[derive(Debug, Clone)]
pub struct Bus(pub Arc<Unit>);

impl RegisterBus for Bus {
    fn read(&self, offset: u64, width: Width) -> Result<u64, BusError> {
        self.0.read(offset, width)
    }
    fn write(&self, offset: u64, width: Width, value: u64) -> Result<(), BusError> {
        self.0.write(offset, width, value)
    }
}

/// An SMMU with translation enabled for [`SID`].
#[derive(Debug)]
pub struct Setup {
    /// What is programmed.
    pub kind: Kind,
    /// The SMMU.
    pub unit: Arc<Unit>,
    /// The driver that brought it up (for commands and events).
    pub driver: Driver<Bus>,
    /// Mapped input addresses, one per page.
    pub inputs: Vec<u64>,
}

impl Setup {
    /// Programs `kind` with `pages` mapped pages on an SMMU with `cfg`.
    ///
    /// # Panics
    /// On a setup error (a test sizing error).
    pub fn new(kind: Kind, cfg: SmmuConfig, pages: usize) -> Self {
        Self::try_new(kind, cfg, pages).unwrap_or_else(|e| panic!("{}: setup failed: {e}", kind.name()))
    }

    /// [`Setup::new`], returning setup errors.
    ///
    /// # Errors
    /// What the builders or the driver report.
    pub fn try_new(kind: Kind, cfg: SmmuConfig, pages: usize) -> Result<Self, SetupError> {
        assert!(pages <= MAX_PAGES);
        let unit = Arc::new(Smmu::new(cfg, PagedMemory::new(MEM_SIZE), NullInterrupts));
        let mem = unit.mem();
        let mut a = BumpAlloc::new(TABLES_START, TABLES_END);
        let mut st = StreamTable::linear(mem, &mut a, 8)?;
        let inputs: Vec<u64> = (0..pages as u64).map(|i| INPUT_BASE + (i << 12)).collect();
        let data = |i: usize| DATA_PA + ((i as u64) << 12);
        let ste = match kind {
            Kind::S1 => {
                let mut s1 = VmsaTables::stage1(mem, &mut a, Granule::G4K, 48)?;
                for (i, &va) in inputs.iter().enumerate() {
                    s1.map(mem, &mut a, va, data(i), 3, s1_attrs(1))?;
                }
                let mut cdt = CdTable::linear(mem, &mut a, 0)?;
                cdt.set_cd(mem, &mut a, 0, &cd_for(ASID, &s1, 5))?;
                cdt.ste_s1(S1Dss::Terminate)
            }
            Kind::S2 => {
                let mut s2 = VmsaTables::stage2(mem, &mut a, Granule::G4K, 48, 0)?;
                for (i, &ipa) in inputs.iter().enumerate() {
                    s2.map(mem, &mut a, ipa, data(i), 3, s2_attrs(3))?;
                }
                ste_s2(VMID, s2.geometry(), s2.ttb())
            }
            Kind::Nested4x4 | Kind::Nested4x3 => {
                let mut s2 = match kind {
                    Kind::Nested4x4 => VmsaTables::stage2(mem, &mut a, Granule::G4K, 48, 0)?,
                    _ => VmsaTables::stage2(mem, &mut a, Granule::G4K, 39, 1)?,
                };
                let to_ipa = |pa: u64| pa + IPA_OFFSET;
                let mut s1 = VmsaTables::stage1(mem, &mut a, Granule::G4K, 48)?.with_to_out(to_ipa);
                for (i, &va) in inputs.iter().enumerate() {
                    s1.map(mem, &mut a, va, to_ipa(data(i)), 3, s1_attrs(1))?;
                }
                s1.map(mem, &mut a, S2_HOLE_VA, UNMAPPED_IPA, 3, s1_attrs(1))?;
                let mut cdt = CdTable::linear(mem, &mut a, 0)?.with_to_out(to_ipa);
                cdt.set_cd(mem, &mut a, 0, &cd_for(ASID, &s1, 5))?;
                // Stage 2 maps the stage-1 tables, the CD and the data pages.
                let mut pages: Vec<u64> = Vec::new();
                for &(pa, size) in s1.regions().iter().chain(cdt.regions()) {
                    pages.extend((pa & !0xFFF..pa + size).step_by(0x1000));
                }
                pages.extend((0..inputs.len()).map(data));
                for pa in pages {
                    s2.map(mem, &mut a, to_ipa(pa), pa, 3, s2_attrs(3))?;
                }
                cdt.ste_nested(S1Dss::Terminate, VMID, s2.geometry(), s2.ttb())
            }
        };
        st.set_ste(mem, &mut a, SID, &ste)?;
        let cfg = DriverConfig::new(&st).with_queues(5, EVENTQ_LOG2);
        let driver = Driver::bring_up(Bus(Arc::clone(&unit)), mem, &mut a, &cfg)?;
        Ok(Self { kind, unit, driver, inputs })
    }

    /// A request from [`SID`] without SubstreamID.
    pub fn request(&self, addr: u64, access: Access) -> Request {
        Request { sid: StreamId(SID), ssid: None, addr, access }
    }

    /// The physical address page `i` at offset `off` translates to.
    pub fn expected(&self, i: usize, off: u64) -> u64 {
        DATA_PA + ((i as u64) << 12) + off
    }

    /// Inputs that fault: unmapped at stage 1 (or at stage 2 for
    /// [`Kind::S2`]); for the nested setups every other one is mapped at
    /// stage 1 to an IPA stage 2 does not map.
    pub fn faulting_inputs(&self, n: u64) -> Vec<u64> {
        (0..n)
            .map(|i| match self.kind {
                Kind::Nested4x4 | Kind::Nested4x3 if i % 2 == 1 => S2_HOLE_VA + ((i & 7) << 3),
                _ => UNMAPPED + (i << 12),
            })
            .collect()
    }
}

/// The full-featured profile.
pub fn full() -> SmmuConfig {
    SmmuConfig::full()
}

/// The full-featured profile with a one-entry TLB: cycling through the
/// mapped pages misses every time, so each translation walks (the STE and
/// CD caches still hit).
pub fn one_entry_tlb() -> SmmuConfig {
    SmmuConfig { tlb: (1, 1), ..SmmuConfig::full() }
}
