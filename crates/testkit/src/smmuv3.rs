//! Programming an Arm SMMUv3 the way a driver does, through memory and
//! registers only: stream tables (SMMUv3 §5.1, §5.2), CD tables (§5.3,
//! §5.4), VMSAv8-64 translation tables (Arm ARM D8.2, D8.3) and a
//! [`Driver`] for the register interface (§6), the command queue (§4, §3.5)
//! and the event queue (§7.2). Generic over [`PhysMem`] and
//! [`RegisterBus`], so it works on the model, a fake or a vSMMU.
//!
//! Everything returns [`SetupError`] instead of panicking: an exhausted
//! allocator, unbacked memory, a geometry the architecture cannot express,
//! a register handshake that never completes or a command the SMMU
//! refuses.
//!
//! ```text
//!  BumpAlloc ──▶ StreamTable ─ STEs (ste_bypass, ste_s1, ste_s2, ste_nested)
//!            ├─▶ CdTable ───── CDs (cd, cd_for)
//!            ├─▶ VmsaTables ── stage-1 / stage-2 trees (map, to_out for nesting)
//!            └─▶ Driver ────── STRTAB_BASE(_CFG), queues, CR2, CR0/CR0ACK,
//!                              submit(commands) + CMD_SYNC, drain_events
//! ```

use std::collections::HashMap;
use std::fmt;

use iommu_format::smmuv3::cd::{Cd, L1Cd, S1Fmt};
use iommu_format::smmuv3::cmd::{Command, SyncCompletion};
use iommu_format::smmuv3::desc::{Granule, S1Desc, S2Desc, OA_MASK};
use iommu_format::smmuv3::event::{Event, EventRecord};
use iommu_format::smmuv3::regs::{offset, Cr0, Cr2, Gerror, QueueBase, QueueIndex, StrtabBaseCfg, StrtabFmt};
use iommu_format::smmuv3::ste::{L1Std, S1Dss, Ste, SteConfig};
use iommu_types::{BusError, Hpa, MemError, PhysMem, RegisterBus, Width};

/// Why a setup step could not be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupError {
    /// The [`BumpAlloc`] has no room for `size` bytes aligned to `align`
    /// (or `align` is not a power of two).
    Exhausted {
        /// Bytes asked for.
        size: u64,
        /// Alignment asked for.
        align: u64,
    },
    /// A memory access failed.
    Mem(MemError),
    /// A register access failed.
    Bus(BusError),
    /// A table geometry the architecture cannot express (input size,
    /// start level, leaf level, split, CD table format or size).
    Geometry(&'static str),
    /// A StreamID or SubstreamID beyond the table being built.
    OutOfRange {
        /// What was indexed.
        what: &'static str,
        /// The index.
        index: u64,
    },
    /// A register handshake (CR0ACK, CMDQ_CONS) did not complete.
    Timeout(&'static str),
    /// The command queue stopped on an error (SMMUv3 §7.1):
    /// GERROR.CMDQ_ERR is active and CMDQ_CONS.ERR holds `code`.
    Command {
        /// CMDQ_CONS.ERR (1 CERROR_ILL, 2 CERROR_ABT, 3 CERROR_ATC_INV_SYNC).
        code: u8,
        /// CMDQ_CONS.RD with its wrap flag: the command that failed.
        cons: u32,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Exhausted { size, align } => {
                write!(f, "allocator exhausted: {size:#x} bytes aligned to {align:#x}")
            }
            SetupError::Mem(e) => write!(f, "memory access failed: {e}"),
            SetupError::Bus(e) => write!(f, "register access failed: {e}"),
            SetupError::Geometry(what) => write!(f, "unsupported table geometry: {what}"),
            SetupError::OutOfRange { what, index } => write!(f, "{what} {index:#x} is outside the table"),
            SetupError::Timeout(what) => write!(f, "{what} never completed"),
            SetupError::Command { code, cons } => {
                write!(f, "command queue error {code:#x} at CMDQ_CONS {cons:#x}")
            }
        }
    }
}

impl std::error::Error for SetupError {}

impl From<MemError> for SetupError {
    fn from(e: MemError) -> Self {
        SetupError::Mem(e)
    }
}

impl From<BusError> for SetupError {
    fn from(e: BusError) -> Self {
        SetupError::Bus(e)
    }
}

/// Result of a setup step.
pub type Result<T> = core::result::Result<T, SetupError>;

/// Maps the physical address of a structure to the address written into
/// the descriptors and registers that point at it (the IPA, for stage-1
/// structures behind stage 2).
pub type ToOut = Box<dyn Fn(u64) -> u64 + Send + Sync>;

fn identity() -> ToOut {
    Box::new(|pa| pa)
}

fn put<M: PhysMem + ?Sized>(mem: &M, addr: u64, bytes: &[u8]) -> Result<()> {
    mem.write(Hpa::new(addr), bytes).map_err(SetupError::Mem)
}

fn put_u64<M: PhysMem + ?Sized>(mem: &M, addr: u64, v: u64) -> Result<()> {
    mem.write_u64(Hpa::new(addr), v).map_err(SetupError::Mem)
}

/// A bump allocator of zeroed, aligned regions of simulated memory in
/// `[next, end)`. Zeroing writes the region, so a [`PhysMem`] that
/// allocates its pages lazily (`PagedMemory`) has them all afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BumpAlloc {
    next: u64,
    end: u64,
}

impl BumpAlloc {
    /// Allocates from `[start, end)`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self { next: start, end }
    }

    /// The lowest address not yet handed out.
    pub const fn next(&self) -> u64 {
        self.next
    }

    /// The end of the range.
    pub const fn end(&self) -> u64 {
        self.end
    }

    /// Reserves `size` bytes aligned to `align` (a power of two) without
    /// touching memory; `None` when they do not fit.
    pub fn reserve(&mut self, size: u64, align: u64) -> Option<u64> {
        if !align.is_power_of_two() {
            return None;
        }
        let a = self.next.checked_add(align - 1)? & !(align - 1);
        let end = a.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(a)
    }

    /// Reserves `size` bytes aligned to `align` (a power of two) and
    /// writes zeros over them.
    ///
    /// # Errors
    /// [`SetupError::Exhausted`], or [`SetupError::Mem`] when the region is
    /// not backed.
    pub fn alloc<M: PhysMem + ?Sized>(&mut self, mem: &M, size: u64, align: u64) -> Result<u64> {
        let a = self.reserve(size, align).ok_or(SetupError::Exhausted { size, align })?;
        const ZERO: [u8; 4096] = [0; 4096];
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(ZERO.len() as u64);
            put(mem, a + done, &ZERO[..n as usize])?;
            done += n;
        }
        Ok(a)
    }
}

// ---------------------------------------------------------------- translation tables

/// Which translation stage a [`VmsaTables`] tree belongs to (the
/// descriptor formats differ in their attribute bits, Arm ARM D8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Stage 1 (CD.TTB0 / TTB1).
    S1,
    /// Stage 2 (STE.S2TTB).
    S2,
}

/// The stage-2 geometry an STE describes with S2TG, S2T0SZ and S2SL0
/// (SMMUv3 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct S2Geometry {
    /// Granule (S2TG).
    pub granule: Granule,
    /// Input (IPA) size in bits: S2T0SZ = 64 − `input_bits`.
    pub input_bits: u32,
    /// Starting level (S2SL0).
    pub start_level: u8,
}

impl S2Geometry {
    /// S2T0SZ.
    pub const fn t0sz(&self) -> u64 {
        64u64.saturating_sub(self.input_bits as u64)
    }

    /// S2SL0 for the start level: 4K granule levels 2, 1, 0 are 0, 1, 2;
    /// 16K and 64K levels 3, 2, 1 are 0, 1, 2 (Arm ARM VTCR_EL2.SL0).
    /// `None` for a level the field cannot express.
    pub const fn sl0(&self) -> Option<u64> {
        match (self.granule, self.start_level) {
            (Granule::G4K, l @ 0..=2) => Some(2 - l as u64),
            (Granule::G16K | Granule::G64K, l @ 1..=3) => Some(3 - l as u64),
            _ => None,
        }
    }
}

/// Attribute bits of a stage-1 leaf with AP\[2:1\] = `ap`: AF, non-global,
/// inner-shareable, attribute index 0 (add them to an output address;
/// [`VmsaTables::map`] sets the valid and type bits). `ap` = 0b01 is
/// read/write at EL0 and EL1, what an unprivileged device needs.
pub fn s1_attrs(ap: u64) -> u64 {
    S1Desc::leaf(0, false, ap).words()[0] & !1
}

/// Attribute bits of a stage-2 leaf with S2AP = `s2ap` (bit 0 read, bit 1
/// write): AF, inner-shareable, normal write-back memory.
pub fn s2_attrs(s2ap: u64) -> u64 {
    S2Desc::leaf(0, false, s2ap).words()[0] & !1
}

