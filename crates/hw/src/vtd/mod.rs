//! The Intel VT-d unit model (VT-d chapters 3–7 and 11).
//!
//! ```text
//!  MMIO (RegisterBus) ──▶ regfile ──▶ GCMD/GSTS handshakes, CCMD/IOTLB,
//!                          │          inv_queue (QI), fault log, PRQ regs
//!  device DMA ──▶ translate: context cache → PASID cache → IOTLB
//!                          │   miss: walk (iommu-walk) → fill
//!                          └── fault: fault_log (FRCD, FSTS, fault event)
//!  PRI device ──▶ page_req: PRQ in memory, PPR/PRO, page-request event
//!  ATS device ──▶ ats: translation completions, device TLB
//! ```
//!
//! Locking: the translation configuration that `translate` needs (root
//! table address, mode, TE) is one atomic word; caches lock one set at a
//! time; the register file (and with it the fault log and the queues) sits
//! behind one mutex that only MMIO accesses, fault recording and page
//! requests take.

mod ats;
mod audit;
pub mod config;
mod endpoint;
mod fault_log;
mod inv_queue;
mod page_req;
mod regfile;
mod translate;

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use iommu_cache::{mix, CacheKey, CacheStats, Iotlb, TaggedCache};
use iommu_format::vtd::inv_desc::{InvDescriptor, ResponseCode};
use iommu_format::vtd::regs::Caps;
use iommu_types::{InterruptSink, Pasid, PhysMem, SourceId};
use iommu_walk::vtd::context::Context;
use iommu_walk::vtd::pasid::PasidLookup;

pub use ats::AtsCompletion;
pub use audit::{AuditedCache, CacheAudit, Current, StaleEntry};
pub use config::{ImplChoices, IqeRestart, VtdConfig};
pub use endpoint::{Endpoint, EndpointDma};
pub use page_req::PrqOutcome;
pub use regfile::REGISTER_WINDOW;
pub use translate::{DmaError, Request, Translated, VtdFault};

/// Context-cache key: the source-id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SidKey(u16);

impl CacheKey for SidKey {
    fn set_hash(&self) -> u64 {
        mix(self.0 as u64)
    }
}

/// PASID-cache key: (source-id, PASID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PasidKey {
    sid: u16,
    pasid: u32,
}

impl CacheKey for PasidKey {
    fn set_hash(&self) -> u64 {
        mix((self.sid as u64) << 20 | self.pasid as u64)
    }
}

/// A page group response the unit delivered to a device (VT-d §7.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageGroupResponse {
    /// The device it is addressed to.
    pub rid: SourceId,
    /// PASID of the group.
    pub pasid: Option<Pasid>,
    /// Page request group index.
    pub prgi: u16,
    /// Response code.
    pub code: ResponseCode,
    /// Whether the unit generated it itself (PRQ overflow or a refused
    /// request) rather than software through the invalidation queue.
    pub by_hardware: bool,
}

/// One interrupt source's event registers: control (IM, IP), data, address
/// and upper address (VT-d §11.4.9.2–5 fault events, §11.4.10.5–8
/// invalidation completion events, §11.4.11.5–8 page request events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventRegs {
    ctl: u32,
    data: u32,
    addr: u32,
    uaddr: u32,
}

impl EventRegs {
    /// Reset state: masked, nothing pending.
    const RESET: Self = Self { ctl: iommu_format::vtd::regs::ectl::IM, data: 0, addr: 0, uaddr: 0 };

    fn msi(&self) -> iommu_types::Msi {
        iommu_types::Msi { addr: (self.uaddr as u64) << 32 | self.addr as u64, data: self.data }
    }

    /// Signals an event: the MSI when unmasked, else the pending bit (IP).
    fn signal(&mut self, irq: &impl InterruptSink) {
        use iommu_format::vtd::regs::ectl;
        if self.ctl & ectl::IM != 0 {
            self.ctl |= ectl::IP;
        } else {
            irq.raise(self.msi());
        }
    }

    /// Reads register `index` of the block (0 control, 1 data, 2 address,
    /// 3 upper address).
    fn read(&self, index: u64) -> u32 {
        match index {
            0 => self.ctl,
            1 => self.data,
            2 => self.addr,
            _ => self.uaddr,
        }
    }

    /// Writes register `index` of the block; the address is dword aligned.
    fn write(&mut self, index: u64, v: u32, irq: &impl InterruptSink) {
        match index {
            0 => self.write_ctl(v, irq),
            1 => self.data = v,
            2 => self.addr = v & !3,
            _ => self.uaddr = v,
        }
    }

