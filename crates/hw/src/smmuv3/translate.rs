//! The translation path (SMMUv3 §3.3 configuration lookup, §3.4
//! translation, §3.5 fault recording): configuration caches → TLB → on a
//! miss the lookups and walks of `iommu-walk` → fill; faults become event
//! records.
//!
//! Recording rules (§3.12, §5.2 S2R, §5.4 R): stage-1 translation-class
//! faults (F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION) are recorded
//! only when CD.R is set, stage-2 ones only when STE.S2R is set;
//! C_BAD_STREAMID only when CR2.RECINVSID is set; STE.Config = abort and
//! GBPA.ABORT terminate silently; everything else is always recorded. A
//! terminated transaction writes nothing and reads nothing.

use std::sync::atomic::Ordering;

use iommu_cache::{mix, CacheKey};
use iommu_format::smmuv3::desc::Granule;
use iommu_format::smmuv3::event::{Event, FaultClass};
use iommu_format::smmuv3::ste::SteConfig;
use iommu_types::{Access, InterruptSink, PhysMem, StreamId, SubstreamId};
use iommu_walk::smmuv3::cd::{self, CdFault, CdLookup};
use iommu_walk::smmuv3::config::{decode_cd, decode_ste, S2Cfg};
use iommu_walk::smmuv3::page::{s1_walk, s2_walk, select_half};
use iommu_walk::smmuv3::reason::{config_fault_event, trans_fault_event, Txn};
use iommu_walk::smmuv3::strtab::{fetch_ste, ste_address, StrtabCfg};
use iommu_walk::smmuv3::{CdCfg, ConfigFault, Perms, StreamCfg, TransFault, TransFaultKind};

use super::Smmu;

/// One transaction presented to the SMMU (never crossing a 4 KiB page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    /// StreamID.
    pub sid: StreamId,
    /// SubstreamID (PCIe PASID), if the transaction carries one.
    pub ssid: Option<SubstreamId>,
    /// Input address.
    pub addr: u64,
    /// What it does.
    pub access: Access,
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Translated {
    /// Output physical address.
    pub pa: u64,
    /// Served from the TLB.
    pub tlb_hit: bool,
}

/// A terminated (or stalled) transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Terminated {
    /// The event the fault produced, if it is one that produces a record
    /// (recorded or suppressed).
    pub event: Option<Event>,
    /// Whether the event was written to the event queue.
    pub recorded: bool,
    /// The transaction is stalled with this STAG, waiting for CMD_RESUME
    /// or CMD_STALL_TERM (§3.12.2): the device retries it once resumed.
    pub stalled: Option<u16>,
}

/// Which kind of translation a TLB entry caches (SMMUv3 §16.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TlbKind {
    /// Stage 1 only (tagged VMID, ASID unless global).
    S1,
    /// Stage 2 only (tagged VMID, input is an IPA).
    S2,
    /// Combined stage 1 + stage 2 (tagged VMID, ASID unless global).
    Nested,
}

/// ASID tag of a global (nG = 0) or stage-2 entry.
pub(crate) const NO_ASID: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TlbKey {
    pub kind: TlbKind,
    pub vmid: u16,
    pub asid: u32,
    /// Input address bits 55:shift (stage 1) or 63:shift (stage 2).
    pub page: u64,
    pub shift: u8,
}

impl CacheKey for TlbKey {
    fn set_hash(&self) -> u64 {
        mix(self.page ^ (self.vmid as u64) << 40 ^ (self.asid as u64) << 20 ^ (self.shift as u64) << 58)
    }
}

/// A cached translation with each stage's permissions, so that a hit is
/// checked exactly as a walk would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TlbEntry {
    /// Output PA of the entry's base.
    pub out: u64,
    /// IPA of the entry's base (stage-2 and nested entries).
    pub ipa: u64,
    /// Stage-1 permissions (all for stage-2 entries).
    pub s1: Perms,
    /// Stage-2 permissions (all for stage-1 entries).
    pub s2: Perms,
    /// What a stage-1 permission fault found on a hit does (CD.R, CD.S).
    pub s1_fault: Disposition,
    /// What a stage-2 permission fault found on a hit does (STE.S2R, S2S).
    pub s2_fault: Disposition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SidKey(pub u32);

impl CacheKey for SidKey {
    fn set_hash(&self) -> u64 {
        mix(self.0 as u64)
    }
}

