//! ATS translation requests and the device TLBs they fill (VT-d §4.2,
//! PCIe ATS). The endpoints' translation caches are modelled here, one
//! bounded cache tagged by requester, so that device-TLB invalidation
//! descriptors have something real to invalidate.

use std::sync::atomic::Ordering;

use iommu_cache::IotlbEntry;
use iommu_format::vtd::context::TranslationType;
use iommu_format::vtd::fault::FaultReason;
use iommu_types::{Access, Hpa, InterruptSink, Iova, PageSize, Pasid, Perm, PhysMem, SourceId};
use iommu_walk::vtd::context::Context;

use super::translate::{access_flags, in_interrupt_range, Request, TE_BIT};
use super::VtdUnit;

/// A translation completion (PCIe ATS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtsCompletion {
    /// Translated: the device may cache `frame`/`size` with `perm`.
    Translated {
        /// Output page base.
        frame: Hpa,
        /// Page size.
        size: PageSize,
        /// Granted permissions.
        perm: Perm,
    },
    /// Success with R=W=0: the page is not accessible now (the device may
    /// issue a page request).
    NoAccess,
    /// Unsupported request: the device is not allowed translation requests
    /// (DTE / TT), or its configuration is broken; a fault is recorded.
    Unsupported(FaultReason),
}

const DEVTLB_FLAGS: u8 = 0;

impl<M: PhysMem, I: InterruptSink> VtdUnit<M, I> {
    /// An ATS translation request. On success the result is cached in the
    /// requester's device TLB.
    pub fn ats_translate(&self, sid: SourceId, pasid: Option<Pasid>, addr: Iova, access: Access) -> AtsCompletion {
        let active = self.active.load(Ordering::Acquire);
        if active & TE_BIT == 0 {
            return AtsCompletion::Translated {
                frame: Hpa::new(addr.raw() & !0xFFF),
                size: PageSize::Size4K,
                perm: Perm::ALL,
            };
        }
        let req = Request { sid, pasid, addr, access };
        let allowed = match self.context(sid, active) {
            Ok(Context::Legacy(c)) => c.tt == TranslationType::DeviceTlb,
            Ok(Context::Scalable(c)) => c.dte,
            Err(f) => {
                self.record_fault(&req, f.reason);
                return AtsCompletion::Unsupported(f.reason);
            }
        };
        if !allowed {
            self.record_fault(&req, FaultReason::SmDteClear);
            return AtsCompletion::Unsupported(FaultReason::SmDteClear);
        }
        let space = pasid.map_or(iommu_cache::NO_SPACE, |p| p.raw());
        // A translation request is served from the IOTLB like any other
        // request (VT-d §6.2); a hit needs what a walk would check.
        if let Some((e, size)) = self.iotlb.lookup(sid.raw(), space, access_flags(access), addr.raw()) {
            let out = Hpa::new(e.frame.raw() | (addr.raw() & (size.bytes() - 1)));
            if e.perm.allows(access)
                && (access.privileged || e.user)
                && (!access.write || e.dirty)
                && !in_interrupt_range(out)
            {
                let entry = IotlbEntry { frame: e.frame, perm: e.perm, user: true, dirty: true, kind: 0, space };
                self.devtlb.fill(sid.raw(), space, DEVTLB_FLAGS, sid.raw(), addr.raw(), size, entry);
                return AtsCompletion::Translated { frame: e.frame, size, perm: e.perm };
            }
        }
        // Translation-request faults are reported to the device in the
        // completion, not recorded (VT-d §7.1.1): translate without the
        // fault-log side effects.
        match self.resolve(&req, active) {
            Ok(t) => {
                let entry = IotlbEntry { frame: t.frame, perm: t.perm, user: true, dirty: true, kind: 0, space };
                // The device TLBs are tagged by requester: the domain tag is the source-id.
                self.devtlb.fill(sid.raw(), space, DEVTLB_FLAGS, sid.raw(), addr.raw(), t.size, entry);
                AtsCompletion::Translated { frame: t.frame, size: t.size, perm: t.perm }
            }
            Err(_) => AtsCompletion::NoAccess,
        }
    }

    /// A translated request (AT=10b) from `sid`: the device's TLB must hold
    /// the translation. Returns the output address, or `None` on a device
    /// TLB miss (the device must ask again with a translation request).
    pub fn device_tlb_lookup(&self, sid: SourceId, pasid: Option<Pasid>, addr: Iova, access: Access) -> Option<Hpa> {
        let space = pasid.map_or(iommu_cache::NO_SPACE, |p| p.raw());
        let (e, size) = self.devtlb.lookup(sid.raw(), space, DEVTLB_FLAGS, addr.raw())?;
        e.perm.allows(access).then(|| Hpa::new(e.frame.raw() | (addr.raw() & (size.bytes() - 1))))
    }
}