/// A VMSAv8-64 translation table tree being built in memory (Arm ARM D8.2,
/// D8.3): any granule, input size and start level; for stage 2 the start
/// level may be up to 16 concatenated tables.
///
/// Tables live at physical addresses; the hook set with
/// [`VmsaTables::with_to_out`] maps a table's address to what is written
/// into descriptors and returned by [`VmsaTables::ttb`] (an IPA, for a
/// stage-1 tree walked through stage 2).
pub struct VmsaTables {
    stage: Stage,
    granule: Granule,
    input_bits: u32,
    start_level: u8,
    root_bits: u32,
    root: u64,
    /// Bits ORed into every table descriptor created from now on (stage 1:
    /// APTable, XNTable, PXNTable, NSTable).
    pub table_bits: u64,
    tables: HashMap<(u8, u64), u64>,
    regions: Vec<(u64, u64)>,
    to_out: ToOut,
}

impl fmt::Debug for VmsaTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmsaTables")
            .field("stage", &self.stage)
            .field("granule", &self.granule)
            .field("input_bits", &self.input_bits)
            .field("start_level", &self.start_level)
            .field("root_bits", &self.root_bits)
            .field("root", &format_args!("{:#x}", self.root))
            .field("tables", &self.regions.len())
            .finish()
    }
}

impl VmsaTables {
    /// A stage-1 tree for `input_bits` (25–48, i.e. T0SZ 16–39) with the
    /// start level the input size implies (Arm ARM D8.2.6), its start table
    /// allocated from `alloc`.
    ///
    /// # Errors
    /// [`SetupError::Geometry`] for an input size out of range; allocation
    /// errors.
    pub fn stage1<M: PhysMem + ?Sized>(
        mem: &M,
        alloc: &mut BumpAlloc,
        granule: Granule,
        input_bits: u32,
    ) -> Result<Self> {
        if !(25..=48).contains(&input_bits) {
            return Err(SetupError::Geometry("stage-1 input size outside 25..=48 bits"));
        }
        let start = granule.start_level(input_bits);
        Self::new(mem, alloc, Stage::S1, granule, input_bits, start)
    }

    /// A stage-2 tree for `input_bits` (25–48) starting at `start_level`,
    /// which must resolve between 1 and stride + 4 index bits (more than
    /// the stride means concatenated start tables, at most 16) and be
    /// expressible in S2SL0 (see [`S2Geometry::sl0`]).
    ///
    /// # Errors
    /// [`SetupError::Geometry`]; allocation errors.
    pub fn stage2<M: PhysMem + ?Sized>(
        mem: &M,
        alloc: &mut BumpAlloc,
        granule: Granule,
        input_bits: u32,
        start_level: u8,
    ) -> Result<Self> {
        if !(25..=48).contains(&input_bits) {
            return Err(SetupError::Geometry("stage-2 input size outside 25..=48 bits"));
        }
        if (S2Geometry { granule, input_bits, start_level }).sl0().is_none() {
            return Err(SetupError::Geometry("stage-2 start level not expressible in S2SL0"));
        }
        Self::new(mem, alloc, Stage::S2, granule, input_bits, start_level)
    }

    fn new<M: PhysMem + ?Sized>(
        mem: &M,
        alloc: &mut BumpAlloc,
        stage: Stage,
        granule: Granule,
        input_bits: u32,
        start_level: u8,
    ) -> Result<Self> {
        let root_bits = input_bits
            .checked_sub(granule.level_shift(start_level))
            .filter(|rb| (1..=granule.stride() + 4).contains(rb))
            .ok_or(SetupError::Geometry("start level resolves no index bits or more than 16 tables"))?;
        if stage == Stage::S1 && root_bits > granule.stride() {
            return Err(SetupError::Geometry("stage-1 start tables cannot be concatenated"));
        }
        let size = 8u64 << root_bits;
        let root = alloc.alloc(mem, size, size.max(64))?;
        Ok(Self {
            stage,
            granule,
            input_bits,
            start_level,
            root_bits,
            root,
            table_bits: 0,
            tables: HashMap::new(),
            regions: vec![(root, size)],
            to_out: identity(),
        })
    }

    /// Sets the hook mapping a table's physical address to the address
    /// written into table descriptors and returned by [`VmsaTables::ttb`].
    #[must_use]
    pub fn with_to_out(mut self, f: impl Fn(u64) -> u64 + Send + Sync + 'static) -> Self {
        self.to_out = Box::new(f);
        self
    }

    /// The stage.
    pub const fn stage(&self) -> Stage {
        self.stage
    }
    /// The granule.
    pub const fn granule(&self) -> Granule {
        self.granule
    }
    /// Input size in bits.
    pub const fn input_bits(&self) -> u32 {
        self.input_bits
    }
    /// T0SZ / S2T0SZ: 64 − the input size.
    pub const fn tsz(&self) -> u64 {
        64 - self.input_bits as u64
    }
    /// Starting level.
    pub const fn start_level(&self) -> u8 {
        self.start_level
    }
    /// Index bits the start level resolves (above the stride: concatenated).
    pub const fn root_bits(&self) -> u32 {
        self.root_bits
    }
    /// Physical address of the start table.
    pub const fn root(&self) -> u64 {
        self.root
    }
    /// The table base to program (CD.TTB0, STE.S2TTB): the start table's
    /// address through the `to_out` hook.
    pub fn ttb(&self) -> u64 {
        (self.to_out)(self.root)
    }
    /// The geometry to put in an STE (for stage-2 trees).
    pub const fn geometry(&self) -> S2Geometry {
        S2Geometry { granule: self.granule, input_bits: self.input_bits, start_level: self.start_level }
    }
    /// Every table of the tree as (physical address, size), start table
    /// first: what stage 2 must map for a nested stage-1 walk.
    pub fn regions(&self) -> &[(u64, u64)] {
        &self.regions
    }

    fn index(&self, input: u64, level: u8) -> u64 {
        let bits = if level == self.start_level { self.root_bits } else { self.granule.stride() };
        (input >> self.granule.level_shift(level)) & ((1u64 << bits) - 1)
    }

    fn key(&self, input: u64, level: u8) -> (u8, u64) {
        let masked = if self.input_bits >= 64 { input } else { input & ((1u64 << self.input_bits) - 1) };
        (level, masked >> self.granule.level_shift(level))
    }

    /// Maps `input` to `output` with a leaf at `leaf_level`, creating the
    /// missing intermediate tables (allocated from `alloc`, written with
    /// [`VmsaTables::table_bits`]). The leaf is `leaf_bits | output`
    /// (output bits 47:12 only) with the valid bit and the type bit (set
    /// for a level-3 page, clear for a block) set; see [`s1_attrs`] and
    /// [`s2_attrs`]. Existing table descriptors on the path are kept as
    /// they are. Returns the walk: (level, descriptor address) from the
    /// start level to the leaf.
    ///
    /// # Errors
    /// [`SetupError::Geometry`] for a leaf level outside start..=3 or an
    /// input beyond the input size; allocation and memory errors.
    pub fn map<M: PhysMem + ?Sized>(
        &mut self,
        mem: &M,
        alloc: &mut BumpAlloc,
        input: u64,
        output: u64,
        leaf_level: u8,
        leaf_bits: u64,
    ) -> Result<Vec<(u8, u64)>> {
        if leaf_level < self.start_level || leaf_level > 3 {
            return Err(SetupError::Geometry("leaf level outside the tree"));
        }
        if self.stage == Stage::S2 && input >> self.input_bits != 0 {
            return Err(SetupError::Geometry("stage-2 input beyond the input size"));
        }
        let page = 1u64 << self.granule.shift();
        let mut walk = Vec::with_capacity((4 - self.start_level) as usize);
        let mut table = self.root;
        for level in self.start_level..=leaf_level {
            let ea = table + 8 * self.index(input, level);
            walk.push((level, ea));
            if level == leaf_level {
                let ty = if level == 3 { 3 } else { 1 };
                put_u64(mem, ea, (leaf_bits & !3) | (output & OA_MASK) | ty)?;
                break;
            }
            let key = self.key(input, level);
            table = match self.tables.get(&key) {
                Some(&t) => t,
                None => {
                    let t = alloc.alloc(mem, page, page)?;
                    self.tables.insert(key, t);
                    self.regions.push((t, page));
                    let next = (self.to_out)(t);
                    let d = match self.stage {
                        Stage::S1 => S1Desc::table(next).words()[0],
                        Stage::S2 => S2Desc::table(next).words()[0],
                    };
                    put_u64(mem, ea, d | self.table_bits)?;
                    t
                }
            };
        }
        Ok(walk)
    }

    /// Address of the descriptor that maps `input` at `level`, if the
    /// tables down to that level exist.
    pub fn entry_addr(&self, input: u64, level: u8) -> Option<u64> {
        if level < self.start_level || level > 3 {
            return None;
        }
        let mut table = self.root;
        for l in self.start_level..level {
            table = *self.tables.get(&self.key(input, l))?;
        }
        Some(table + 8 * self.index(input, level))
    }
}

// ---------------------------------------------------------------- STEs and CDs

const fn s1fmt_bits(f: S1Fmt) -> u64 {
    match f {
        S1Fmt::Linear => 0,
        S1Fmt::TwoLevel4K => 1,
        S1Fmt::TwoLevel64K => 2,
    }
}

const fn s1dss_bits(d: S1Dss) -> u64 {
    match d {
        S1Dss::Terminate => 0,
        S1Dss::Bypass => 1,
        S1Dss::Substream0 => 2,
        S1Dss::Reserved => 3,
    }
}

fn ste_valid(config: SteConfig) -> Ste {
    Ste::default().with(Ste::V, 1).with(Ste::CONFIG, config.bits())
}

