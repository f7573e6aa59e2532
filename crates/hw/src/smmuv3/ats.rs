//! ATS (SMMUv3 §3.9; PCIe ATS): translation requests from endpoints, the
//! endpoints' ATCs (kept here, one bounded cache for all endpoints, as
//! the VT-d model keeps its device TLB), and their invalidation by
//! CMD_ATC_INV (§4.5.1).
//!
//! A translation request is refused with F_BAD_ATS_TREQ when the stream
//! does not enable ATS (STE.EATS); configuration faults are recorded as
//! for any transaction; translation faults are not recorded, the
//! completion simply grants no access and the endpoint may then use PRI.

use iommu_cache::{mix, CacheKey};
use iommu_format::smmuv3::event::{Event, EventId};
use iommu_types::{Access, InterruptSink, PhysMem, StreamId, SubstreamId};

use super::translate::Request;
use super::Smmu;

/// An ATS translation completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtsCompletion {
    /// The 4 KiB page containing the address translates to `pa` (page
    /// base) with these permissions (at least one granted).
    Translated {
        /// Output page base.
        pa: u64,
        /// Reads allowed.
        read: bool,
        /// Writes allowed.
        write: bool,
    },
    /// The translation exists for neither reads nor writes (R = W = 0).
    NoAccess,
    /// Unsupported Request: ATS is off for the stream or not implemented,
    /// or the stream's configuration is broken.
    Unsupported,
}

/// ATC tag of an entry without PASID.
pub(super) const NO_SSID: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AtcKey {
    pub sid: u32,
    pub ssid: u32,
    pub page: u64,
}

impl CacheKey for AtcKey {
    fn set_hash(&self) -> u64 {
        mix(self.page ^ (self.sid as u64) << 44 ^ (self.ssid as u64) << 24)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AtcEntry {
    pub pa: u64,
    pub read: bool,
    pub write: bool,
}

fn ssid_tag(ssid: Option<SubstreamId>) -> u32 {
    ssid.map_or(NO_SSID, |s| s.raw())
}

impl<M: PhysMem, I: InterruptSink> Smmu<M, I> {
    /// An ATS translation request for the page holding `addr` (SMMUv3 §3.9.1).
    /// A completion that grants access fills the endpoint's ATC.
    pub fn ats_translate(&self, sid: StreamId, ssid: Option<SubstreamId>, addr: u64) -> AtsCompletion {
        let ctl = self.ctl();
        if !self.features.ats || !ctl.smmuen {
            return AtsCompletion::Unsupported;
        }
        let page = addr & !0xFFF;
        let req = |access| Request { sid, ssid, addr: page, access };
        let c = match self.resolve(sid, ssid, &ctl) {
            Ok(c) => c,
            Err(f) => {
                self.report(f, &req(Access::READ), Access::READ, &ctl);
                return AtsCompletion::Unsupported;
            }
        };
        if !c.stream.eats {
            let mut e = Event::new(EventId::FBadAtsTreq, sid);
            e.ssid = ssid;
            e.input_addr = page;
            e.read = true;
            self.record_event(&e);
            return AtsCompletion::Unsupported;
        }
        // Translation faults answer the request without access and are not
        // recorded (§3.9.1); configuration faults were recorded above.
        let probe = |access: Access| self.translate_ctx(&c, page, access).ok();
        let (r, w) = (probe(Access::READ), probe(Access::WRITE));
        let Some(pa) = r.or(w).map(|t| t.pa & !0xFFF) else {
            return AtsCompletion::NoAccess;
        };
        let entry = AtcEntry { pa, read: r.is_some(), write: w.is_some() };
        self.atc.fill(AtcKey { sid: sid.0, ssid: ssid_tag(ssid), page: page >> 12 }, 0, None, entry);
        AtsCompletion::Translated { pa, read: entry.read, write: entry.write }
    }

    /// The endpoint's ATC lookup: the output address of `addr` for
    /// `access`, if a cached translation allows it.
    pub fn atc_lookup(&self, sid: StreamId, ssid: Option<SubstreamId>, addr: u64, access: Access) -> Option<u64> {
        let e = self.atc.lookup(&AtcKey { sid: sid.0, ssid: ssid_tag(ssid), page: addr >> 12 })?;
        ((!access.read || e.read) && (!access.write || e.write)).then_some(e.pa | (addr & 0xFFF))
    }

    /// Number of valid ATC entries of `sid` (with `ssid`, or all substreams).
    pub fn atc_entries(&self, sid: StreamId, ssid: Option<Option<SubstreamId>>) -> usize {
        let mut n = 0;
        self.atc.for_each_valid(|k, _, _| {
            if k.sid == sid.0 && ssid.is_none_or(|s| k.ssid == ssid_tag(s)) {
                n += 1;
            }
        });
        n
    }

    /// CMD_ATC_INV (§4.5.1): the endpoint drops its entries for `sid` in
    /// the 2^`size` pages aligned around `addr` (all of them for size ≥
    /// 52); with a SubstreamID only that PASID's entries (every PASID's
    /// with Global), without one only the untagged entries.
    pub(super) fn atc_invalidate(&self, sid: StreamId, ssid: Option<SubstreamId>, global: bool, addr: u64, size: u8) {
        let (lo, hi) = if size >= 52 {
            (0, u64::MAX)
        } else {
            let span = 1u64 << (size as u32 + 12);
            let lo = addr & !(span - 1);
            (lo >> 12, lo.saturating_add(span) >> 12)
        };
        self.atc.invalidate_where(|k, _, _| {
            k.sid == sid.0
                && match ssid {
                    None => k.ssid == NO_SSID,
                    Some(s) => k.ssid == s.raw() || (global && k.ssid != NO_SSID),
                }
                && (lo..hi.max(lo + 1)).contains(&k.page)
        });
    }
}
