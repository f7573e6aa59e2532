//! Programmed VT-d units, built the way a driver builds them: tables written
//! to memory, then registers programmed through the MMIO window.
//!
//! Tables and the register sequence come from [`VtdSetup`]: root table →
//! RTADDR (TTM selects legacy or scalable mode) → GCMD.SRTP, wait GSTS.RTPS
//! → global context-cache invalidation (CCMD) → global IOTLB invalidation
//! (IOTLB register at ECAP.IRO × 16 + 8) → GCMD.TE, wait GSTS.TES.
//!
//! Shared by `tests/no_alloc.rs` and `benches/translate.rs` (through
//! `#[path]`), so not every item is used by every includer.
#![allow(dead_code)]

use std::collections::BTreeSet;

use iommu_format::vtd::context::{levels_width, ContextRepr, TranslationType};
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidEntryRepr, SecondStageCfg};
use iommu_format::vtd::pte::SsRules;
use iommu_format::vtd::regs::{offset as o, Caps, Ecap};
use iommu_hw::vtd::{Request, VtdConfig, VtdUnit};
use iommu_testkit::vtd::VtdSetup;
use iommu_testkit::{Format, PageAlloc, PageTable};
use iommu_types::{
    Access, DomainId, Gpa, Hpa, Iova, NullInterrupts, PageSize, PagedMemory, Pasid, Perm, PhysMem, RegisterBus,
    SourceId, Width,
};
use iommu_walk::vtd::page::{self, FsWalk, SsWalk};
use iommu_walk::{Translation, WalkFault};

/// The unit type every setup builds.
pub type Unit = VtdUnit<PagedMemory, NullInterrupts>;

/// Size of the unit's memory.
pub const MEM_SIZE: u64 = 256 << 20;
/// Table pages (root, context, PASID directory and tables, page tables) are
/// allocated from `[TABLES_START, TABLES_END)`.
pub const TABLES_START: u64 = 0x10_0000;
/// End of the table-page range.
pub const TABLES_END: u64 = 0x400_0000;
/// Intermediate (guest-physical) address of the first data page in the
/// nested setup; above every table page, so it never aliases one.
pub const DATA_GPA: u64 = 0x400_0000;
/// Host-physical address of the first data page.
pub const DATA_HPA: u64 = 0x800_0000;
/// First mapped IOVA; page `i` is `IOVA_BASE + i * 4 KiB` (canonical for a
/// 4-level first stage, inside a 4-level second stage's 48-bit width).
pub const IOVA_BASE: u64 = 0x1234_5600_0000;
/// An IOVA no setup maps (not present at the top level).
pub const UNMAPPED: u64 = 0x7000_0000_0000;
/// Most pages a setup can map (data HPAs stay inside memory).
pub const MAX_PAGES: usize = ((MEM_SIZE - DATA_HPA) >> 12) as usize;

/// The requester every setup programs: bus 3, device 2, function 1.
pub const SID: SourceId = SourceId::from_bdf(3, 2, 1);
/// The PASID the scalable setups program: directory entry 1, table entry 2.
pub const PASID: Pasid = Pasid::new(0x42);
/// Domain of the legacy context entry.
pub const LEGACY_DID: u16 = 5;
/// Domain of the scalable setups' PASID entry.
pub const SCALABLE_DID: u16 = 7;

const RW: Perm = Perm { read: true, write: true, exec: false };

/// Which translation a setup programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Legacy mode, context entry TT=00b over a 4-level second stage.
    LegacySs4,
    /// Scalable mode, PASID entry PGTT=010b (second stage, 4-level).
    ScalableSs4,
    /// Scalable mode, PASID entry PGTT=001b (first stage, 4-level).
    ScalableFs4,
    /// Scalable mode, PASID entry PGTT=011b: 4-level first stage nested over
    /// a 4-level second stage.
    ScalableNested4x4,
}

impl Kind {
    /// Every setup.
    pub const ALL: [Kind; 4] = [Kind::LegacySs4, Kind::ScalableSs4, Kind::ScalableFs4, Kind::ScalableNested4x4];