/// A valid STE whose Config aborts every transaction without an event
/// (SMMUv3 §5.2).
pub fn ste_abort() -> Ste {
    ste_valid(SteConfig::Abort)
}

/// A valid STE bypassing both stages (SMMUv3 §5.2, Config = 0b100).
pub fn ste_bypass() -> Ste {
    ste_valid(SteConfig::Bypass)
}

fn with_s1(ste: Ste, cd_ptr: u64, fmt: S1Fmt, cdmax: u32, dss: S1Dss) -> Ste {
    ste.with_in_place(Ste::S1CONTEXTPTR, cd_ptr)
        .with(Ste::S1FMT, s1fmt_bits(fmt))
        .with(Ste::S1CDMAX, cdmax as u64)
        .with(Ste::S1DSS, s1dss_bits(dss))
        .with(Ste::S1CIR, 1)
        .with(Ste::S1COR, 1)
        .with(Ste::S1CSH, 3)
}

fn with_s2(ste: Ste, vmid: u16, g: S2Geometry, s2ttb: u64) -> Ste {
    ste.with(Ste::S2VMID, vmid as u64)
        .with(Ste::S2T0SZ, g.t0sz())
        .with(Ste::S2SL0, g.sl0().unwrap_or(3))
        .with(Ste::S2IR0, 1)
        .with(Ste::S2OR0, 1)
        .with(Ste::S2SH0, 3)
        .with(Ste::S2TG, g.granule.tg0())
        .with(Ste::S2PS, 5)
        .with(Ste::S2AA64, 1)
        .with(Ste::S2R, 1)
        .with_in_place(Ste::S2TTB, s2ttb)
}

/// A stage-1 STE (SMMUv3 §5.2, Config = 0b101): the CD table at `cd_ptr`
/// in format `fmt` with 2^`cdmax` CDs, untagged transactions handled as
/// `dss`; CD fetches write-back inner-shareable.
pub fn ste_s1(cd_ptr: u64, fmt: S1Fmt, cdmax: u32, dss: S1Dss) -> Ste {
    with_s1(ste_valid(SteConfig::S1), cd_ptr, fmt, cdmax, dss)
}

/// A stage-2 STE (SMMUv3 §5.2, Config = 0b110): VMID `vmid`, the tables at
/// `s2ttb` with geometry `g` (a start level S2SL0 cannot express writes
/// the reserved 0b11, which makes the STE ILLEGAL), VMSAv8-64
/// little-endian, S2PS = 48 bits (an SMMU caps it to its OAS), stage-2
/// faults recorded (S2R), write-back inner-shareable walks.
pub fn ste_s2(vmid: u16, g: S2Geometry, s2ttb: u64) -> Ste {
    with_s2(ste_valid(SteConfig::S2), vmid, g, s2ttb)
}

/// A nested STE (SMMUv3 §5.2, Config = 0b111): the fields of [`ste_s1`]
/// (`cd_ptr` is an IPA) and of [`ste_s2`].
pub fn ste_nested(cd_ptr: u64, fmt: S1Fmt, cdmax: u32, dss: S1Dss, vmid: u16, g: S2Geometry, s2ttb: u64) -> Ste {
    with_s2(with_s1(ste_valid(SteConfig::Nested), cd_ptr, fmt, cdmax, dss), vmid, g, s2ttb)
}

/// A CD (SMMUv3 §5.4) translating TTB0 only: ASID `asid`, tables at `ttb0`
/// with T0SZ `t0sz` and granule `tg0`, IPS `ips` (the 3-bit encoding;
/// 0b101 is 48 bits), TTB1 walks disabled (EPD1), VMSAv8-64
/// little-endian, faults recorded (R), terminated transactions aborted (A),
/// ASET = 1, write-back inner-shareable walks, MAIR0 attribute 0 Normal
/// write-back and attribute 1 Normal non-cacheable.
pub fn cd(asid: u16, ttb0: u64, t0sz: u64, tg0: Granule, ips: u64) -> Cd {
    Cd::default()
        .with(Cd::T0SZ, t0sz)
        .with(Cd::TG0, tg0.tg0())
        .with(Cd::IR0, 1)
        .with(Cd::OR0, 1)
        .with(Cd::SH0, 3)
        .with(Cd::TG1, 2)
        .with(Cd::EPD1, 1)
        .with(Cd::V, 1)
        .with(Cd::IPS, ips)
        .with(Cd::AA64, 1)
        .with(Cd::R, 1)
        .with(Cd::A, 1)
        .with(Cd::ASET, 1)
        .with(Cd::ASID, asid as u64)
        .with_in_place(Cd::TTB0, ttb0)
        .with(Cd::MAIR0, 0x44FF)
}

/// [`cd`] for a stage-1 tree: its TTB, T0SZ and granule.
pub fn cd_for(asid: u16, tables: &VmsaTables, ips: u64) -> Cd {
    cd(asid, tables.ttb(), tables.tsz(), tables.granule(), ips)
}

// ---------------------------------------------------------------- stream tables

/// A stream table (SMMUv3 §3.3.1, §5.1): linear, or 2-level with level-2
/// arrays of 2^SPLIT STEs created on demand (Span = SPLIT + 1).
#[derive(Debug, Clone)]
pub struct StreamTable {
    base: u64,
    log2size: u32,
    split: Option<u32>,
    l2: HashMap<u64, u64>,
}

impl StreamTable {
    /// A linear table of 2^`log2size` STEs (`log2size` at most 24), aligned
    /// to its size.
    ///
    /// # Errors
    /// [`SetupError::Geometry`]; allocation errors.
    pub fn linear<M: PhysMem + ?Sized>(mem: &M, alloc: &mut BumpAlloc, log2size: u32) -> Result<Self> {
        if log2size > 24 {
            return Err(SetupError::Geometry("linear stream table larger than 2^24 STEs"));
        }
        let size = 64u64 << log2size;
        let base = alloc.alloc(mem, size, size)?;
        Ok(Self { base, log2size, split: None, l2: HashMap::new() })
    }

    /// A 2-level table covering 2^`log2size` StreamIDs (at most 32) with
    /// SPLIT = `split` (6, 8 or 10); the level-1 array is aligned to its
    /// size.
    ///
    /// # Errors
    /// [`SetupError::Geometry`]; allocation errors.
    pub fn two_level<M: PhysMem + ?Sized>(mem: &M, alloc: &mut BumpAlloc, log2size: u32, split: u32) -> Result<Self> {
        if !matches!(split, 6 | 8 | 10) {
            return Err(SetupError::Geometry("SPLIT other than 6, 8 or 10"));
        }
        if log2size > 32 || log2size.saturating_sub(split) > 24 {
            return Err(SetupError::Geometry("level-1 stream table larger than 2^24 descriptors"));
        }
        let size = 8u64 << log2size.saturating_sub(split);
        let base = alloc.alloc(mem, size, size.max(64))?;
        Ok(Self { base, log2size, split: Some(split), l2: HashMap::new() })
    }

    /// STRTAB_BASE (the address; RA clear).
    pub const fn base(&self) -> u64 {
        self.base
    }

    /// log2 of the number of StreamIDs covered.
    pub const fn log2size(&self) -> u32 {
        self.log2size
    }

    /// SPLIT of a 2-level table.
    pub const fn split(&self) -> Option<u32> {
        self.split
    }

    /// STRTAB_BASE_CFG: FMT, SPLIT (6 for a linear table, ignored there)
    /// and LOG2SIZE (SMMUv3 §6.3.25).
    pub fn base_cfg(&self) -> u32 {
        let fmt = if self.split.is_some() { StrtabFmt::TwoLevel } else { StrtabFmt::Linear };
        StrtabBaseCfg::default()
            .with(StrtabBaseCfg::FMT, fmt.bits())
            .with(StrtabBaseCfg::SPLIT, self.split.unwrap_or(6) as u64)
            .with(StrtabBaseCfg::LOG2SIZE, self.log2size as u64)
            .words()[0] as u32
    }

    /// Address of the level-1 descriptor covering `sid` (2-level tables).
    pub fn l1_desc_addr(&self, sid: u32) -> Option<u64> {
        let split = self.split?;
        (self.covers(sid)).then(|| self.base + 8 * ((sid as u64) >> split))
    }

    fn covers(&self, sid: u32) -> bool {
        self.log2size >= 32 || (sid as u64) >> self.log2size == 0
    }

    /// Address of the STE of `sid`, creating (and pointing the level-1
    /// descriptor at) its level-2 array in a 2-level table.
    ///
    /// # Errors
    /// [`SetupError::OutOfRange`] beyond LOG2SIZE; allocation errors.
    pub fn ste_addr<M: PhysMem + ?Sized>(&mut self, mem: &M, alloc: &mut BumpAlloc, sid: u32) -> Result<u64> {
        if !self.covers(sid) {
            return Err(SetupError::OutOfRange { what: "StreamID", index: sid as u64 });
        }
        let Some(split) = self.split else {
            return Ok(self.base + 64 * sid as u64);
        };
        let l1 = (sid as u64) >> split;
        let low = (sid as u64) & ((1 << split) - 1);
        let l2 = match self.l2.get(&l1) {
            Some(&t) => t,
            None => {
                let size = 64u64 << split;
                let t = alloc.alloc(mem, size, size)?;
                put_u64(mem, self.base + 8 * l1, L1Std::new(t, split as u8 + 1).words()[0])?;
                self.l2.insert(l1, t);
                t
            }
        };
        Ok(l2 + 64 * low)
    }