    /// A write of the control register: IM is writable; unmasking with an
    /// event pending delivers it and clears IP.
    fn write_ctl(&mut self, v: u32, irq: &impl InterruptSink) {
        use iommu_format::vtd::regs::ectl;
        self.ctl = (self.ctl & ectl::IP) | (v & ectl::IM);
        if self.ctl & (ectl::IM | ectl::IP) == ectl::IP {
            self.ctl &= !ectl::IP;
            irq.raise(self.msi());
        }
    }
}

/// Which event-register block (and register in it) an offset addresses.
fn event_block(off: u64) -> Option<(EventBlock, u64)> {
    use iommu_format::vtd::regs::offset as o;
    let (block, base) = match off {
        o::FECTL..=o::FEUADDR => (EventBlock::Fault, o::FECTL),
        o::IECTL..=o::IEUADDR => (EventBlock::Invalidation, o::IECTL),
        o::PECTL..=o::PEUADDR => (EventBlock::PageRequest, o::PECTL),
        _ => return None,
    };
    Some((block, (off - base) / 4))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventBlock {
    Fault,
    Invalidation,
    PageRequest,
}

/// Register state behind the register-file lock.
#[derive(Debug)]
struct Regs {
    gsts: u32,
    rtaddr: u64,
    ccmd: u64,
    iva: u64,
    iotlb: u64,
    /// The write-1-to-clear bits of FSTS (PPF and FRI are derived).
    fsts: u32,
    fault_event: EventRegs,
    iqh: u64,
    iqt: u64,
    iqa: u64,
    ics: u32,
    inv_event: EventRegs,
    iqercd: u64,
    pqh: u64,
    pqt: u64,
    pqa: u64,
    prs: u32,
    prq_event: EventRegs,
    /// Fault recording registers (CAP.NFR + 1 of them).
    frcd: Box<[[u64; 2]]>,
    /// Index of the next fault recording register hardware writes.
    fr_next: usize,
}

impl Regs {
    fn events(&self, b: EventBlock) -> &EventRegs {
        match b {
            EventBlock::Fault => &self.fault_event,
            EventBlock::Invalidation => &self.inv_event,
            EventBlock::PageRequest => &self.prq_event,
        }
    }

    fn events_mut(&mut self, b: EventBlock) -> &mut EventRegs {
        match b {
            EventBlock::Fault => &mut self.fault_event,
            EventBlock::Invalidation => &mut self.inv_event,
            EventBlock::PageRequest => &mut self.prq_event,
        }
    }
}

/// Counters a report can print.
#[derive(Debug, Default)]
pub struct UnitStats {
    /// Faults recorded in a fault recording register.
    pub faults_recorded: AtomicU64,
    /// Faults dropped: FPD, or the fault log overflowed.
    pub faults_suppressed: AtomicU64,
    /// Invalidation descriptors executed.
    pub descriptors: AtomicU64,
    /// Page requests queued.
    pub page_requests: AtomicU64,
    /// Page-group responses dropped because devices did not collect them.
    pub responses_dropped: AtomicU64,
}

/// One VT-d remapping unit over memory `M`, raising interrupts on `I`.
#[derive(Debug)]
pub struct VtdUnit<M, I> {
    mem: M,
    irq: I,
    cfg: VtdConfig,
    caps: Caps,
    /// `RTA | TTM << 10 | TE`: what translation needs, readable without a lock.
    active: AtomicU64,
    regs: Mutex<Regs>,
    ctx_cache: TaggedCache<SidKey, Context>,
    pasid_cache: TaggedCache<PasidKey, PasidLookup>,
    iotlb: Iotlb,
    devtlb: Iotlb,
    responses: Mutex<VecDeque<PageGroupResponse>>,
    /// ATS endpoints that do not answer invalidation requests (surprise
    /// removal, a hung device): their device-TLB invalidations time out.
    unresponsive: Mutex<Vec<SourceId>>,
    /// Executed invalidation descriptors, for the VMM of a vIOMMU.
    notices: Mutex<Notices>,
    /// Counters.
    pub stats: UnitStats,
}

/// Most descriptors recorded between two [`VtdUnit::take_invalidations`]:
/// the largest invalidation queue holds 2^15 descriptors, and a VMM takes
/// the record after every register write, so this bound is reached only
/// when nobody takes them.
pub const MAX_NOTICES: usize = 1 << 16;

/// The invalidation descriptors a unit executed, in order (a VMM's view of
/// a guest's invalidations, VT-d §6.5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notices {
    /// The descriptors.
    pub descriptors: Vec<InvDescriptor>,
    /// More than [`MAX_NOTICES`] were executed since the last take and the
    /// newest were not recorded: the reader must resynchronise everything.
    pub lost: bool,
}

