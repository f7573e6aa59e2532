//! The Arm SMMUv3 model (SMMUv3 chapters 3–8).
//!
//! ```text
//!  MMIO (RegisterBus) ──▶ regfile ──▶ CR0/CR0ACK, GBPA, GERROR/GERRORN,
//!                          │          STRTAB_BASE(_CFG), queue registers
//!                          ├─▶ cmdq: commands → config caches, TLB, ATC, PRI
//!                          │         responses, stall resumption
//!  device transaction ──▶ translate: context cache (STE + CD) → TLB
//!                          │   miss: lookups and walks (iommu-walk) → fill
//!                          └── fault: event_log (event queue in memory), stall
//!  ATS endpoint ──▶ ats: translation requests, ATC   PRI ──▶ page_req: PRI queue
//! ```
//!
//! Locking: what `translate` needs from the registers (SMMUEN, GBPA.ABORT,
//! CR2.RECINVSID, the stream table) sits in atomics; caches lock one set
//! at a time; the register file, with the queues, sits behind one mutex
//! that only MMIO accesses and event recording take.

mod ats;
mod audit;
mod cmdq;
pub mod config;
mod endpoint;
mod event_log;
mod page_req;
mod regfile;
mod stall;
mod translate;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use iommu_cache::{CacheStats, Policy, TaggedCache};
use iommu_types::{Access, InterruptSink, PhysMem, StreamId, SubstreamId};
use iommu_walk::smmuv3::{CdCfg, Features, StreamCfg};

pub use ats::AtsCompletion;
pub use audit::{AuditedCache, CacheAudit, StaleTranslation};
pub use config::{QemuStages, SmmuConfig};
pub use endpoint::{AtsEndpoint, EndpointAccess};
pub use page_req::{PrgResponse, PriOutcome, MAX_PENDING_RESPONSES};
pub use regfile::REGISTER_WINDOW;
pub use stall::MAX_STALLED;
pub use translate::{Request, Terminated, Translated};

use ats::{AtcEntry, AtcKey};
use regfile::Regs;
use translate::{CdKey, CtxKey, ResolvedCtx, SidKey, TlbEntry, TlbKey};

/// The translation-relevant register state, published to `translate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ctl {
    smmuen: bool,
    gbpa_abort: bool,
    recinvsid: bool,
    strtab_base: u64,
    strtab_cfg: u64,
}

/// An SMMUv3 over memory `M`, signalling interrupts through `I`.
#[derive(Debug)]
pub struct Smmu<M, I> {
    config: SmmuConfig,
    features: Features,
    mem: M,
    irq: I,
    regs: Mutex<Regs>,
    /// Bit 0 SMMUEN, bit 1 GBPA.ABORT, bit 2 RECINVSID, bits 39:16 STRTAB_BASE_CFG.
    ctl_word: AtomicU64,
    strtab_base: AtomicU64,
    ste_cache: TaggedCache<SidKey, StreamCfg>,
    cd_cache: TaggedCache<CdKey, CdCfg>,
    /// (StreamID, SubstreamID) → STE and CD, derived from the two above.
    ctx_cache: TaggedCache<CtxKey, ResolvedCtx>,
    tlb: TaggedCache<TlbKey, TlbEntry>,
    /// Some global (nG = 0) stage-1 entry may be in the TLB; until one is
    /// filled, lookups skip the global probe. Cleared when the TLB is.
    tlb_has_global: AtomicBool,
    /// The endpoints' ATCs.
    atc: TaggedCache<AtcKey, AtcEntry>,
    /// Event records written to the event queue so far.
    events_recorded: AtomicU64,
    /// What travels back to devices: PRG responses, stalled transactions
    /// and their resumptions.
    device_side: Mutex<DeviceSide>,
}

/// Device-facing state, bounded: responses by [`MAX_PENDING_RESPONSES`],
/// stalls by [`MAX_STALLED`].
#[derive(Debug, Default)]
struct DeviceSide {
    responses: VecDeque<PrgResponse>,
    /// Stalled transactions awaiting CMD_RESUME: (StreamID, STAG).
    stalled: Vec<(u32, u16)>,
    /// Resumed ones not yet picked up by their device: (StreamID, STAG, retry).
    resumed: VecDeque<(u32, u16, bool)>,
    next_stag: u16,
}

/// Why a DMA did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DmaError {
    /// The SMMU terminated a transaction (after `done` bytes had completed).
    #[error("transaction at {addr:#x} terminated after {done} bytes")]
    Terminated {
        /// Bytes completed before the terminated transaction.
        done: usize,
        /// Input address of the terminated transaction.
        addr: u64,
        /// What the SMMU reported.
        why: Terminated,
    },
    /// The translated address is not backed by memory.
    #[error("no memory at output address {0:#x}")]
    Unbacked(u64),
}