    /// Writes `ste` as the STE of `sid`; returns its address.
    ///
    /// # Errors
    /// As [`StreamTable::ste_addr`]; memory errors.
    pub fn set_ste<M: PhysMem + ?Sized>(&mut self, mem: &M, alloc: &mut BumpAlloc, sid: u32, ste: &Ste) -> Result<u64> {
        let a = self.ste_addr(mem, alloc, sid)?;
        put(mem, a, &ste.to_bytes())?;
        Ok(a)
    }
}

// ---------------------------------------------------------------- CD tables

/// A CD table (SMMUv3 §3.3.2, §5.3, §5.4): linear, or 2-level with leaf
/// tables (64 CDs for 4 KiB leaves, 1024 for 64 KiB) created on demand.
/// Like [`VmsaTables`], it lives at physical addresses and writes pointers
/// through a `to_out` hook (for nested streams, where S1ContextPtr and the
/// L1CD pointers are IPAs).
pub struct CdTable {
    base: u64,
    fmt: S1Fmt,
    cdmax: u32,
    leaves: HashMap<u64, u64>,
    regions: Vec<(u64, u64)>,
    to_out: ToOut,
}

impl fmt::Debug for CdTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CdTable")
            .field("base", &format_args!("{:#x}", self.base))
            .field("fmt", &self.fmt)
            .field("cdmax", &self.cdmax)
            .field("leaves", &self.leaves.len())
            .finish()
    }
}

impl CdTable {
    /// A linear table of 2^`cdmax` CDs (`cdmax` 0: a single CD, no
    /// substreams; at most 20), aligned to its size.
    ///
    /// # Errors
    /// [`SetupError::Geometry`]; allocation errors.
    pub fn linear<M: PhysMem + ?Sized>(mem: &M, alloc: &mut BumpAlloc, cdmax: u32) -> Result<Self> {
        if cdmax > 20 {
            return Err(SetupError::Geometry("S1CDMax above 20"));
        }
        let size = 64u64 << cdmax;
        let base = alloc.alloc(mem, size, size)?;
        Ok(Self {
            base,
            fmt: S1Fmt::Linear,
            cdmax,
            leaves: HashMap::new(),
            regions: vec![(base, size)],
            to_out: identity(),
        })
    }

    /// A 2-level table of 2^`cdmax` CDs (1–20) in format `fmt`
    /// ([`S1Fmt::TwoLevel4K`] or [`S1Fmt::TwoLevel64K`]): a level-1 array of
    /// 2^(cdmax − split) L1CDs (at least one), aligned to its size.
    ///
    /// # Errors
    /// [`SetupError::Geometry`]; allocation errors.
    pub fn two_level<M: PhysMem + ?Sized>(mem: &M, alloc: &mut BumpAlloc, cdmax: u32, fmt: S1Fmt) -> Result<Self> {
        let split = fmt.split().ok_or(SetupError::Geometry("a 2-level CD table needs a 2-level S1Fmt"))?;
        if !(1..=20).contains(&cdmax) {
            return Err(SetupError::Geometry("S1CDMax outside 1..=20"));
        }
        let size = 8u64 << cdmax.saturating_sub(split);
        let base = alloc.alloc(mem, size, size.max(64))?;
        Ok(Self { base, fmt, cdmax, leaves: HashMap::new(), regions: vec![(base, size)], to_out: identity() })
    }

    /// Sets the hook mapping a structure's physical address to the address
    /// written into L1CDs and returned by [`CdTable::ptr`].
    #[must_use]
    pub fn with_to_out(mut self, f: impl Fn(u64) -> u64 + Send + Sync + 'static) -> Self {
        self.to_out = Box::new(f);
        self
    }

    /// Physical address of the table (the level-1 array of a 2-level table).
    pub const fn base(&self) -> u64 {
        self.base
    }
    /// STE.S1ContextPtr: the base through the `to_out` hook.
    pub fn ptr(&self) -> u64 {
        (self.to_out)(self.base)
    }
    /// STE.S1Fmt.
    pub const fn fmt(&self) -> S1Fmt {
        self.fmt
    }
    /// STE.S1CDMax.
    pub const fn cdmax(&self) -> u32 {
        self.cdmax
    }
    /// Every structure of the table as (physical address, size): what stage
    /// 2 must map for a nested stream.
    pub fn regions(&self) -> &[(u64, u64)] {
        &self.regions
    }

    /// A stage-1 STE pointing at this table ([`ste_s1`]).
    pub fn ste_s1(&self, dss: S1Dss) -> Ste {
        ste_s1(self.ptr(), self.fmt, self.cdmax, dss)
    }

    /// A nested STE pointing at this table ([`ste_nested`]).
    pub fn ste_nested(&self, dss: S1Dss, vmid: u16, g: S2Geometry, s2ttb: u64) -> Ste {
        ste_nested(self.ptr(), self.fmt, self.cdmax, dss, vmid, g, s2ttb)
    }

    /// Physical address of the CD of `ssid`, creating (and pointing its
    /// L1CD at) the leaf table in a 2-level table.
    ///
    /// # Errors
    /// [`SetupError::OutOfRange`] beyond 2^S1CDMax; allocation errors.
    pub fn cd_addr<M: PhysMem + ?Sized>(&mut self, mem: &M, alloc: &mut BumpAlloc, ssid: u32) -> Result<u64> {
        if (ssid as u64) >> self.cdmax != 0 {
            return Err(SetupError::OutOfRange { what: "SubstreamID", index: ssid as u64 });
        }
        let Some(split) = self.fmt.split() else {
            return Ok(self.base + 64 * ssid as u64);
        };
        let l1 = (ssid as u64) >> split;
        let leaf = match self.leaves.get(&l1) {
            Some(&t) => t,
            None => {
                let size = 64u64 << split;
                let t = alloc.alloc(mem, size, size)?;
                put_u64(mem, self.base + 8 * l1, L1Cd::new((self.to_out)(t)).words()[0])?;
                self.leaves.insert(l1, t);
                self.regions.push((t, size));
                t
            }
        };
        Ok(leaf + 64 * ((ssid as u64) & ((1 << split) - 1)))
    }

    /// Address of the L1CD covering `ssid` (2-level tables).
    pub fn l1_desc_addr(&self, ssid: u32) -> Option<u64> {
        let split = self.fmt.split()?;
        ((ssid as u64) >> self.cdmax == 0).then(|| self.base + 8 * ((ssid as u64) >> split))
    }

    /// Writes `cd` as the CD of `ssid`; returns its physical address.
    ///
    /// # Errors
    /// As [`CdTable::cd_addr`]; memory errors.
    pub fn set_cd<M: PhysMem + ?Sized>(&mut self, mem: &M, alloc: &mut BumpAlloc, ssid: u32, cd: &Cd) -> Result<u64> {
        let a = self.cd_addr(mem, alloc, ssid)?;
        put(mem, a, &cd.to_bytes())?;
        Ok(a)
    }
}

// ---------------------------------------------------------------- driver

/// How many times a handshake register is read before giving up.
pub const POLLS: usize = 1000;

/// CMD_SYNC without completion signal (SMMUv3 §4.7.3): its consumption
/// tells that every earlier command completed.
pub const CMD_SYNC: Command =
    Command::Sync { cs: SyncCompletion::SigNone, msh: 0, msiattr: 0, msi_data: 0, msi_addr: 0 };

/// What [`Driver::bring_up`] programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverConfig {
    /// STRTAB_BASE.
    pub strtab_base: u64,
    /// STRTAB_BASE_CFG.
    pub strtab_base_cfg: u32,
    /// log2 of the command queue entries.
    pub cmdq_log2: u32,
    /// log2 of the event queue entries.
    pub eventq_log2: u32,
    /// CR2.
    pub cr2: u32,
}

impl DriverConfig {
    /// The stream table `st`, a 32-entry command queue, a 128-entry event
    /// queue and CR2 = RECINVSID (as the conformance oracle programs).
    pub fn new(st: &StreamTable) -> Self {
        Self {
            strtab_base: st.base(),
            strtab_base_cfg: st.base_cfg(),
            cmdq_log2: 5,
            eventq_log2: 7,
            cr2: Cr2::default().with(Cr2::RECINVSID, 1).words()[0] as u32,
        }
    }

    /// The same with other queue sizes.
    #[must_use]
    pub const fn with_queues(mut self, cmdq_log2: u32, eventq_log2: u32) -> Self {
        self.cmdq_log2 = cmdq_log2;
        self.eventq_log2 = eventq_log2;
        self
    }
}

/// A queue in memory: base, log2 of the entries, entry size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ring {
    base: u64,
    log2: u32,
    entry: u64,
}

impl Ring {
    const fn imask(&self) -> u32 {
        (1u32 << self.log2) - 1
    }
    const fn wmask(&self) -> u32 {
        (2u32 << self.log2) - 1
    }
    const fn slot(&self, ptr: u32) -> u64 {
        self.base + self.entry * (ptr & self.imask()) as u64
    }
}