    /// A short name for messages and benchmark ids.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::LegacySs4 => "legacy_ss4",
            Kind::ScalableSs4 => "scalable_ss4",
            Kind::ScalableFs4 => "scalable_fs4",
            Kind::ScalableNested4x4 => "scalable_nested4x4",
        }
    }
}

/// The page walk a setup's translations make, for calling the walkers
/// directly with the parameters the unit derives from its capabilities and
/// the programmed entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Walk {
    /// Second stage only.
    Ss(SsWalk),
    /// First stage only.
    Fs(FsWalk),
    /// First stage nested over second stage.
    Nested(FsWalk, SsWalk),
}

impl Walk {
    /// Walks `input` in `mem`.
    ///
    /// # Errors
    /// The walker's fault.
    pub fn run(&self, mem: &PagedMemory, input: u64, access: Access) -> Result<Translation, WalkFault> {
        match self {
            Walk::Ss(s) => page::ss_walk(mem, s, input, access),
            Walk::Fs(f) => page::fs_only(mem, f, input, access),
            Walk::Nested(f, s) => page::nested(mem, f, s, input, access),
        }
    }
}

/// A programmed unit with translation enabled.
#[derive(Debug)]
pub struct Setup {
    /// What was programmed.
    pub kind: Kind,
    /// The unit; it owns the memory its tables are in.
    pub unit: Unit,
    /// The requester whose context entry is programmed.
    pub sid: SourceId,
    /// The PASID requests carry (`None` in legacy mode).
    pub pasid: Option<Pasid>,
    /// Mapped IOVAs (4 KiB pages, read/write).
    pub iovas: Vec<Iova>,
    /// Host-physical frame each of `iovas` translates to.
    pub frames: Vec<Hpa>,
    /// The walk a translation of one of `iovas` makes on an IOTLB miss.
    pub walk: Walk,
}

impl Setup {
    /// Builds and programs `kind` on `cfg` with `pages` mapped pages.
    ///
    /// # Panics
    /// If `pages` exceeds [`MAX_PAGES`], the configuration lacks what `kind`
    /// needs, or a register handshake does not complete.
    pub fn new(kind: Kind, cfg: VtdConfig, pages: usize) -> Self {
        match kind {
            Kind::LegacySs4 => legacy_ss4(cfg, pages),
            Kind::ScalableSs4 => scalable_ss4(cfg, pages),
            Kind::ScalableFs4 => scalable_fs4(cfg, pages),
            Kind::ScalableNested4x4 => scalable_nested4x4(cfg, pages),
        }
    }

    /// A request of this setup's requester and PASID for `addr`.
    pub fn request(&self, addr: Iova, access: Access) -> Request {
        Request { sid: self.sid, pasid: self.pasid, addr, access }
    }

    /// The output address the unit must produce for `iovas[i] + offset`.
    pub fn expected(&self, i: usize, offset: u64) -> Hpa {
        Hpa::new(self.frames[i].raw() + offset)
    }
}

/// A unit on `cfg` over fresh memory, translation disabled.
fn new_unit(cfg: VtdConfig) -> Unit {
    VtdUnit::new(cfg, PagedMemory::new(MEM_SIZE), NullInterrupts)
}

fn iovas(pages: usize) -> Vec<u64> {
    assert!(pages <= MAX_PAGES, "at most {MAX_PAGES} pages");
    (0..pages as u64).map(|i| IOVA_BASE + (i << 12)).collect()
}

fn data_hpa(i: usize) -> u64 {
    DATA_HPA + ((i as u64) << 12)
}

fn write(mem: &PagedMemory, addr: Hpa, bytes: &[u8]) {
    mem.write(addr, bytes).expect("table write inside memory");
}