/// Key of the resolved-context cache: a StreamID and the transaction's
/// SubstreamID ([`NO_SSID`] for an untagged transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CtxKey {
    pub sid: u32,
    pub ssid: u32,
}

/// SSID tag of an untagged transaction in a [`CtxKey`].
pub(crate) const NO_SSID: u32 = u32::MAX;

impl CacheKey for CtxKey {
    fn set_hash(&self) -> u64 {
        mix((self.sid as u64) << 32 | self.ssid as u64)
    }
}

/// What a transaction's (StreamID, SubstreamID) resolves to: its STE and,
/// under stage 1, the CD it selects. A derived view of the STE and CD
/// caches (SMMUv3 §16.2 lets an implementation cache configuration in any
/// form); every CFGI that drops an STE or a CD also drops the contexts
/// built from it, so one lookup stands for two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ResolvedCtx {
    pub stream: StreamCfg,
    pub cd: Option<CdCfg>,
    /// Index of `cd` in the CD table (what CFGI_CD names).
    pub cd_index: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CdKey {
    pub sid: u32,
    pub ssid: u32,
}

impl CacheKey for CdKey {
    fn set_hash(&self) -> u64 {
        // All CDs of a stream share a set hash component so CFGI_CD_ALL
        // can be served by a scan; the SSID spreads them over sets.
        mix((self.sid as u64) << 20 | self.ssid as u64)
    }
}

/// Input bits kept in a stage-1 TLB tag: VA[55:0] (the top byte is
/// either ignored or checked equal to VA[55] before any lookup).
const VA_TAG_MASK: u64 = (1 << 56) - 1;

/// Leaf sizes a granule can produce (pages, then the blocks it allows).
fn leaf_shifts(g: Granule, out: &mut [u8; 6], n: &mut usize) {
    for level in [3u8, 2, 1] {
        if level == 3 || g.block_allowed(level) {
            let s = g.level_shift(level) as u8;
            if !out[..*n].contains(&s) {
                out[*n] = s;
                *n += 1;
            }
        }
    }
}

/// Why `translate_stream` failed, with what the stream says about
/// recording and stalling a translation fault.
pub(super) enum Fail {
    Config(ConfigFault),
    Trans(TransFault, Disposition),
}

/// Whether a translation fault is recorded, and whether it stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Disposition {
    record: bool,
    stall: bool,
}

impl Disposition {
    const RECORD: Self = Self { record: true, stall: false };

    /// Stage-1 fault under `cd` (CD.R, CD.S unless STE.S1STALLD); walk
    /// aborts are always recorded and never stall.
    fn s1(cd: &CdCfg, s: &StreamCfg, f: &TransFault) -> Self {
        let eabt = f.kind == TransFaultKind::WalkEabt;
        Self { record: eabt || cd.record, stall: !eabt && cd.stall && !s.s1_stall_disabled }
    }

    /// Stage-2 fault under `s2` (STE.S2R, STE.S2S).
    fn s2(s2: &S2Cfg, f: &TransFault) -> Self {
        let eabt = f.kind == TransFaultKind::WalkEabt;
        Self { record: eabt || s2.record, stall: !eabt && s2.stall }
    }

    /// For a permission fault on a TLB hit under `s2`.
    fn s2_permission(s2: &S2Cfg) -> Self {
        Self { record: s2.record, stall: s2.stall }
    }

    fn of(s: &StreamCfg, cd: Option<&CdCfg>, f: &TransFault) -> Self {
        match (f.s2, s.s2.as_ref(), cd) {
            (true, Some(s2), _) => Self::s2(s2, f),
            (false, _, Some(cd)) => Self::s1(cd, s, f),
            _ => Self::RECORD,
        }
    }
}

impl<M: PhysMem, I: InterruptSink> Smmu<M, I> {
    /// Translates one transaction, recording an event on a fault.
    ///
    /// # Errors
    /// [`Terminated`] when the transaction is aborted.
    pub fn translate(&self, req: &Request) -> Result<Translated, Terminated> {
        let ctl = self.ctl();
        if !ctl.smmuen {
            // SMMU disabled: GBPA decides (§6.3.14).
            return if ctl.gbpa_abort {
                Err(Terminated { event: None, recorded: false, stalled: None })
            } else {
                Ok(Translated { pa: req.addr, tlb_hit: false })
            };
        }
        let mut access = req.access;
        let r = self.resolve(req.sid, req.ssid, &ctl).and_then(|c| {
            if let Some(p) = c.stream.priv_override {
                access.privileged = p;
            }
            if let Some(x) = c.stream.inst_override {
                access.exec = x;
            }
            self.translate_ctx(&c, req.addr, access)
        });
        r.map_err(|f| self.report(f, req, access, &ctl))
    }