/// CR0 bits the driver sets.
fn cr0(bits: &[iommu_format::bits::Field]) -> u32 {
    bits.iter().fold(Cr0::default(), |c, f| c.with(*f, 1)).words()[0] as u32
}

/// A command as the 16 little-endian bytes of a queue entry.
fn cmd_bytes(c: &Command) -> [u8; 16] {
    let w = c.encode();
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&w[0].to_le_bytes());
    b[8..].copy_from_slice(&w[1].to_le_bytes());
    b
}

/// GERROR.CMDQ_ERR.
fn cmdq_err_bit() -> u32 {
    Gerror::default().with(Gerror::CMDQ_ERR, 1).words()[0] as u32
}

/// Programs an SMMUv3 through its registers the way a driver does, and
/// runs its command and event queues (SMMUv3 §4, §6, §7).
#[derive(Debug, Clone)]
pub struct Driver<B> {
    bus: B,
    cmdq: Ring,
    eventq: Ring,
    prod: u32,
}

impl<B: RegisterBus> Driver<B> {
    /// Brings an SMMU (in its reset state) up: STRTAB_BASE, STRTAB_BASE_CFG;
    /// a command queue and an event queue allocated from `alloc` (zeroed,
    /// aligned to their sizes) in CMDQ_BASE and EVENTQ_BASE with PROD and
    /// CONS at 0 (the event queue's in page 1); CR2; CR0 = EVENTQEN |
    /// CMDQEN and a poll of CR0ACK; CMD_CFGI_ALL, CMD_TLBI_NSNH_ALL and
    /// CMD_SYNC; then CR0 |= SMMUEN and a poll of CR0ACK.
    ///
    /// # Errors
    /// [`SetupError::Geometry`] for a queue size above 2^19 entries; bus,
    /// memory and allocation errors; [`SetupError::Timeout`] when CR0ACK
    /// does not follow CR0; [`SetupError::Command`] when a command fails.
    pub fn bring_up<M: PhysMem + ?Sized>(bus: B, mem: &M, alloc: &mut BumpAlloc, cfg: &DriverConfig) -> Result<Self> {
        if cfg.cmdq_log2 > 19 || cfg.eventq_log2 > 19 {
            return Err(SetupError::Geometry("queue larger than 2^19 entries"));
        }
        let qbase = |base: u64, log2: u32| {
            QueueBase::default().with_in_place(QueueBase::ADDR, base).with(QueueBase::LOG2SIZE, log2 as u64).words()[0]
        };
        let csize = 16u64 << cfg.cmdq_log2;
        let cbase = alloc.alloc(mem, csize, csize.max(32))?;
        let esize = 32u64 << cfg.eventq_log2;
        let ebase = alloc.alloc(mem, esize, esize.max(32))?;
        let mut d = Self {
            bus,
            cmdq: Ring { base: cbase, log2: cfg.cmdq_log2, entry: 16 },
            eventq: Ring { base: ebase, log2: cfg.eventq_log2, entry: 32 },
            prod: 0,
        };
        d.write(offset::STRTAB_BASE, Width::W64, cfg.strtab_base)?;
        d.write(offset::STRTAB_BASE_CFG, Width::W32, cfg.strtab_base_cfg as u64)?;
        d.write(offset::CMDQ_BASE, Width::W64, qbase(cbase, cfg.cmdq_log2))?;
        d.write(offset::CMDQ_PROD, Width::W32, 0)?;
        d.write(offset::CMDQ_CONS, Width::W32, 0)?;
        d.write(offset::EVENTQ_BASE, Width::W64, qbase(ebase, cfg.eventq_log2))?;
        d.write(offset::EVENTQ_PROD, Width::W32, 0)?;
        d.write(offset::EVENTQ_CONS, Width::W32, 0)?;
        d.write(offset::CR2, Width::W32, cfg.cr2 as u64)?;
        let queues = cr0(&[Cr0::EVENTQEN, Cr0::CMDQEN]);
        d.set_cr0(queues)?;
        d.invalidate_all(mem)?;
        d.set_cr0(queues | cr0(&[Cr0::SMMUEN]))?;
        Ok(d)
    }

    /// Writes CR0 and polls CR0ACK until the enables it acknowledges match.
    ///
    /// # Errors
    /// Bus errors; [`SetupError::Timeout`].
    pub fn set_cr0(&self, value: u32) -> Result<()> {
        const MASK: u32 = 0x1F;
        self.write(offset::CR0, Width::W32, value as u64)?;
        for _ in 0..POLLS {
            if self.read32(offset::CR0ACK)? & MASK == value & MASK {
                return Ok(());
            }
        }
        Err(SetupError::Timeout("CR0ACK"))
    }

    /// The register bus.
    pub const fn bus(&self) -> &B {
        &self.bus
    }
    /// Physical address of the command queue.
    pub const fn cmdq_base(&self) -> u64 {
        self.cmdq.base
    }
    /// log2 of the command queue entries.
    pub const fn cmdq_log2(&self) -> u32 {
        self.cmdq.log2
    }
    /// Physical address of the event queue.
    pub const fn eventq_base(&self) -> u64 {
        self.eventq.base
    }
    /// log2 of the event queue entries.
    pub const fn eventq_log2(&self) -> u32 {
        self.eventq.log2
    }
    /// The CMDQ_PROD value last written (index and wrap flag).
    pub const fn cmdq_prod(&self) -> u32 {
        self.prod
    }

    /// A register read.
    ///
    /// # Errors
    /// Bus errors.
    pub fn read(&self, off: u64, width: Width) -> Result<u64> {
        self.bus.read(off, width).map_err(SetupError::Bus)
    }

    /// A register write.
    ///
    /// # Errors
    /// Bus errors.
    pub fn write(&self, off: u64, width: Width, value: u64) -> Result<()> {
        self.bus.write(off, width, value).map_err(SetupError::Bus)
    }

    fn read32(&self, off: u64) -> Result<u32> {
        Ok(self.read(off, Width::W32)? as u32)
    }

    /// The command queue error, if one is active: GERROR.CMDQ_ERR differs
    /// from GERRORN.CMDQ_ERR, and then CMDQ_CONS.ERR and the index it
    /// stopped at (SMMUv3 §7.1, §6.3.19).
    ///
    /// # Errors
    /// Bus errors.
    pub fn cmdq_error(&self) -> Result<Option<SetupError>> {
        let active = (self.read32(offset::GERROR)? ^ self.read32(offset::GERRORN)?) & cmdq_err_bit() != 0;
        if !active {
            return Ok(None);
        }
        let cons = QueueIndex([self.read32(offset::CMDQ_CONS)? as u64]);
        Ok(Some(SetupError::Command { code: cons.get(QueueIndex::ERR) as u8, cons: cons.pointer(self.cmdq.log2) }))
    }

    /// Writes `cmds` and a CMD_SYNC into the command queue at CMDQ_PROD,
    /// publishing them with CMDQ_PROD writes (wrapping, and waiting for
    /// room when the batch is larger than the free space), then polls
    /// CMDQ_CONS until it reaches CMDQ_PROD.
    ///
    /// # Errors
    /// [`SetupError::Command`] when the queue stops on an error (see
    /// [`Driver::recover`]); [`SetupError::Timeout`]; bus and memory errors.
    pub fn submit<M: PhysMem + ?Sized>(&mut self, mem: &M, cmds: &[Command]) -> Result<()> {
        let q = self.cmdq;
        let size = 1u32 << q.log2;
        let mut rest = cmds.iter().chain(std::iter::once(&CMD_SYNC)).peekable();
        let mut idle = 0;
        while rest.peek().is_some() {
            if let Some(e) = self.cmdq_error()? {
                return Err(e);
            }
            let cons = QueueIndex([self.read32(offset::CMDQ_CONS)? as u64]).pointer(q.log2);
            let used = self.prod.wrapping_sub(cons) & q.wmask();
            let free = size.saturating_sub(used);
            if free == 0 {
                idle += 1;
                if idle > POLLS {
                    return Err(SetupError::Timeout("command queue space"));
                }
                continue;
            }
            idle = 0;
            for c in rest.by_ref().take(free as usize) {
                put(mem, q.slot(self.prod), &cmd_bytes(c))?;
                self.prod = self.prod.wrapping_add(1) & q.wmask();
            }
            self.write(offset::CMDQ_PROD, Width::W32, self.prod as u64)?;
        }
        self.wait_consumed()
    }

    fn wait_consumed(&self) -> Result<()> {
        for _ in 0..POLLS {
            if let Some(e) = self.cmdq_error()? {
                return Err(e);
            }
            let cons = QueueIndex([self.read32(offset::CMDQ_CONS)? as u64]).pointer(self.cmdq.log2);
            if cons == self.prod {
                return Ok(());
            }
        }
        Err(SetupError::Timeout("CMDQ_CONS reaching CMDQ_PROD"))
    }

