//! Translation of DMA requests (VT-d §3.4–§3.8) and page-by-page DMA.

use std::sync::atomic::Ordering;

use iommu_cache::{IotlbEntry, NO_SPACE};
use iommu_format::vtd::context::{agaw_levels, levels_width, TranslationType};
use iommu_format::vtd::fault::FaultReason as R;
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, SecondStageCfg};
use iommu_format::vtd::pte::SsRules;
use iommu_format::vtd::regs::{Ecap, TableMode};
use iommu_types::{Access, Hpa, InterruptSink, Iova, MemError, PageSize, Pasid, Perm, PhysMem, SourceId};
use iommu_walk::vtd::context::{self, Context};
use iommu_walk::vtd::page::{self, FsWalk, SsWalk};
use iommu_walk::vtd::pasid::{self, PasidLookup};
use iommu_walk::vtd::reason::walk_fault_reason;
use iommu_walk::vtd::LookupFault;
use iommu_walk::{Translation, WalkFault};

use super::{PasidKey, SidKey, VtdUnit};

/// An untranslated DMA request (PCIe memory request, AT=00b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    /// Requester.
    pub sid: SourceId,
    /// PASID TLP prefix, if any.
    pub pasid: Option<Pasid>,
    /// Input address.
    pub addr: Iova,
    /// What the request does.
    pub access: Access,
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Translated {
    /// Output address of the request's address.
    pub addr: Hpa,
    /// Base of the translated page.
    pub frame: Hpa,
    /// Size of the translated page.
    pub size: PageSize,
    /// Effective permissions.
    pub perm: Perm,
    /// Whether the IOTLB served it.
    pub cached: bool,
}

/// A request the unit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VtdFault {
    /// The architectural reason.
    pub reason: R,
    /// Whether a fault recording register was written (not suppressed by
    /// FPD, not dropped for overflow).
    pub recorded: bool,
}

/// A DMA that did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DmaError {
    /// Translation of the page at byte `done` faulted; bytes before it were
    /// transferred.
    Fault {
        /// Bytes transferred before the fault.
        done: usize,
        /// The fault.
        fault: VtdFault,
    },
    /// The translated address is not backed by memory (a master abort).
    Memory {
        /// Bytes transferred before the error.
        done: usize,
        /// The memory error.
        err: MemError,
    },
}

/// IOTLB kinds: which translation a cached entry came from.
pub(super) const KIND_SS: u8 = 0;
pub(super) const KIND_FS: u8 = 1;
pub(super) const KIND_NESTED: u8 = 2;

/// The interrupt address range, VT-d §3.15: requests whose translated
/// address falls in 0xFEEx_xxxx fault (0xE / 0x87).
const INTR_LO: u64 = 0xFEE0_0000;
const INTR_HI: u64 = 0xFEF0_0000;

pub(super) const TE_BIT: u64 = 1;

type Refusal = (R, bool);

fn lookup_refusal(f: LookupFault) -> Refusal {
    (f.reason, f.fpd)
}

impl<M: PhysMem, I: InterruptSink> VtdUnit<M, I> {
    /// Translates one request. On a fault the fault is recorded (unless FPD
    /// suppresses it or the log overflows) and returned.
    ///
    /// Allocation-free; takes no global lock on the success path.
    ///
    /// # Errors
    /// [`VtdFault`] with the architectural reason.
    pub fn translate(&self, req: &Request) -> Result<Translated, VtdFault> {
        let active = self.active.load(Ordering::Acquire);
        if active & TE_BIT == 0 {
            return Ok(identity(req.addr, false));
        }
        // Fast path: the IOTLB is found by the request itself, so a hit
        // needs neither the context nor the PASID cache. This is sound
        // because VT-d §6.5 requires software to invalidate the IOTLB after
        // changing any context or PASID entry a translation came from.
        let a = req.addr.raw();
        let space = req.pasid.map_or(NO_SPACE, |p| p.raw());
        if let Some((e, size)) = self.iotlb.lookup(req.sid.raw(), space, access_flags(req.access), a) {
            let access = req.access;
            if e.perm.allows(access) && (access.privileged || e.user) && (!access.write || e.dirty) {
                let out = Hpa::new(e.frame.raw() | (a & (size.bytes() - 1)));
                if !in_interrupt_range(out) {
                    return Ok(Translated { addr: out, frame: e.frame, size, perm: e.perm, cached: true });
                }
            }
        }
        match self.resolve(req, active) {
            Ok(t) => Ok(t),
            Err((reason, fpd)) => {
                let recorded = if fpd {
                    self.stats.faults_suppressed.fetch_add(1, Ordering::Relaxed);
                    false
                } else {
                    self.record_fault(req, reason)
                };
                Err(VtdFault { reason, recorded })
            }
        }
    }