    /// Records (or stalls) the fault of a transaction, as its stream says.
    pub(super) fn report(&self, f: Fail, req: &Request, access: Access, ctl: &super::Ctl) -> Terminated {
        let txn = Txn {
            sid: req.sid,
            ssid: req.ssid,
            addr: req.addr,
            read: !access.write,
            privileged: access.privileged,
            instruction: access.exec,
        };
        match f {
            Fail::Config(f) => {
                let ev = config_fault_event(f, &txn);
                let record = f != ConfigFault::BadStreamId || ctl.recinvsid;
                let recorded = record && ev.is_some_and(|e| self.record_event(&e));
                Terminated { event: ev, recorded, stalled: None }
            }
            Fail::Trans(f, d) => {
                let mut e = trans_fault_event(&f, &txn);
                if d.stall && self.features.stall {
                    // A stalled fault is always recorded: software must see it
                    // to resume it. If it cannot be, the transaction ends.
                    if let Some(stag) = self.stall(req.sid) {
                        e.stall = true;
                        e.stag = stag;
                        if self.record_event(&e) {
                            return Terminated { event: Some(e), recorded: true, stalled: Some(stag) };
                        }
                        self.unstall(req.sid, stag);
                        e.stall = false;
                        e.stag = 0;
                    }
                }
                let recorded = d.record && self.record_event(&e);
                Terminated { event: Some(e), recorded, stalled: None }
            }
        }
    }

    /// The stream's configuration, from the STE cache or the stream table.
    pub(super) fn stream(&self, sid: StreamId, ctl: &super::Ctl) -> Result<StreamCfg, Fail> {
        if let Some(s) = self.ste_cache.lookup(&SidKey(sid.0)) {
            return Ok(s);
        }
        let f = self.features;
        let t = StrtabCfg::decode(ctl.strtab_base, ctl.strtab_cfg, f.sid_bits, f.st2l);
        let mut refs = 0;
        let addr = ste_address(&self.mem, &t, sid, &mut refs).map_err(Fail::Config)?;
        let ste = fetch_ste(&self.mem, addr, &mut refs).map_err(Fail::Config)?;
        let s = decode_ste(&ste, &f).map_err(Fail::Config)?;
        self.ste_cache.fill(SidKey(sid.0), 0, None, s);
        Ok(s)
    }

    /// The context of (`sid`, `ssid`): from the resolved-context cache, or
    /// built from the STE and CD caches (or tables) and cached.
    pub(super) fn resolve(
        &self,
        sid: StreamId,
        ssid: Option<SubstreamId>,
        ctl: &super::Ctl,
    ) -> Result<ResolvedCtx, Fail> {
        let key = CtxKey { sid: sid.0, ssid: ssid.map_or(NO_SSID, |s| s.raw()) };
        if let Some(c) = self.ctx_cache.lookup(&key) {
            return Ok(c);
        }
        let stream = self.stream(sid, ctl)?;
        let (cd_index, cd) = match stream.config {
            SteConfig::S1 | SteConfig::Nested => self.context(&stream, sid, ssid)?,
            // A SubstreamID names a stage-1 context; a stream without stage
            // 1 has none to select, so the transaction aborts (§3.9).
            SteConfig::Bypass | SteConfig::S2 if ssid.is_some() => {
                return Err(Fail::Config(ConfigFault::BadSubstreamId));
            }
            _ => (None, None),
        };
        let c = ResolvedCtx { stream, cd, cd_index };
        self.ctx_cache.fill(key, 0, None, c);
        Ok(c)
    }