/// The second-stage walk the unit makes for a `levels`-level table at `root`
/// (mirrors the unit's derivation from CAP/ECAP; SSEE and SSADE clear).
pub fn ss_walk_params(caps: &Caps, root: Hpa, levels: u8, scalable: bool) -> SsWalk {
    SsWalk {
        root,
        levels,
        width: levels_width(levels).min(caps.mgaw()),
        rules: SsRules {
            haw: caps.haw(),
            large_2m: caps.ss_large_page(2),
            large_1g: caps.ss_large_page(3),
            snp_reserved: !scalable && !caps.ecap_has(Ecap::SC),
            tm_reserved: !caps.ecap_has(Ecap::DT),
        },
        exec_enable: false,
        ad: false,
    }
}

/// The first-stage walk the unit makes for `fs` (WPE and EAFE as programmed).
pub fn fs_walk_params(caps: &Caps, fs: &FirstStageCfg) -> FsWalk {
    FsWalk {
        root: fs.root,
        levels: fs.levels,
        haw: caps.haw(),
        fs1gp: caps.fs_large_page(3),
        wpe: fs.wpe,
        eafe: fs.eafe,
    }
}

/// (a) Legacy mode: root entry → context entry (TT=00b, AW=2, DID 5) → a
/// 4-level second stage mapping `pages` pages.
pub fn legacy_ss4(cfg: VtdConfig, pages: usize) -> Setup {
    let unit = new_unit(cfg);
    let mem = unit.mem();
    let mut alloc = PageAlloc::new(TABLES_START, TABLES_END);
    let mut setup = VtdSetup::new(&mut alloc, false);
    let mut ss = PageTable::new(Format::SecondStage, 4, &mut alloc);
    let iovas = iovas(pages);
    for (i, &iova) in iovas.iter().enumerate() {
        ss.map(mem, &mut alloc, iova, data_hpa(i), PageSize::Size4K, RW);
    }
    let ce = ContextRepr {
        fpd: false,
        tt: TranslationType::Untranslated,
        slptptr: ss.root,
        aw: 2,
        did: DomainId::new(LEGACY_DID),
    };
    setup.legacy_device(mem, &mut alloc, SID, &ce);
    setup.enable(&unit);
    let walk = Walk::Ss(ss_walk_params(unit.caps(), ss.root, 4, false));
    finish(Kind::LegacySs4, unit, None, iovas, walk)
}

/// Scalable root and context entries (PASIDs enabled), the PASID entry `pe`
/// for [`PASID`], then the registers ([`VtdSetup`]).
fn program_scalable(unit: &Unit, alloc: &mut PageAlloc, pe: &PasidEntryRepr) {
    let mut setup = VtdSetup::new(alloc, true);
    setup.scalable_device(unit.mem(), alloc, SID, false, false);
    setup.pasid_entry(unit.mem(), alloc, SID, PASID, pe);
    setup.enable(unit);
}

fn pasid_entry(config: PasidConfig) -> PasidEntryRepr {
    PasidEntryRepr { fpd: false, did: DomainId::new(SCALABLE_DID), pwsnp: false, pgsnp: false, config }
}

fn first_stage_cfg(root: Hpa) -> FirstStageCfg {
    FirstStageCfg { root: Gpa::new(root.raw()), levels: 4, sre: false, ere: false, wpe: false, eafe: false }
}

/// (b) Scalable mode, PGTT=010b: a 4-level second stage.
pub fn scalable_ss4(cfg: VtdConfig, pages: usize) -> Setup {
    let unit = new_unit(cfg);
    let mut alloc = PageAlloc::new(TABLES_START, TABLES_END);
    let mut ss = PageTable::new(Format::SecondStage, 4, &mut alloc);
    let iovas = iovas(pages);
    for (i, &iova) in iovas.iter().enumerate() {
        ss.map(unit.mem(), &mut alloc, iova, data_hpa(i), PageSize::Size4K, RW);
    }
    let ss_cfg = SecondStageCfg { root: ss.root, levels: 4, ssade: false };
    program_scalable(&unit, &mut alloc, &pasid_entry(PasidConfig::SecondStage(ss_cfg)));
    let walk = Walk::Ss(ss_walk_params(unit.caps(), ss.root, 4, true));
    finish(Kind::ScalableSs4, unit, Some(PASID), iovas, walk)
}