    pub(super) fn context(&self, sid: SourceId, active: u64) -> Result<Context, LookupFault> {
        if let Some(c) = self.ctx_cache.lookup(&SidKey(sid.raw())) {
            return Ok(c);
        }
        let mode = TableMode::from_bits(active >> 10);
        let c = context::lookup(&self.mem, Hpa::new(active & !0xFFF), mode, sid, &self.caps)?;
        let did = match c {
            Context::Legacy(l) => l.did.raw(),
            Context::Scalable(_) => 0,
        };
        self.ctx_cache.fill(SidKey(sid.raw()), did, None, c);
        Ok(c)
    }

    pub(super) fn pasid_entry(
        &self,
        sid: SourceId,
        ctx: &iommu_format::vtd::context::ScalableContextRepr,
        p: Pasid,
    ) -> Result<PasidLookup, LookupFault> {
        let key = PasidKey { sid: sid.raw(), pasid: p.raw() };
        if let Some(e) = self.pasid_cache.lookup(&key) {
            return Ok(e);
        }
        let e = pasid::lookup(&self.mem, ctx, p, &self.caps)?;
        self.pasid_cache.fill(key, e.entry.did.raw(), Some(p.raw()), e);
        Ok(e)
    }

    fn ss_rules(&self, scalable: bool) -> SsRules {
        let c = &self.caps;
        SsRules {
            haw: c.haw(),
            large_2m: c.ss_large_page(2),
            large_1g: c.ss_large_page(3),
            snp_reserved: !scalable && !c.ecap_has(Ecap::SC),
            tm_reserved: !c.ecap_has(Ecap::DT),
        }
    }

    fn ss_walk_params(&self, root: Hpa, levels: u8, scalable: bool) -> SsWalk {
        SsWalk {
            root,
            levels,
            width: levels_width(levels).min(self.caps.mgaw()),
            rules: self.ss_rules(scalable),
            exec_enable: false,
            ad: false,
        }
    }

    fn fs_walk_params(&self, fs: &FirstStageCfg) -> FsWalk {
        FsWalk {
            root: fs.root,
            levels: fs.levels,
            haw: self.caps.haw(),
            fs1gp: self.caps.fs_large_page(3),
            wpe: fs.wpe,
            eafe: fs.eafe,
        }
    }

    /// Resolves a request to a translation or a (reason, suppressed) pair.
    pub(super) fn resolve(&self, req: &Request, active: u64) -> Result<Translated, Refusal> {
        let mode = TableMode::from_bits(active >> 10);
        if mode != TableMode::Scalable && req.pasid.is_some() {
            return Err((R::LegacyModePasidRequest, false));
        }
        let a = req.addr.raw();
        match self.context(req.sid, active).map_err(lookup_refusal)? {
            Context::Legacy(c) => {
                if c.tt == TranslationType::PassThrough {
                    return pass_through(req.addr, R::InterruptAddress, c.fpd);
                }
                let levels = agaw_levels(c.aw as u64).unwrap_or(3);
                let ss = self.ss_walk_params(c.slptptr, levels, false);
                self.walk_and_fill(c.did.raw(), NO_SPACE, KIND_SS, req, req.access, c.fpd, false, || {
                    page::ss_walk(&self.mem, &ss, a, req.access)
                })
            }
            Context::Scalable(c) => {
                let p = match req.pasid {
                    Some(_) if !c.paside => return Err((R::SmPasidDisabled, c.fpd)),
                    Some(p) => p,
                    None => c.rid_pasid,
                };
                let access = if req.pasid.is_none() && c.rid_priv { req.access.privileged() } else { req.access };
                let pl = self.pasid_entry(req.sid, &c, p).map_err(lookup_refusal)?;
                let (e, fpd) = (pl.entry, pl.fpd);
                let did = e.did.raw();
                match e.config {
                    PasidConfig::PassThrough => pass_through(req.addr, R::SmInterruptAddress, fpd),
                    PasidConfig::SecondStage(SecondStageCfg { root, levels, .. }) => {
                        let ss = self.ss_walk_params(root, levels, true);
                        self.walk_and_fill(did, NO_SPACE, KIND_SS, req, access, fpd, true, || {
                            page::ss_walk(&self.mem, &ss, a, access)
                        })
                    }
                    PasidConfig::FirstStage(fs) => {
                        check_request_enables(&fs, access, fpd)?;
                        let w = self.fs_walk_params(&fs);
                        self.walk_and_fill(did, p.raw(), KIND_FS, req, access, fpd, true, || {
                            page::fs_only(&self.mem, &w, a, access)
                        })
                    }
                    PasidConfig::Nested(fs, ss) => {
                        check_request_enables(&fs, access, fpd)?;
                        let w = self.fs_walk_params(&fs);
                        let s = self.ss_walk_params(ss.root, ss.levels, true);
                        self.walk_and_fill(did, p.raw(), KIND_NESTED, req, access, fpd, true, || {
                            page::nested(&self.mem, &w, &s, a, access)
                        })
                    }
                }
            }
        }
    }