    /// The CD a transaction uses and its index, from the CD cache or the CD
    /// table.
    fn context(
        &self,
        s: &StreamCfg,
        sid: StreamId,
        ssid: Option<SubstreamId>,
    ) -> Result<(Option<u32>, Option<CdCfg>), Fail> {
        let Some(s1) = s.s1 else { return Ok((None, None)) };
        // The cache is keyed by the CD index the transaction resolves to,
        // found (and checked against S1CDMax/S1DSS) before any lookup.
        let Some(index) = cd::cd_index(&s1, ssid).map_err(Fail::Config)? else {
            return Ok((None, None));
        };
        if let Some(c) = self.cd_cache.lookup(&CdKey { sid: sid.0, ssid: index }) {
            return Ok((Some(index), Some(c)));
        }
        let mut refs = 0;
        match cd::lookup(&self.mem, &s1, s.s2.as_ref(), ssid, &mut refs) {
            Ok(CdLookup::Bypass) => Ok((None, None)),
            Ok(CdLookup::Cd { cd, ssid, .. }) => {
                let c = decode_cd(&cd, &self.features).map_err(Fail::Config)?;
                self.cd_cache.fill(CdKey { sid: sid.0, ssid }, 0, None, c);
                Ok((Some(ssid), Some(c)))
            }
            Err(CdFault::Config(f)) => Err(Fail::Config(f)),
            Err(CdFault::Stage2(f)) => Err(Fail::Trans(f, Disposition::of(s, None, &f))),
        }
    }

    /// Translates `addr` under a resolved context.
    pub(super) fn translate_ctx(&self, c: &ResolvedCtx, addr: u64, access: Access) -> Result<Translated, Fail> {
        let f = self.features;
        let s = &c.stream;
        let s1_addr_size = || Fail::Trans(TransFault::s1(TransFaultKind::AddrSize), Disposition::RECORD);
        match s.config {
            SteConfig::Abort => Err(Fail::Config(ConfigFault::SteAbort)),
            SteConfig::Bypass => {
                // Both stages bypassed: the input must fit the OAS (§3.4.3).
                if addr >> f.oas_bits != 0 {
                    return Err(s1_addr_size());
                }
                Ok(Translated { pa: addr, tlb_hit: false })
            }
            SteConfig::S2 => {
                // Stage 1 bypassed: an input beyond the IAS is a stage-1
                // address size fault (§3.4.3), recorded without a CD.R.
                if addr >> f.ias_bits() != 0 {
                    return Err(s1_addr_size());
                }
                self.stage2_only(s, addr, access)
            }
            SteConfig::S1 | SteConfig::Nested => match &c.cd {
                None => {
                    // S1DSS bypass for an untagged transaction.
                    if addr >> f.ias_bits() != 0 {
                        return Err(s1_addr_size());
                    }
                    if s.s2.is_some() {
                        self.stage2_only(s, addr, access)
                    } else {
                        Ok(Translated { pa: addr, tlb_hit: false })
                    }
                }
                Some(cd) => self.stage1(s, cd, addr, access),
            },
        }
    }

    fn stage2_only(&self, s: &StreamCfg, ipa: u64, access: Access) -> Result<Translated, Fail> {
        let Some(s2) = s.s2.as_ref() else {
            return Ok(Translated { pa: ipa, tlb_hit: false });
        };
        let mut shifts = [0u8; 6];
        let mut n = 0;
        leaf_shifts(s2.tables.granule, &mut shifts, &mut n);
        for &shift in &shifts[..n] {
            let key = TlbKey { kind: TlbKind::S2, vmid: s.vmid, asid: NO_ASID, page: ipa >> shift, shift };
            if let Some(e) = self.tlb.lookup(&key) {
                if !e.s2.allows(access) {
                    let f = TransFault::s2(TransFaultKind::Permission, FaultClass::In, ipa);
                    return Err(Fail::Trans(f, e.s2_fault));
                }
                return Ok(Translated { pa: e.out | (ipa & ((1u64 << shift) - 1)), tlb_hit: true });
            }
        }
        let mut refs = 0;
        let o = s2_walk(&self.mem, s2, ipa, FaultClass::In, &mut refs)
            .map_err(|f| Fail::Trans(f, Disposition::s2(s2, &f)))?;
        let shift = o.shift as u8;
        let key = TlbKey { kind: TlbKind::S2, vmid: s.vmid, asid: NO_ASID, page: ipa >> shift, shift };
        let entry = TlbEntry {
            out: o.pa,
            ipa: ipa & !((1u64 << shift) - 1),
            s1: Perms::ALL,
            s2: o.perms,
            s1_fault: Disposition::RECORD,
            s2_fault: Disposition::s2_permission(s2),
        };
        self.tlb.fill(key, s.vmid, None, entry);
        if !o.perms.allows(access) {
            let f = TransFault::s2(TransFaultKind::Permission, FaultClass::In, ipa);
            return Err(Fail::Trans(f, Disposition::s2(s2, &f)));
        }
        Ok(Translated { pa: o.pa | (ipa & ((1u64 << shift) - 1)), tlb_hit: false })
    }

