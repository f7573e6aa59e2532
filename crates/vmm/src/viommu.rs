//! The vIOMMU presented to a guest: the project's VT-d model in caching
//! mode over guest memory, reached by the guest kernel through a trapping
//! register bus, plus the VMM's reads of the guest's tables.
//!
//! Capabilities offered (VT-d §11.4.2–3), chosen so that every guest PASID
//! entry can become a host attachment: scalable mode, first-stage tables
//! (FSTS) and pass-through (PT), no second stage for the guest (SSTS = 0,
//! NEST = 0: a guest second stage would have to be shadowed, which this
//! VMM does not do), PASIDs (PSS from the assigned devices), ATS (DT),
//! page requests (PRS), and caching mode (CM), which obliges the guest to
//! invalidate after every table change so the VMM sees each one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use iommu_format::vtd::pasid::{PasidConfig, PasidDirEntry, PasidEntryRepr};
use iommu_format::vtd::regs::{offset, Caps, Ecap, TableMode};
use iommu_hw::vtd::{VtdConfig, VtdUnit};
use iommu_os::iommu::NestedS1;
use iommu_types::{BusError, Hpa, InterruptSink, NullInterrupts, Pasid, PhysMem, RegisterBus, SourceId, Width};
use iommu_walk::vtd::context::{self, Context};
use iommu_walk::vtd::pasid;

use crate::guest_mem::GuestMem;

/// The vIOMMU unit.
pub type VUnit = VtdUnit<GuestMem, NullInterrupts>;

/// The capabilities of the vIOMMU, with PASID size field `pss` (the guest
/// may use PASIDs below 2^(pss+1)).
pub fn viommu_config(pss: u64) -> VtdConfig {
    let base = VtdConfig::full_featured().caching_mode(true).with_invalidation_notices(true);
    let ecap =
        Ecap([base.ecap]).with(Ecap::NEST, 0).with(Ecap::SSTS, 0).with(Ecap::SSADS, 0).with(Ecap::PSS, pss.min(19)).0
            [0];
    VtdConfig { ecap, ..base }
}

/// The guest kernel's register bus: every access is an MMIO exit to the
/// VMM, which forwards it to the vIOMMU model and counts it. Invalidations
/// the guest queues are handled by the VMM when the vCPU returns (see
/// `Vm::run_guest`).
#[derive(Debug, Clone)]
pub struct TrapBus {
    unit: Arc<VUnit>,
    exits: Arc<AtomicU64>,
}

impl TrapBus {
    /// A bus to `unit`.
    pub fn new(unit: Arc<VUnit>) -> Self {
        Self { unit, exits: Arc::new(AtomicU64::new(0)) }
    }

    /// MMIO exits so far.
    pub fn exits(&self) -> u64 {
        self.exits.load(Ordering::Relaxed)
    }
}

impl RegisterBus for TrapBus {
    fn read(&self, off: u64, width: Width) -> Result<u64, BusError> {
        self.exits.fetch_add(1, Ordering::Relaxed);
        self.unit.read(off, width)
    }

    fn write(&self, off: u64, width: Width, value: u64) -> Result<(), BusError> {
        self.exits.fetch_add(1, Ordering::Relaxed);
        self.unit.write(off, width, value)
    }
}

/// What a guest PASID entry asks for, as the VMM reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestEntry {
    /// Not present, or unreadable, or not decodable (the guest gets its
    /// fault on DMA; the host holds nothing).
    Absent,
    /// First-stage translation over guest tables: nested on the host with
    /// this stage-1 data.
    FirstStage(NestedS1),
    /// Pass-through: guest-physical addresses, the host stage 2 only.
    PassThrough,
    /// A configuration the vIOMMU does not offer (second stage, nested).
    Unsupported,
}

/// The VMM's reader of a unit's remapping tables (the vIOMMU's, in guest
/// memory; tests also read the host's with it).
#[derive(Debug)]
pub struct GuestTables<'a, M, I> {
    /// The unit whose tables are read.
    pub unit: &'a VtdUnit<M, I>,
}

impl<M: PhysMem, I: InterruptSink> GuestTables<'_, M, I> {
    fn caps(&self) -> Caps {
        *self.unit.caps()
    }

    /// The guest's scalable-mode context for `sid`, if any.
    fn context(&self, sid: SourceId) -> Option<iommu_format::vtd::context::ScalableContextRepr> {
        let rta = self.unit.read(offset::RTADDR, Width::W64).ok()?;
        let mode = TableMode::from_bits(rta >> 10);
        match context::lookup(self.unit.mem(), Hpa::new(rta & !0xFFF), mode, sid, &self.caps()) {
            Ok(Context::Scalable(c)) => Some(c),
            _ => None,
        }
    }

    /// The decoded PASID entry for (`sid`, `pasid`), if present and legal.
    pub fn raw_entry(&self, sid: SourceId, p: Pasid) -> Option<PasidEntryRepr> {
        let ctx = self.context(sid)?;
        pasid::lookup(self.unit.mem(), &ctx, p, &self.caps()).ok().map(|l| l.entry)
    }

    /// The guest's entry for (`sid`, `pasid`).
    pub fn entry(&self, sid: SourceId, p: Pasid) -> GuestEntry {
        let Some(e) = self.raw_entry(sid, p) else { return GuestEntry::Absent };
        match e.config {
            PasidConfig::FirstStage(f) => GuestEntry::FirstStage(NestedS1 {
                root: f.root,
                addr_width: if f.levels == 5 { 57 } else { 48 },
                sre: f.sre,
                eafe: f.eafe,
                wpe: f.wpe,
            }),
            PasidConfig::PassThrough => GuestEntry::PassThrough,
            PasidConfig::SecondStage(_) | PasidConfig::Nested(..) => GuestEntry::Unsupported,
        }
    }

    /// PASIDs below `limit` whose guest entry has P set (a bounded scan of
    /// the guest's directory and tables).
    pub fn present_pasids(&self, sid: SourceId, limit: u32) -> Vec<Pasid> {
        let Some(ctx) = self.context(sid) else { return Vec::new() };
        let mem = self.unit.mem();
        let dir_entries = (1u64 << (ctx.pdts + 7)).min((limit as u64).div_ceil(64));
        let mut out = Vec::new();
        for d in 0..dir_entries {
            let Ok(raw) = mem.read_u64(ctx.pasid_dir.wrapping_add(8 * d)) else { continue };
            let de = PasidDirEntry([raw]);
            if !de.present() {
                continue;
            }
            for i in 0..64u64 {
                let p = d * 64 + i;
                if p >= limit as u64 {
                    break;
                }
                let present = mem.read_u64(de.table().wrapping_add(64 * i)).is_ok_and(|q| q & 1 != 0);
                if present {
                    out.push(Pasid::new_truncate(p));
                }
            }
        }
        out
    }
}