impl<M: PhysMem, I: InterruptSink> VtdUnit<M, I> {
    /// A unit in its reset state: translation and queued invalidation
    /// disabled, every register at its reset value, caches empty.
    pub fn new(cfg: VtdConfig, mem: M, irq: I) -> Self {
        let caps = Caps::new(cfg.cap, cfg.ecap);
        let regs = Regs {
            gsts: 0,
            rtaddr: 0,
            ccmd: 0,
            iva: 0,
            iotlb: 0,
            fsts: 0,
            fault_event: EventRegs::RESET,
            iqh: 0,
            iqt: 0,
            iqa: 0,
            ics: 0,
            inv_event: EventRegs::RESET,
            iqercd: 0,
            pqh: 0,
            pqt: 0,
            pqa: 0,
            prs: 0,
            prq_event: EventRegs::RESET,
            frcd: vec![[0u64; 2]; caps.fault_record_count()].into_boxed_slice(),
            fr_next: 0,
        };
        Self {
            ctx_cache: TaggedCache::new(cfg.context_cache.0, cfg.context_cache.1, cfg.policy),
            pasid_cache: TaggedCache::new(cfg.pasid_cache.0, cfg.pasid_cache.1, cfg.policy),
            iotlb: Iotlb::new(cfg.iotlb.0, cfg.iotlb.1, cfg.policy),
            devtlb: Iotlb::new(cfg.device_tlb.0, cfg.device_tlb.1, cfg.policy),
            responses: Mutex::new(VecDeque::with_capacity(cfg.max_pending_responses)),
            unresponsive: Mutex::new(Vec::new()),
            notices: Mutex::new(Notices::default()),
            mem,
            irq,
            caps,
            cfg,
            active: AtomicU64::new(0),
            regs: Mutex::new(regs),
            stats: UnitStats::default(),
        }
    }

    /// The memory the unit reads tables from and DMA goes to.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// The interrupt sink.
    pub fn irq(&self) -> &I {
        &self.irq
    }

    /// The decoded capabilities.
    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// The configuration.
    pub fn config(&self) -> &VtdConfig {
        &self.cfg
    }

    /// The IOTLB (statistics, tests).
    pub fn iotlb(&self) -> &Iotlb {
        &self.iotlb
    }

    /// Capacity and counters of every cache: IOTLB, context cache, PASID
    /// cache and the endpoints' device TLBs (for reports).
    pub fn cache_stats(&self) -> [(&'static str, usize, CacheStats); 4] {
        [
            ("IOTLB", self.iotlb.cache().capacity(), self.iotlb.cache().stats()),
            ("context cache", self.ctx_cache.capacity(), self.ctx_cache.stats()),
            ("PASID cache", self.pasid_cache.capacity(), self.pasid_cache.stats()),
            ("device TLB", self.devtlb.cache().capacity(), self.devtlb.cache().stats()),
        ]
    }

    fn regs(&self) -> std::sync::MutexGuard<'_, Regs> {
        // Register state is updated field by field under the lock and every
        // path leaves it consistent, so a poisoned lock is still usable.
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the page-group responses addressed to `rid` (a device model
    /// collects them; VT-d §7.7).
    pub fn take_responses(&self, rid: SourceId) -> Vec<PageGroupResponse> {
        let mut q = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        let (mine, rest): (Vec<_>, Vec<_>) = q.drain(..).partition(|r| r.rid == rid);
        q.extend(rest);
        mine
    }

    /// Marks an ATS endpoint as answering (or not answering) device-TLB
    /// invalidation requests. Invalidations sent to a device that does not
    /// answer time out (FSTS.ITE, VT-d §6.5.2.10).
    pub fn set_ats_responsive(&self, sid: SourceId, responsive: bool) {
        let mut u = self.unresponsive.lock().unwrap_or_else(|e| e.into_inner());
        u.retain(|s| *s != sid);
        if !responsive {
            u.push(sid);
        }
    }

    /// Takes the invalidation descriptors executed since the last call
    /// (recorded only with [`VtdConfig::notify_invalidations`]).
    pub fn take_invalidations(&self) -> Notices {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn notice(&self, d: &InvDescriptor) {
        if !self.cfg.notify_invalidations {
            return;
        }
        let mut n = self.notices.lock().unwrap_or_else(|e| e.into_inner());
        if n.descriptors.len() >= MAX_NOTICES {
            n.lost = true;
        } else {
            n.descriptors.push(*d);
        }
    }

    fn ats_responsive(&self, sid: SourceId) -> bool {
        !self.unresponsive.lock().unwrap_or_else(|e| e.into_inner()).contains(&sid)
    }

    fn push_response(&self, r: PageGroupResponse) {
        let mut q = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.cfg.max_pending_responses {
            q.pop_front();
            self.stats.responses_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        q.push_back(r);
    }
}

#[cfg(test)]
mod tests;