impl<M: PhysMem, I: InterruptSink> Smmu<M, I> {
    /// An SMMU in its reset state (SMMUEN = 0, GBPA = bypass).
    pub fn new(config: SmmuConfig, mem: M, irq: I) -> Self {
        let (ts, tw) = config.tlb;
        let (cs, cw) = config.cfg_cache;
        Self {
            config,
            features: config.features(),
            mem,
            irq,
            regs: Mutex::new(Regs::reset()),
            ctl_word: AtomicU64::new(0),
            strtab_base: AtomicU64::new(0),
            ste_cache: TaggedCache::new(cs, cw, Policy::Lru),
            cd_cache: TaggedCache::new(cs, cw, Policy::Lru),
            ctx_cache: TaggedCache::new(cs, cw, Policy::Lru),
            tlb_has_global: AtomicBool::new(false),
            tlb: TaggedCache::new(ts, tw, Policy::Lru),
            atc: TaggedCache::new(ts, tw, Policy::Lru),
            events_recorded: AtomicU64::new(0),
            device_side: Mutex::new(DeviceSide::default()),
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &SmmuConfig {
        &self.config
    }

    /// The memory the SMMU walks and DMA reaches.
    pub const fn mem(&self) -> &M {
        &self.mem
    }

    /// TLB statistics.
    pub fn tlb_stats(&self) -> CacheStats {
        self.tlb.stats()
    }

    /// Every cache's name, capacity and statistics: the TLB first, the
    /// endpoints' ATC last.
    pub fn cache_stats(&self) -> [(&'static str, usize, CacheStats); 5] {
        [
            ("TLB", self.tlb.capacity(), self.tlb.stats()),
            ("STE cache", self.ste_cache.capacity(), self.ste_cache.stats()),
            ("CD cache", self.cd_cache.capacity(), self.cd_cache.stats()),
            ("context cache", self.ctx_cache.capacity(), self.ctx_cache.stats()),
            ("ATC", self.atc.capacity(), self.atc.stats()),
        ]
    }

    /// Event records written to the event queue since reset.
    pub fn events_recorded(&self) -> u64 {
        self.events_recorded.load(Ordering::Relaxed)
    }

    fn ctl(&self) -> Ctl {
        let w = self.ctl_word.load(Ordering::Acquire);
        Ctl {
            smmuen: w & 1 != 0,
            gbpa_abort: w & 2 != 0,
            recinvsid: w & 4 != 0,
            strtab_cfg: (w >> 16) & 0xFF_FFFF,
            strtab_base: self.strtab_base.load(Ordering::Acquire),
        }
    }

    fn regs(&self) -> std::sync::MutexGuard<'_, Regs> {
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn device_side(&self) -> std::sync::MutexGuard<'_, DeviceSide> {
        self.device_side.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `data.len()` bytes of DMA write from a device, one transaction
    /// per 4 KiB page. Pages before a terminated one have been written.
    ///
    /// # Errors
    /// [`DmaError`] at the first page that does not complete.
    pub fn dma_write(&self, sid: StreamId, ssid: Option<SubstreamId>, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        self.dma(sid, ssid, addr, data.len(), Access::WRITE, |pa, range| {
            self.mem.write(iommu_types::Hpa::new(pa), &data[range]).map_err(|_| DmaError::Unbacked(pa))
        })
    }

    /// Runs a DMA read of `buf.len()` bytes, one transaction per 4 KiB page.
    /// Pages before a terminated one have been read into `buf`; the rest of
    /// `buf` is untouched.
    ///
    /// # Errors
    /// [`DmaError`] at the first page that does not complete.
    pub fn dma_read(
        &self,
        sid: StreamId,
        ssid: Option<SubstreamId>,
        addr: u64,
        buf: &mut [u8],
    ) -> Result<(), DmaError> {
        let len = buf.len();
        self.dma(sid, ssid, addr, len, Access::READ, |pa, range| {
            self.mem.read(iommu_types::Hpa::new(pa), &mut buf[range]).map_err(|_| DmaError::Unbacked(pa))
        })
    }

    fn dma(
        &self,
        sid: StreamId,
        ssid: Option<SubstreamId>,
        addr: u64,
        len: usize,
        access: Access,
        mut f: impl FnMut(u64, core::ops::Range<usize>) -> Result<(), DmaError>,
    ) -> Result<(), DmaError> {
        let mut done = 0usize;
        while done < len {
            let a = addr.wrapping_add(done as u64);
            let n = ((4096 - (a & 0xFFF)) as usize).min(len - done);
            let req = Request { sid, ssid, addr: a, access };
            let t = self.translate(&req).map_err(|why| DmaError::Terminated { done, addr: a, why })?;
            f(t.pa, done..done + n)?;
            done += n;
        }
        Ok(())
    }
}