    /// Recovers from a command queue error the way §7.1 lets software do:
    /// overwrites the failed command (at CMDQ_CONS) with a CMD_SYNC,
    /// acknowledges GERROR.CMDQ_ERR through GERRORN and waits for the queue
    /// to drain. Does nothing when no error is active.
    ///
    /// # Errors
    /// As [`Driver::submit`].
    pub fn recover<M: PhysMem + ?Sized>(&mut self, mem: &M) -> Result<()> {
        if self.cmdq_error()?.is_none() {
            return Ok(());
        }
        let cons = QueueIndex([self.read32(offset::CMDQ_CONS)? as u64]).pointer(self.cmdq.log2);
        put(mem, self.cmdq.slot(cons), &cmd_bytes(&CMD_SYNC))?;
        let gerror = self.read32(offset::GERROR)?;
        let gerrorn = self.read32(offset::GERRORN)?;
        self.write(offset::GERRORN, Width::W32, ((gerrorn & !cmdq_err_bit()) | (gerror & cmdq_err_bit())) as u64)?;
        self.wait_consumed()
    }

    /// CMD_CFGI_ALL and CMD_TLBI_NSNH_ALL (and CMD_SYNC): forget every
    /// cached configuration and translation (SMMUv3 §4.3.6, §4.4.4.1).
    ///
    /// # Errors
    /// As [`Driver::submit`].
    pub fn invalidate_all<M: PhysMem + ?Sized>(&mut self, mem: &M) -> Result<()> {
        self.submit(mem, &[Command::cfgi_all(), Command::TlbiNsnhAll])
    }

    /// Reads every event record between EVENTQ_CONS and EVENTQ_PROD, then
    /// writes EVENTQ_CONS = EVENTQ_PROD, copying OVFLG into OVACKFLG to
    /// acknowledge an overflow (SMMUv3 §7.2, §7.4).
    ///
    /// # Errors
    /// Bus and memory errors.
    pub fn drain_records<M: PhysMem + ?Sized>(&mut self, mem: &M) -> Result<Vec<EventRecord>> {
        let q = self.eventq;
        let prod = self.read32(offset::EVENTQ_PROD)?;
        let mut c = QueueIndex([self.read32(offset::EVENTQ_CONS)? as u64]).pointer(q.log2);
        let p = QueueIndex([prod as u64]).pointer(q.log2);
        let mut out = Vec::new();
        while c != p {
            let mut b = [0u8; 32];
            mem.read(Hpa::new(q.slot(c)), &mut b)?;
            out.push(EventRecord::from_bytes(&b));
            c = c.wrapping_add(1) & q.wmask();
        }
        let ovflg = prod & (1 << 31);
        self.write(offset::EVENTQ_CONS, Width::W32, (c | ovflg) as u64)?;
        Ok(out)
    }

