//! Cache audit for invariant checkers: every TLB and ATC entry is re-walked
//! through the current tables, and entries that map elsewhere or allow
//! more than the tables now do are reported as stale. Software owes the
//! SMMU the invalidations that keep these caches coherent (TLBI after a
//! table change, SMMUv3 §4.4; ATC_INV for endpoints, §4.5.1); an entry the
//! audit finds means an invalidation was missed.
//!
//! TLB entries are tagged by ASID and VMID, not by stream, so the caller
//! names the (StreamID, SubstreamID) contexts to audit them under: an
//! entry is checked under every named context whose current STE and CD
//! carry its tag, and is not checked if none does. ATC entries are keyed by
//! stream and checked directly.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use iommu_format::smmuv3::ste::SteConfig;
use iommu_types::{Access, InterruptSink, NullInterrupts, PhysMem, ReadOnly, StreamId, SubstreamId};

use super::ats::NO_SSID as ATC_NO_SSID;
use super::translate::{ResolvedCtx, TlbKey, TlbKind, NO_ASID};
use super::{Smmu, SmmuConfig};

/// The cache an audited entry sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditedCache {
    /// The SMMU's TLB.
    Tlb,
    /// An endpoint's ATC.
    Atc,
}

/// A cached translation the current tables disagree with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StaleTranslation {
    /// Where it is cached.
    pub cache: AuditedCache,
    /// The stream it serves (for the TLB: the named context it was checked under).
    pub sid: StreamId,
    /// The SubstreamID it serves.
    pub ssid: Option<SubstreamId>,
    /// Input address (page base).
    pub addr: u64,
    /// Output address the cache gives.
    pub cached: u64,
    /// Whether the cached entry allows writes.
    pub write: bool,
    /// What the tables give now: an output address, or `None` (fault).
    pub now: Option<u64>,
}

/// What [`Smmu::audit_caches`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheAudit {
    /// Entries checked (a TLB entry once per context it was checked under).
    pub checked: usize,
    /// Stale entries.
    pub stale: Vec<StaleTranslation>,
}

impl<M: PhysMem, I: InterruptSink> Smmu<M, I> {
    /// Re-walks every ATC entry, and every TLB entry reachable from one of
    /// `contexts`, through the tables as they are now. Changes nothing: not
    /// the caches, not memory, not the queues. Costs a walk per entry (not
    /// for the hot path).
    pub fn audit_caches(&self, contexts: &[(StreamId, Option<SubstreamId>)]) -> CacheAudit {
        let mut out = CacheAudit::default();
        let ctl = self.ctl();
        if !ctl.smmuen {
            return out;
        }
        // A fresh SMMU over a read-only view of the same memory with the
        // same stream table: its walks see exactly the current tables and
        // none of this SMMU's cached STEs, CDs or translations.
        let cfg = SmmuConfig { tlb: (1, 1), cfg_cache: (1, 1), ..self.config };
        let shadow = Smmu::new(cfg, ReadOnly(&self.mem), NullInterrupts);
        shadow.ctl_word.store(self.ctl_word.load(Ordering::Acquire), Ordering::Release);
        shadow.strtab_base.store(self.strtab_base.load(Ordering::Acquire), Ordering::Release);
        let sctl = shadow.ctl();
        // Each check walks: two current contexts may share an ASID/VMID
        // tag, and a shadow TLB hit must not stand in for the other's walk.
        let now = |c: &ResolvedCtx, addr: u64, access: Access| {
            shadow.tlb.invalidate_all();
            shadow.translate_ctx(c, addr, access).ok().map(|t| t.pa)
        };

        self.atc.for_each_valid(|k, e, _| {
            out.checked += 1;
            let sid = StreamId(k.sid);
            let ssid = (k.ssid != ATC_NO_SSID).then(|| SubstreamId::try_new(k.ssid).unwrap_or_default());
            let addr = k.page << 12;
            let Ok(c) = shadow.resolve(sid, ssid, &sctl) else {
                out.stale.push(stale(AuditedCache::Atc, sid, ssid, addr, e.pa, e.write, None));
                return;
            };
            for (allowed, access) in [(e.read, Access::READ), (e.write, Access::WRITE)] {
                if !allowed {
                    continue;
                }
                let n = now(&c, addr, access);
                if n != Some(e.pa) {
                    out.stale.push(stale(AuditedCache::Atc, sid, ssid, addr, e.pa, e.write, n));
                    break;
                }
            }
        });

        let mut reported: HashSet<TlbKey> = HashSet::new();
        for &(sid, ssid) in contexts {
            let Ok(c) = shadow.resolve(sid, ssid, &sctl) else { continue };
            let s = &c.stream;
            let (kind, tags) = match (s.config, &c.cd) {
                (SteConfig::S1 | SteConfig::Nested, Some(cd)) => {
                    let kind = if s.s2.is_some() { TlbKind::Nested } else { TlbKind::S1 };
                    (kind, [cd.asid as u32, NO_ASID])
                }
                (SteConfig::S2, _) | (SteConfig::S1 | SteConfig::Nested, None) if s.s2.is_some() => {
                    (TlbKind::S2, [NO_ASID, NO_ASID])
                }
                _ => continue,
            };
            self.tlb.for_each_valid(|k, e, _| {
                if k.kind != kind || k.vmid != s.vmid || !tags.contains(&k.asid) || reported.contains(k) {
                    return;
                }
                out.checked += 1;
                let mut addr = k.page << k.shift;
                if kind != TlbKind::S2 && addr & (1 << 55) != 0 {
                    addr |= 0xFF00_0000_0000_0000;
                }
                for access in [Access::READ, Access::WRITE] {
                    if !(e.s1.allows(access) && e.s2.allows(access)) {
                        continue;
                    }
                    let n = now(&c, addr, access);
                    if n != Some(e.out) {
                        let w = e.s1.allows(Access::WRITE) && e.s2.allows(Access::WRITE);
                        out.stale.push(stale(AuditedCache::Tlb, sid, ssid, addr, e.out, w, n));
                        reported.insert(*k);
                        break;
                    }
                }
            });
        }
        out
    }
}

fn stale(
    cache: AuditedCache,
    sid: StreamId,
    ssid: Option<SubstreamId>,
    addr: u64,
    cached: u64,
    write: bool,
    now: Option<u64>,
) -> StaleTranslation {
    StaleTranslation { cache, sid, ssid, addr, cached, write, now }
}