/// (c) Scalable mode, PGTT=001b: a 4-level first stage.
pub fn scalable_fs4(cfg: VtdConfig, pages: usize) -> Setup {
    let unit = new_unit(cfg);
    let mut alloc = PageAlloc::new(TABLES_START, TABLES_END);
    let mut fs = PageTable::new(Format::FirstStage, 4, &mut alloc);
    let iovas = iovas(pages);
    for (i, &iova) in iovas.iter().enumerate() {
        fs.map(unit.mem(), &mut alloc, iova, data_hpa(i), PageSize::Size4K, RW);
    }
    let fs_cfg = first_stage_cfg(fs.root);
    program_scalable(&unit, &mut alloc, &pasid_entry(PasidConfig::FirstStage(fs_cfg)));
    let walk = Walk::Fs(fs_walk_params(unit.caps(), &fs_cfg));
    finish(Kind::ScalableFs4, unit, Some(PASID), iovas, walk)
}

/// (d) Scalable mode, PGTT=011b: a 4-level first stage (IOVA → GPA) nested
/// over a 4-level second stage (GPA → HPA). The second stage maps every
/// first-stage table page identically and each data GPA to its own HPA, all
/// with 4 KiB pages, so each table-pointer translation is a full walk
/// (24 entry fetches per miss).
pub fn scalable_nested4x4(cfg: VtdConfig, pages: usize) -> Setup {
    let unit = new_unit(cfg);
    let mem = unit.mem();
    let mut alloc = PageAlloc::new(TABLES_START, TABLES_END);
    let mut fs = PageTable::new(Format::FirstStage, 4, &mut alloc);
    let iovas = iovas(pages);
    for (i, &iova) in iovas.iter().enumerate() {
        fs.map(mem, &mut alloc, iova, DATA_GPA + ((i as u64) << 12), PageSize::Size4K, RW);
    }
    let mut ss = PageTable::new(Format::SecondStage, 4, &mut alloc);
    let table_pages: BTreeSet<u64> = iovas
        .iter()
        .flat_map(|&iova| (1..=4).map(move |l| (iova, l)))
        .map(|(iova, l)| fs.entry_addr(iova, l).expect("first-stage path built").raw() & !0xFFF)
        .collect();
    for p in table_pages {
        assert!(p < DATA_GPA, "table pages stay below the data GPAs");
        ss.map(mem, &mut alloc, p, p, PageSize::Size4K, RW);
    }
    for i in 0..iovas.len() {
        ss.map(mem, &mut alloc, DATA_GPA + ((i as u64) << 12), data_hpa(i), PageSize::Size4K, RW);
    }
    let fs_cfg = first_stage_cfg(fs.root);
    let ss_cfg = SecondStageCfg { root: ss.root, levels: 4, ssade: false };
    program_scalable(&unit, &mut alloc, &pasid_entry(PasidConfig::Nested(fs_cfg, ss_cfg)));
    let walk = Walk::Nested(fs_walk_params(unit.caps(), &fs_cfg), ss_walk_params(unit.caps(), ss.root, 4, true));
    finish(Kind::ScalableNested4x4, unit, Some(PASID), iovas, walk)
}

fn finish(kind: Kind, unit: Unit, pasid: Option<Pasid>, iovas: Vec<u64>, walk: Walk) -> Setup {
    let frames = (0..iovas.len()).map(|i| Hpa::new(data_hpa(i))).collect();
    Setup { kind, unit, sid: SID, pasid, iovas: iovas.into_iter().map(Iova::new).collect(), frames, walk }
}

/// Offset of the IOTLB invalidate register, from ECAP.IRO as a driver reads it.
pub fn iotlb_reg_offset(unit: &Unit) -> u64 {
    let ecap = unit.read(o::ECAP, Width::W64).expect("ECAP read");
    ((ecap >> 8) & 0x3FF) * 16 + 8
}