    /// [`Driver::drain_records`], decoded; records with an event number
    /// the format does not know are dropped.
    ///
    /// # Errors
    /// As [`Driver::drain_records`].
    pub fn drain_events<M: PhysMem + ?Sized>(&mut self, mem: &M) -> Result<Vec<Event>> {
        Ok(self.drain_records(mem)?.iter().filter_map(EventRecord::decode).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use iommu_format::smmuv3::event::EventId;
    use iommu_types::{PagedMemory, StreamId};

    use super::*;

    const MEM: u64 = 64 << 20;

    fn setup() -> (PagedMemory, BumpAlloc) {
        (PagedMemory::new(MEM), BumpAlloc::new(0x10_0000, MEM))
    }

    fn rd(mem: &PagedMemory, a: u64) -> u64 {
        mem.read_u64(Hpa::new(a)).unwrap()
    }

    #[test]
    fn bump_alloc_aligns_zeroes_and_runs_out() {
        let mem = PagedMemory::new(1 << 20);
        mem.write_u64(Hpa::new(0x1_0000), 0xDEAD).unwrap();
        let mut a = BumpAlloc::new(0x8, 1 << 20);
        assert_eq!(a.alloc(&mem, 0x40, 0x40), Ok(0x40));
        assert_eq!(a.alloc(&mem, 0x1000, 0x1_0000), Ok(0x1_0000));
        assert_eq!(rd(&mem, 0x1_0000), 0, "allocated regions are zeroed");
        assert_eq!(a.next(), 0x1_1000);
        assert_eq!(a.alloc(&mem, 1 << 20, 0x1000), Err(SetupError::Exhausted { size: 1 << 20, align: 0x1000 }));
        assert_eq!(a.reserve(8, 3), None, "alignment must be a power of two");
        // Past the end of memory.
        let mut b = BumpAlloc::new(1 << 20, 2 << 20);
        assert!(matches!(b.alloc(&mem, 0x1000, 0x1000), Err(SetupError::Mem(_))));
    }

    /// A 4K, 48-bit stage-1 tree: four levels from 0, each table descriptor
    /// pointing at the next level's table, the leaf holding the output.
    #[test]
    fn stage1_4k_four_levels_decode() {
        let (mem, mut a) = setup();
        let mut t = VmsaTables::stage1(&mem, &mut a, Granule::G4K, 48).unwrap();
        assert_eq!((t.start_level(), t.root_bits(), t.tsz()), (0, 9, 16));
        assert_eq!(t.root() % 0x1000, 0);
        let va = 0x0000_7F12_3456_7000;
        let walk = t.map(&mem, &mut a, va, 0x4410_3000, 3, s1_attrs(1)).unwrap();
        assert_eq!(walk.iter().map(|w| w.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(walk[0].1, t.root() + 8 * ((va >> 39) & 0x1FF));
        for i in 0..3 {
            let d = S1Desc::from_words([rd(&mem, walk[i].1)]);
            assert_eq!((d.get(S1Desc::VALID), d.get(S1Desc::TYPE)), (1, 1), "level {i} is a table");
            let next = d.get_in_place(S1Desc::OA);
            let shift = Granule::G4K.level_shift(i as u8 + 1);
            assert_eq!(walk[i + 1].1, next + 8 * ((va >> shift) & 0x1FF), "level {i} points at the next table");
        }
        // Golden leaf (format crate): 0x4410_3000 RW, AF, nG, ISH, page.
        assert_eq!(rd(&mem, walk[3].1), 0x4410_3F43);
        assert_eq!(t.entry_addr(va, 3), Some(walk[3].1));
        assert_eq!(t.entry_addr(va + (1 << 39), 3), None);
        // A neighbouring page shares the upper tables.
        let w2 = t.map(&mem, &mut a, va + 0x1000, 0x4410_4000, 3, s1_attrs(3)).unwrap();
        assert_eq!(&w2[..3], &walk[..3]);
        assert_eq!(w2[3].1, walk[3].1 + 8);
        assert_eq!(S1Desc::from_words([rd(&mem, w2[3].1)]).get(S1Desc::AP), 3);
        assert_eq!(t.regions().len(), 4);
        // A 2 MiB block at level 2: type bit clear.
        let w3 = t.map(&mem, &mut a, 0x4000_0000, 0x8020_0000, 2, s1_attrs(1)).unwrap();
        let d = S1Desc::from_words([rd(&mem, w3[2].1)]);
        assert_eq!((d.get(S1Desc::VALID), d.get(S1Desc::TYPE), d.get_in_place(S1Desc::OA)), (1, 0, 0x8020_0000));
        assert_eq!(t.map(&mem, &mut a, 0, 0, 4, 0), Err(SetupError::Geometry("leaf level outside the tree")));
    }

    /// A 4K stage-2 tree with a 40-bit input starting at level 1: two
    /// concatenated level-1 tables (10 index bits), 8 KiB aligned.
    #[test]
    fn stage2_concatenated_start_tables() {
        let (mem, mut a) = setup();
        let mut t = VmsaTables::stage2(&mem, &mut a, Granule::G4K, 40, 1).unwrap();
        assert_eq!((t.root_bits(), t.root() % 0x2000), (10, 0));
        let g = t.geometry();
        assert_eq!((g.t0sz(), g.sl0()), (24, Some(1)));
        let ipa = 0x80_4000_1000;
        let walk = t.map(&mem, &mut a, ipa, 0x20_0000, 3, s2_attrs(3)).unwrap();
        assert_eq!(walk[0], (1, t.root() + 8 * 0x201), "index 0x201 lies in the second concatenated table");
        // Golden stage-2 page (format crate) at 0x20_0000.
        assert_eq!(rd(&mem, walk[2].1), 0x0020_07FF);
        assert!(t.map(&mem, &mut a, 1 << 40, 0, 3, 0).is_err(), "input beyond 40 bits");
        // Start levels S2SL0 cannot express, and too many concatenated tables.
        assert!(VmsaTables::stage2(&mem, &mut a, Granule::G4K, 48, 3).is_err());
        assert!(VmsaTables::stage2(&mem, &mut a, Granule::G4K, 48, 1).is_err());
        assert!(VmsaTables::stage2(&mem, &mut a, Granule::G64K, 48, 0).is_err());
        // 64K, start level 1: 48 − 42 = 6 index bits.
        let t64 = VmsaTables::stage2(&mem, &mut a, Granule::G64K, 48, 1).unwrap();
        assert_eq!((t64.root_bits(), t64.geometry().sl0()), (6, Some(2)));
    }

    /// 64K and 16K granules, blocks, and the `to_out` hook writing table
    /// pointers as IPAs.
    #[test]
    fn other_granules_and_ipa_table_pointers() {
        let (mem, mut a) = setup();
        let mut t = VmsaTables::stage1(&mem, &mut a, Granule::G64K, 48).unwrap();
        assert_eq!((t.start_level(), t.root_bits()), (1, 6));
        let walk = t.map(&mem, &mut a, 0x2000_0000, 0x4000_0000, 2, s1_attrs(1)).unwrap();
        assert_eq!(walk.len(), 2);
        let table = S1Desc::from_words([rd(&mem, walk[0].1)]).get_in_place(S1Desc::OA);
        assert_eq!(table % 0x1_0000, 0, "64K tables are 64K aligned");
        assert_eq!(rd(&mem, walk[1].1) & 3, 1, "level-2 block");

        const OFF: u64 = 0x1_0000_0000;
        let mut t = VmsaTables::stage1(&mem, &mut a, Granule::G16K, 36).unwrap().with_to_out(|pa| pa + OFF);
        t.table_bits = 1 << 61;
        assert_eq!((t.start_level(), t.root_bits()), (2, 11));
        assert_eq!(t.ttb(), t.root() + OFF);
        let walk = t.map(&mem, &mut a, 0x1234_4000, 0x5000_4000, 3, s1_attrs(1)).unwrap();
        let d = rd(&mem, walk[0].1);
        let next = t.regions()[1].0;
        assert_eq!(d, (next + OFF) | 3 | 1 << 61, "table pointer is the IPA, with APTable");
        assert_eq!(walk[1].1, next + 8 * ((0x1234_4000u64 >> 14) & 0x7FF));
        assert_eq!(rd(&mem, walk[1].1) & OA_MASK, 0x5000_4000);
    }

    #[test]
    fn ste_and_cd_constructors_set_the_fields() {
        let s = ste_s1(0x4010_2000, S1Fmt::TwoLevel4K, 8, S1Dss::Substream0);
        assert_eq!((s.get(Ste::V), s.config(), s.s1_context_ptr()), (1, SteConfig::S1, 0x4010_2000));
        assert_eq!((s.get(Ste::S1FMT), s.get(Ste::S1CDMAX), s.get(Ste::S1DSS)), (1, 8, 2));
        let g = S2Geometry { granule: Granule::G16K, input_bits: 40, start_level: 2 };
        let s = ste_s2(0x1234, g, 0x4020_0000);
        assert_eq!(s.config(), SteConfig::S2);
        assert_eq!((s.get(Ste::S2VMID), s.get(Ste::S2T0SZ), s.get(Ste::S2SL0), s.get(Ste::S2TG)), (0x1234, 24, 1, 2));
        assert_eq!((s.get(Ste::S2AA64), s.get(Ste::S2R), s.get(Ste::S2PS), s.s2ttb()), (1, 1, 5, 0x4020_0000));
        assert_eq!(s.get_in_place(Ste::S1CONTEXTPTR), 0, "stage-1 fields clear");
        let n = ste_nested(0x8000_0000, S1Fmt::Linear, 0, S1Dss::Terminate, 7, g, 0x4020_0000);
        assert_eq!((n.config(), n.s1_context_ptr(), n.get(Ste::S2VMID)), (SteConfig::Nested, 0x8000_0000, 7));
        assert_eq!(ste_bypass().config(), SteConfig::Bypass);
        assert_eq!((ste_abort().get(Ste::V), ste_abort().config()), (1, SteConfig::Abort));
        // The format crate's golden CD, but for TG1 (4K) and EPD1.
        let c = cd(0xBEEF, 0x4010_4000, 16, Granule::G4K, 4);
        let b = c.to_bytes();
        assert_eq!(&b[0..8], &[0x10, 0x35, 0x80, 0xC0, 0x04, 0xE2, 0xEF, 0xBE]);
        assert_eq!((c.ttb0(), c.get(Cd::MAIR0)), (0x4010_4000, 0x44FF));
        // An unencodable S2 start level gives the reserved SL0.
        let bad = S2Geometry { granule: Granule::G4K, input_bits: 40, start_level: 3 };
        assert_eq!(ste_s2(0, bad, 0).get(Ste::S2SL0), 3);
    }

    #[test]
    fn linear_and_two_level_stream_tables() {
        let (mem, mut a) = setup();
        let mut st = StreamTable::linear(&mem, &mut a, 8).unwrap();
        assert_eq!(st.base_cfg(), 0x188);
        let addr = st.set_ste(&mem, &mut a, 5, &ste_bypass()).unwrap();
        assert_eq!(addr, st.base() + 5 * 64);
        assert_eq!(rd(&mem, addr), ste_bypass().words()[0]);
        assert_eq!(
            st.set_ste(&mem, &mut a, 256, &ste_bypass()),
            Err(SetupError::OutOfRange { what: "StreamID", index: 256 })
        );

        let mut st = StreamTable::two_level(&mem, &mut a, 16, 8).unwrap();
        assert_eq!(st.base_cfg(), 1 << 16 | 8 << 6 | 16);
        let sid = 0x1234;
        let addr = st.set_ste(&mem, &mut a, sid, &ste_bypass()).unwrap();
        let l1 = L1Std::from_words([rd(&mem, st.l1_desc_addr(sid).unwrap())]);
        assert_eq!(st.l1_desc_addr(sid), Some(st.base() + 8 * 0x12));
        assert_eq!(l1.get(L1Std::SPAN), 9);
        assert_eq!(addr, l1.get_in_place(L1Std::L2PTR) + 64 * 0x34);
        assert_eq!(l1.get_in_place(L1Std::L2PTR) % (64 << 8), 0);
        // Same level-2 array for a neighbour; another array for another group.
        assert_eq!(st.ste_addr(&mem, &mut a, 0x1200).unwrap(), l1.get_in_place(L1Std::L2PTR));
        let other = st.ste_addr(&mem, &mut a, 0x1300).unwrap();
        assert_ne!(other & !0x3FFF, addr & !0x3FFF);
        assert!(StreamTable::two_level(&mem, &mut a, 16, 7).is_err());
    }

    #[test]
    fn linear_and_two_level_cd_tables() {
        let (mem, mut a) = setup();
        let c = cd(1, 0x5000, 16, Granule::G4K, 5);
        let mut t = CdTable::linear(&mem, &mut a, 0).unwrap();
        let addr = t.set_cd(&mem, &mut a, 0, &c).unwrap();
        assert_eq!((addr, t.ptr()), (t.base(), t.base()));
        assert!(t.set_cd(&mem, &mut a, 1, &c).is_err());
        let mut b = [0u8; 64];
        mem.read(Hpa::new(addr), &mut b).unwrap();
        assert_eq!(Cd::from_bytes(&b), c);
        let s = t.ste_s1(S1Dss::Terminate);
        assert_eq!((s.s1_context_ptr(), s.get(Ste::S1CDMAX)), (t.base(), 0));

        const OFF: u64 = 0x2_0000_0000;
        let mut t = CdTable::two_level(&mem, &mut a, 10, S1Fmt::TwoLevel4K).unwrap().with_to_out(|pa| pa + OFF);
        assert_eq!(t.ptr(), t.base() + OFF);
        let addr = t.set_cd(&mem, &mut a, 0x85, &c).unwrap();
        let l1 = L1Cd::from_words([rd(&mem, t.base() + 8 * 2)]);
        assert_eq!(t.l1_desc_addr(0x85), Some(t.base() + 16));
        assert_eq!(l1.get(L1Cd::V), 1);
        assert_eq!(l1.get_in_place(L1Cd::L2PTR), addr - 64 * 5 + OFF, "L1CD holds the leaf's IPA");
        assert_eq!(t.regions().len(), 2);
        let n = t.ste_nested(S1Dss::Bypass, 3, S2Geometry { granule: Granule::G4K, input_bits: 48, start_level: 0 }, 0);
        assert_eq!((n.s1_context_ptr(), n.get(Ste::S1FMT), n.get(Ste::S1CDMAX)), (t.base() + OFF, 1, 10));
        let t64 = CdTable::two_level(&mem, &mut a, 12, S1Fmt::TwoLevel64K).unwrap();
        assert_eq!(t64.regions()[0].1, 8 * 4);
        assert!(CdTable::two_level(&mem, &mut a, 4, S1Fmt::Linear).is_err());
    }

    /// A register file that acts like an SMMU as far as the driver can
    /// tell: CR0ACK follows CR0, writes to CMDQ_PROD consume the commands
    /// at once (logging each with its slot, failing on `fail_opcode`), and
    /// GERRORN acknowledges errors.
    struct FakeSmmu<'m> {
        mem: &'m PagedMemory,
        regs: RefCell<HashMap<u64, u64>>,
        writes: RefCell<Vec<(u64, Width, u64)>>,
        consumed: RefCell<Vec<(u32, Command)>>,
        fail_opcode: Option<u8>,
    }

    impl<'m> FakeSmmu<'m> {
        fn new(mem: &'m PagedMemory, fail_opcode: Option<u8>) -> Self {
            Self {
                mem,
                regs: RefCell::new(HashMap::new()),
                writes: RefCell::new(Vec::new()),
                consumed: RefCell::new(Vec::new()),
                fail_opcode,
            }
        }

        fn reg(&self, off: u64) -> u64 {
            self.regs.borrow().get(&off).copied().unwrap_or(0)
        }

        fn set(&self, off: u64, v: u64) {
            self.regs.borrow_mut().insert(off, v);
        }

        fn consume(&self) {
            if self.reg(offset::CR0) & 8 == 0 || (self.reg(offset::GERROR) ^ self.reg(offset::GERRORN)) & 1 != 0 {
                return;
            }
            let base = self.reg(offset::CMDQ_BASE);
            let log2 = (base & 0x1F) as u32;
            let ring = Ring { base: base & !0x1F, log2, entry: 16 };
            let prod = self.reg(offset::CMDQ_PROD) as u32 & ring.wmask();
            let mut cons = self.reg(offset::CMDQ_CONS) as u32 & ring.wmask();
            while cons != prod {
                let a = ring.slot(cons);
                let w = [rd(self.mem, a), rd(self.mem, a + 8)];
                match Command::decode(w) {
                    Ok(c) if Some(c.opcode()) != self.fail_opcode => self.consumed.borrow_mut().push((cons, c)),
                    _ => {
                        self.set(offset::CMDQ_CONS, (1 << 24 | cons) as u64);
                        self.set(offset::GERROR, self.reg(offset::GERROR) ^ 1);
                        return;
                    }
                }
                cons = cons.wrapping_add(1) & ring.wmask();
            }
            self.set(offset::CMDQ_CONS, cons as u64);
        }

        fn prod_writes(&self) -> Vec<u64> {
            self.writes.borrow().iter().filter(|w| w.0 == offset::CMDQ_PROD).map(|w| w.2).collect()
        }
    }

    impl RegisterBus for FakeSmmu<'_> {
        fn read(&self, off: u64, _width: Width) -> core::result::Result<u64, BusError> {
            Ok(match off {
                offset::CR0ACK => self.reg(offset::CR0),
                _ => self.reg(off),
            })
        }

        fn write(&self, off: u64, width: Width, value: u64) -> core::result::Result<(), BusError> {
            self.writes.borrow_mut().push((off, width, value));
            self.set(off, value);
            if matches!(off, offset::CMDQ_PROD | offset::CR0 | offset::GERRORN) {
                self.consume();
            }
            Ok(())
        }
    }

    fn bring_up_fake<'a>(
        fake: &'a FakeSmmu<'a>,
        a: &mut BumpAlloc,
        cmdq_log2: u32,
        eventq_log2: u32,
    ) -> (Driver<&'a FakeSmmu<'a>>, StreamTable) {
        let st = StreamTable::linear(fake.mem, a, 4).unwrap();
        let cfg = DriverConfig::new(&st).with_queues(cmdq_log2, eventq_log2);
        (Driver::bring_up(fake, fake.mem, a, &cfg).unwrap(), st)
    }

    /// The standard bring-up, register by register, and the three commands
    /// it submits in the first three slots.
    #[test]
    fn bring_up_programs_the_registers_in_order() {
        let (mem, mut a) = setup();
        let fake = FakeSmmu::new(&mem, None);
        let (d, st) = bring_up_fake(&fake, &mut a, 5, 7);
        let w = fake.writes.borrow().clone();
        let expect = [
            (offset::STRTAB_BASE, Width::W64, st.base()),
            (offset::STRTAB_BASE_CFG, Width::W32, 0x184),
            (offset::CMDQ_BASE, Width::W64, d.cmdq_base() | 5),
            (offset::CMDQ_PROD, Width::W32, 0),
            (offset::CMDQ_CONS, Width::W32, 0),
            (offset::EVENTQ_BASE, Width::W64, d.eventq_base() | 7),
            (0x100A8, Width::W32, 0),
            (0x100AC, Width::W32, 0),
            (offset::CR2, Width::W32, 2),
            (offset::CR0, Width::W32, 0xC),
            (offset::CMDQ_PROD, Width::W32, 3),
            (offset::CR0, Width::W32, 0xD),
        ];
        assert_eq!(w, expect);
        assert_eq!(d.cmdq_base() % (16 << 5), 0);
        assert_eq!(d.eventq_base() % (32 << 7), 0);
        let consumed = fake.consumed.borrow().clone();
        assert_eq!(consumed, [(0, Command::cfgi_all()), (1, Command::TlbiNsnhAll), (2, CMD_SYNC)]);
        assert_eq!(rd(&mem, d.cmdq_base()), 0x04, "CMD_CFGI_ALL opcode in slot 0");
        assert_eq!(rd(&mem, d.cmdq_base() + 8), 31, "Range = 31");
        assert_eq!(rd(&mem, d.cmdq_base() + 32), 0x46, "CMD_SYNC in slot 2");
    }

    /// A 4-entry queue: commands wrap (the wrap flag toggles in PROD), and
    /// a batch larger than the queue is published in pieces that fit.
    #[test]
    fn commands_wrap_and_large_batches_are_split() {
        let (mem, mut a) = setup();
        let fake = FakeSmmu::new(&mem, None);
        let (mut d, _) = bring_up_fake(&fake, &mut a, 2, 2);
        assert_eq!(d.cmdq_prod(), 3);
        let ste = |s| Command::CfgiSte { sid: StreamId(s), leaf: true };
        d.submit(&mem, &[ste(1)]).unwrap();
        assert_eq!(d.cmdq_prod(), 4 | 1, "slot 0 of the second pass");
        assert_eq!(&fake.consumed.borrow()[3..], &[(3, ste(1)), (4, CMD_SYNC)]);
        assert_eq!(rd(&mem, d.cmdq_base() + 48) & 0xFF, 0x03, "CFGI_STE in slot 3");
        assert_eq!(rd(&mem, d.cmdq_base()) & 0xFF, 0x46, "CMD_SYNC wrapped to slot 0");
        // Nine commands and a sync: four, four, two.
        let batch: Vec<Command> = (10..19).map(ste).collect();
        d.submit(&mem, &batch).unwrap();
        let prods = fake.prod_writes();
        assert_eq!(&prods[prods.len() - 3..], &[1, 5, 7]);
        let consumed = fake.consumed.borrow().clone();
        let slots: Vec<u32> = consumed[5..].iter().map(|c| c.0).collect();
        assert_eq!(slots, [5, 6, 7, 0, 1, 2, 3, 4, 5, 6]);
        let cmds: Vec<Command> = consumed[5..].iter().map(|c| c.1).collect();
        assert_eq!(&cmds[..9], &batch[..]);
        assert_eq!(cmds[9], CMD_SYNC);
        assert_eq!(d.cmdq_prod(), 7);
    }

    /// A command the SMMU refuses stops the queue: `submit` reports
    /// CMDQ_CONS.ERR and the index, `recover` skips the command.
    #[test]
    fn command_errors_are_reported_and_recovered() {
        let (mem, mut a) = setup();
        let fake = FakeSmmu::new(&mem, Some(0x11));
        let (mut d, _) = bring_up_fake(&fake, &mut a, 3, 2);
        let bad = Command::TlbiNhAsid { vmid: 0, asid: 1 };
        let err = d.submit(&mem, &[Command::TlbiNsnhAll, bad, Command::TlbiNsnhAll]).unwrap_err();
        assert_eq!(err, SetupError::Command { code: 1, cons: 4 });
        assert_eq!(d.cmdq_error().unwrap(), Some(err));
        assert!(err.to_string().contains("0x1"));
        d.recover(&mem).unwrap();
        assert_eq!(d.cmdq_error().unwrap(), None);
        let tail: Vec<Command> = fake.consumed.borrow()[3..].iter().map(|c| c.1).collect();
        assert_eq!(tail, [Command::TlbiNsnhAll, CMD_SYNC, Command::TlbiNsnhAll, CMD_SYNC]);
        assert_eq!(fake.reg(offset::GERRORN) & 1, 1, "GERRORN acknowledges the error");
        d.submit(&mem, &[]).unwrap();
    }

    /// Records the fake SMMU "wrote" are drained in order, wrapping in a
    /// 2-entry queue; EVENTQ_CONS follows EVENTQ_PROD and acknowledges an
    /// overflow.
    #[test]
    fn events_are_drained_and_acknowledged() {
        let (mem, mut a) = setup();
        let fake = FakeSmmu::new(&mem, None);
        let (mut d, _) = bring_up_fake(&fake, &mut a, 2, 1);
        assert_eq!(d.drain_events(&mem).unwrap(), []);
        let ev = |sid| Event { input_addr: 0x1000 * sid as u64, ..Event::new(EventId::FTranslation, StreamId(sid)) };
        let eq = d.eventq_base();
        let put_ev = |slot: u64, e: &Event| mem.write(Hpa::new(eq + 32 * slot), &e.encode().to_bytes());
        put_ev(0, &ev(1)).unwrap();
        put_ev(1, &ev(2)).unwrap();
        fake.set(0x100A8, 2);
        assert_eq!(d.drain_events(&mem).unwrap(), [ev(1), ev(2)]);
        assert_eq!(fake.reg(0x100AC), 2);
        // Wrapped, with an overflow flagged and an unknown record dropped.
        put_ev(0, &ev(3)).unwrap();
        mem.write(Hpa::new(eq + 32), &[0xFF; 32]).unwrap();
        fake.set(0x100A8, 1 << 31);
        let recs = d.drain_records(&mem).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(fake.reg(0x100AC), 1 << 31, "OVACKFLG copied from OVFLG");
        fake.set(0x100A8, 1 << 31 | 2);
        fake.set(0x100AC, 0);
        assert_eq!(d.drain_events(&mem).unwrap(), [ev(3)]);
    }
}