    /// Walks and fills the IOTLB entry the fast path of
    /// [`VtdUnit::translate`] looks for. `space` is the address space the
    /// translation is made in (the PASID for first-stage and nested
    /// translations, [`NO_SPACE`] for second-stage-only ones).
    #[allow(clippy::too_many_arguments)]
    fn walk_and_fill(
        &self,
        did: u16,
        space: u32,
        kind: u8,
        req: &Request,
        access: Access,
        fpd: bool,
        scalable: bool,
        walk: impl FnOnce() -> Result<Translation, WalkFault>,
    ) -> Result<Translated, Refusal> {
        let a = req.addr.raw();
        let t = walk().map_err(|f| (walk_fault_reason(&f, scalable, access), fpd))?;
        let out = t.output(a);
        if in_interrupt_range(out) {
            let intr = if scalable { R::SmInterruptAddress } else { R::InterruptAddress };
            return Err((intr, fpd));
        }
        // A large page that overlaps the interrupt window is used (and
        // cached, and handed to ATS) only at 4 KiB granularity, so that no
        // cached or device-held translation ever reaches the window.
        let (frame, size) = if overlaps_interrupt_range(t.frame, t.size) {
            (out.align_down(PageSize::Size4K), PageSize::Size4K)
        } else {
            (t.frame, t.size)
        };
        let entry = IotlbEntry { frame, perm: t.perm, user: t.user, dirty: t.dirty, kind, space };
        let req_space = req.pasid.map_or(NO_SPACE, |p| p.raw());
        self.iotlb.fill(req.sid.raw(), req_space, access_flags(req.access), did, a, size, entry);
        Ok(Translated { addr: out, frame, size, perm: t.perm, cached: false })
    }

    /// A device write of `data` at `addr`, translated 4 KiB page by page:
    /// pages before a faulting one are written (VT-d faults are per request
    /// page; the partial completion is what a device observes).
    ///
    /// # Errors
    /// [`DmaError`] with the number of bytes written before it.
    pub fn dma_write(&self, sid: SourceId, pasid: Option<Pasid>, addr: Iova, data: &[u8]) -> Result<(), DmaError> {
        self.dma(sid, pasid, addr, data.len(), Access::WRITE, |hpa, off, n| self.mem.write(hpa, &data[off..off + n]))
    }

    /// A device read into `buf` from `addr`, translated page by page.
    ///
    /// # Errors
    /// As [`VtdUnit::dma_write`].
    pub fn dma_read(&self, sid: SourceId, pasid: Option<Pasid>, addr: Iova, buf: &mut [u8]) -> Result<(), DmaError> {
        let len = buf.len();
        self.dma(sid, pasid, addr, len, Access::READ, |hpa, off, n| self.mem.read(hpa, &mut buf[off..off + n]))
    }

    fn dma(
        &self,
        sid: SourceId,
        pasid: Option<Pasid>,
        addr: Iova,
        len: usize,
        access: Access,
        mut xfer: impl FnMut(Hpa, usize, usize) -> Result<(), MemError>,
    ) -> Result<(), DmaError> {
        let mut done = 0usize;
        while done < len {
            let Some(cur) = addr.checked_add(done as u64) else {
                let fault = VtdFault { reason: R::AddressBeyondAgaw, recorded: false };
                return Err(DmaError::Fault { done, fault });
            };
            let n = ((0x1000 - (cur.raw() & 0xFFF)) as usize).min(len - done);
            let t = self
                .translate(&Request { sid, pasid, addr: cur, access })
                .map_err(|fault| DmaError::Fault { done, fault })?;
            xfer(t.addr, done, n).map_err(|err| DmaError::Memory { done, err })?;
            done += n;
        }
        Ok(())
    }
}

fn check_request_enables(fs: &FirstStageCfg, access: Access, fpd: bool) -> Result<(), Refusal> {
    if access.privileged && !fs.sre {
        return Err((R::SreClear, fpd));
    }
    if access.exec && !fs.ere {
        return Err((R::EreClear, fpd));
    }
    Ok(())
}

/// The request's access class as IOTLB key flags: translations made for
/// privileged or execute requests are kept apart, since the checks that
/// admitted them (SRE, ERE, WPE) differ.
pub(super) const fn access_flags(a: Access) -> u8 {
    (a.privileged as u8) | (a.exec as u8) << 1
}

pub(super) fn in_interrupt_range(out: Hpa) -> bool {
    (INTR_LO..INTR_HI).contains(&out.raw())
}

fn overlaps_interrupt_range(frame: Hpa, size: PageSize) -> bool {
    frame.raw() < INTR_HI && frame.raw().saturating_add(size.bytes()) > INTR_LO
}

/// Pass-through (legacy TT=10b, PGTT=100b): output = input, except that an
/// address in the interrupt range is never a DMA target (VT-d §3.15).
fn pass_through(addr: Iova, intr: R, fpd: bool) -> Result<Translated, Refusal> {
    if in_interrupt_range(Hpa::new(addr.raw())) {
        return Err((intr, fpd));
    }
    Ok(identity(addr, false))
}

fn identity(addr: Iova, cached: bool) -> Translated {
    Translated {
        addr: Hpa::new(addr.raw()),
        frame: Hpa::new(addr.raw() & !0xFFF),
        size: PageSize::Size4K,
        perm: Perm::ALL,
        cached,
    }
}