    fn stage1(&self, s: &StreamCfg, cd: &CdCfg, va: u64, access: Access) -> Result<Translated, Fail> {
        let (half, t) = select_half(cd, va).map_err(|f| Fail::Trans(f, Disposition::s1(cd, s, &f)))?;
        let tag = va & VA_TAG_MASK;
        let kind = if s.s2.is_some() { TlbKind::Nested } else { TlbKind::S1 };
        let mut shifts = [0u8; 6];
        let mut n = 0;
        leaf_shifts(t.granule, &mut shifts, &mut n);
        if let Some(s2) = &s.s2 {
            leaf_shifts(s2.tables.granule, &mut shifts, &mut n);
        }
        // Global entries are probed only once any has been filled.
        let tags = [cd.asid as u32, NO_ASID];
        let tags = if self.tlb_has_global.load(Ordering::Relaxed) { &tags[..] } else { &tags[..1] };
        for &shift in &shifts[..n] {
            for &asid in tags {
                let key = TlbKey { kind, vmid: s.vmid, asid, page: tag >> shift, shift };
                if let Some(e) = self.tlb.lookup(&key) {
                    return check_entry(&e, access, va, shift).map(|pa| Translated { pa, tlb_hit: true });
                }
            }
        }
        let mut refs = 0;
        let o1 = s1_walk(&self.mem, cd, half, &t, va, s.s2.as_ref(), &mut refs)
            .map_err(|f| Fail::Trans(f, Disposition::of(s, Some(cd), &f)))?;
        let ipa = o1.oa | (va & ((1u64 << o1.shift) - 1));
        let (out_base, shift, s2p, s2_fault) = match &s.s2 {
            None => (o1.oa, o1.shift, Perms::ALL, Disposition::RECORD),
            Some(s2) => {
                let o2 = s2_walk(&self.mem, s2, ipa, FaultClass::In, &mut refs)
                    .map_err(|f| Fail::Trans(f, Disposition::s2(s2, &f)))?;
                // A combined entry covers the smaller of the two leaves.
                let shift = o1.shift.min(o2.shift);
                let pa = o2.pa | (ipa & ((1u64 << o2.shift) - 1));
                (pa & !((1u64 << shift) - 1), shift, o2.perms, Disposition::s2_permission(s2))
            }
        };
        let entry = TlbEntry {
            out: out_base,
            ipa: ipa & !((1u64 << shift) - 1),
            s1: o1.perms,
            s2: s2p,
            s1_fault: Disposition { record: cd.record, stall: cd.stall && !s.s1_stall_disabled },
            s2_fault,
        };
        let asid = if o1.global {
            self.tlb_has_global.store(true, Ordering::Relaxed);
            NO_ASID
        } else {
            cd.asid as u32
        };
        let space = (!o1.global).then_some(cd.asid as u32);
        self.tlb.fill(
            TlbKey { kind, vmid: s.vmid, asid, page: tag >> shift, shift: shift as u8 },
            s.vmid,
            space,
            entry,
        );
        check_entry(&entry, access, va, shift as u8).map(|pa| Translated { pa, tlb_hit: false })
    }
}

/// Checks a (cached or just-walked) entry: stage-1 permissions first, then
/// stage 2's, exactly as a walk orders them.
fn check_entry(e: &TlbEntry, access: Access, va: u64, shift: u8) -> Result<u64, Fail> {
    let off = va & ((1u64 << shift) - 1);
    if !e.s1.allows(access) {
        return Err(Fail::Trans(TransFault::s1(TransFaultKind::Permission), e.s1_fault));
    }
    if !e.s2.allows(access) {
        let f = TransFault::s2(TransFaultKind::Permission, FaultClass::In, e.ipa | off);
        return Err(Fail::Trans(f, e.s2_fault));
    }
    Ok(e.out | off)
}
