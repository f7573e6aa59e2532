//! Invalidation: the queued interface (VT-d §6.5.2) and the register-based
//! one (§6.5.1), sharing one executor.

use std::sync::atomic::Ordering;

use iommu_cache::{RangeFilter, SpaceMatch};
use iommu_format::vtd::inv_desc::{
    ContextCacheScope, InvDesc, InvDescriptor, IotlbScope, PasidCacheScope, PasidIotlbScope,
};
use iommu_format::vtd::regs::{fsts, Cap, Iqa};
use iommu_types::{Hpa, InterruptSink, PhysMem, SourceId};

use super::translate::{KIND_FS, KIND_NESTED, KIND_SS};
use super::{PageGroupResponse, Regs, SidKey, VtdUnit};

/// IQERCD.IQEI values this model reports (VT-d §11.4.10.9).
mod iqei {
    /// The tail is misaligned for the descriptor width or beyond the queue.
    pub const BAD_TAIL: u64 = 1;
    /// The descriptor could not be fetched.
    pub const FETCH: u64 = 2;
    /// Unknown type, reserved field, reserved granularity, or a 256-bit-only
    /// type in a 128-bit queue.
    pub const INVALID: u64 = 3;
    /// A wait descriptor's status write failed.
    pub const STATUS_WRITE: u64 = 4;
}

/// Why executing a descriptor failed.
pub(super) enum IqError {
    /// An invalid descriptor or queue: FSTS.IQE with this IQERCD.IQEI code.
    Invalid(u64),
    /// A device-TLB invalidation to this source-id timed out: FSTS.ITE with
    /// IQERCD.ITESID.
    Timeout(u16),
}

/// Kinds a PASID-based (type 0x6) invalidation applies to.
const FS_KINDS: u32 = 1 << KIND_FS | 1 << KIND_NESTED;

impl<M: PhysMem, I: InterruptSink> VtdUnit<M, I> {
    /// Queue geometry: (base, size in bytes, descriptor size in bytes).
    fn queue(r: &Regs) -> (u64, u64, u64) {
        let iqa = Iqa([r.iqa]);
        let desc = if iqa.get(Iqa::DW) != 0 { 32 } else { 16 };
        (iqa.get_in_place(Iqa::IQA), 4096u64 << iqa.get(Iqa::QS), desc)
    }

    /// Fetches and executes descriptors from IQH up to IQT, stopping with
    /// IQE set and IQH on the offending descriptor at the first error.
    pub(super) fn process_queue(&self, r: &mut Regs) {
        let (base, size, desc) = Self::queue(r);
        let tail = r.iqt & 0x7_FFF0;
        if tail % desc != 0 || tail >= size {
            r.fsts |= fsts::IQE;
            r.iqercd = iqei::BAD_TAIL;
            return;
        }
        while r.fsts & (fsts::IQE | fsts::ITE) == 0 && r.iqh != tail {
            let head = r.iqh % size;
            let mut w = [0u64; 4];
            let mut fetch_ok = true;
            for (i, slot) in w.iter_mut().take((desc / 8) as usize).enumerate() {
                match self.mem.read_u64(Hpa::new(base.wrapping_add(head + 8 * i as u64))) {
                    Ok(v) => *slot = v,
                    Err(_) => fetch_ok = false,
                }
            }
            let result = if !fetch_ok {
                Err(IqError::Invalid(iqei::FETCH))
            } else {
                match InvDescriptor::decode(&InvDesc(w), desc == 32) {
                    Ok(d) => self.execute(r, &d),
                    Err(_) => Err(IqError::Invalid(iqei::INVALID)),
                }
            };
            match result {
                Ok(()) => {}
                Err(IqError::Invalid(code)) => {
                    r.fsts |= fsts::IQE;
                    r.iqercd = code;
                    return;
                }
                Err(IqError::Timeout(sid)) => {
                    // The queue parks on the timed-out descriptor; software
                    // clears ITE and resubmits (as after IQE).
                    r.fsts |= fsts::ITE;
                    r.iqercd = (sid as u64) << 32;
                    return;
                }
            }
            self.stats.descriptors.fetch_add(1, Ordering::Relaxed);
            r.iqh = (head + desc) % size;
        }
    }

    /// Executes one invalidation descriptor.
    pub(super) fn execute(&self, r: &mut Regs, d: &InvDescriptor) -> Result<(), IqError> {
        self.execute_one(r, d)?;
        self.notice(d);
        Ok(())
    }

    fn execute_one(&self, r: &mut Regs, d: &InvDescriptor) -> Result<(), IqError> {
        match *d {
            InvDescriptor::ContextCache(scope) => self.invalidate_context(scope),
            InvDescriptor::Iotlb { scope, .. } => self.invalidate_iotlb(scope)?,
            InvDescriptor::DeviceTlb { sid, addr, size, .. } => {
                self.invalidate_devtlb(sid, SpaceMatch::Any, addr.raw(), size)?;
            }
            InvDescriptor::InterruptEntryCache { .. } => {
                // No interrupt remapping is modelled: nothing is cached.
            }
            InvDescriptor::Wait { interrupt, status, .. } => {
                // Descriptors complete in order and page requests are queued
                // synchronously, so fence and page-request drain (PD) are
                // satisfied once every earlier descriptor has run.
                if let Some((addr, data)) = status {
                    self.mem.write(addr, &data.to_le_bytes()).map_err(|_| IqError::Invalid(iqei::STATUS_WRITE))?;
                }
                if interrupt {
                    r.ics |= 1;
                    r.inv_event.signal(&self.irq);
                }
            }
            InvDescriptor::PasidIotlb { did, pasid, scope } => match scope {
                PasidIotlbScope::AllNonGlobal => self.iotlb.invalidate_space(did.raw(), pasid.raw()),
                PasidIotlbScope::Page { addr, am, .. } => {
                    self.check_am(am)?;
                    let f = RangeFilter { domain: did.raw(), space: SpaceMatch::Only(pasid.raw()), kinds: FS_KINDS };
                    self.iotlb.invalidate_range(f, addr.raw(), am);
                }
            },
            InvDescriptor::PasidCache { did, scope } => match scope {
                PasidCacheScope::Domain => self.pasid_cache.invalidate_domain(did.raw()),
                PasidCacheScope::Pasid(p) => self.pasid_cache.invalidate_space(did.raw(), p.raw()),
                PasidCacheScope::Global => self.pasid_cache.invalidate_all(),
            },
            InvDescriptor::PasidDeviceTlb { sid, pasid, global, addr, size, .. } => {
                let spaces = if global { SpaceMatch::Any } else { SpaceMatch::Only(pasid.raw()) };
                self.invalidate_devtlb(sid, spaces, addr.raw(), size)?;
            }
            InvDescriptor::PageGroupResponse { rid, pasid, code, prgi, .. } => {
                self.push_response(PageGroupResponse { rid, pasid, prgi, code, by_hardware: false });
            }
        }
        Ok(())
    }

    fn check_am(&self, am: u8) -> Result<(), IqError> {
        if am as u64 > self.caps.cap.get(Cap::MAMV) {
            return Err(IqError::Invalid(iqei::INVALID));
        }
        Ok(())
    }

    pub(super) fn invalidate_context(&self, scope: ContextCacheScope) {
        match scope {
            // Scalable-mode context entries carry no domain ID, so a
            // domain-selective invalidation is performed as a global one
            // (over-invalidation is always allowed).
            ContextCacheScope::Global | ContextCacheScope::Domain(_) => self.ctx_cache.invalidate_all(),
            ContextCacheScope::Device { sid, fm, .. } => {
                // FM masks the high 0..3 bits of the function number (§6.5.2.1).
                let mask = match fm {
                    0 => 0,
                    1 => 0b100,
                    2 => 0b110,
                    _ => 0b111,
                };
                let base = sid.raw() & !mask;
                for f in 0..=mask {
                    if f & !mask == 0 {
                        let s = base | f;
                        self.ctx_cache.invalidate_in_set(&SidKey(s), |k, _, _| k.0 == s);
                    }
                }
            }
        }
    }

    pub(super) fn invalidate_iotlb(&self, scope: IotlbScope) -> Result<(), IqError> {
        match scope {
            IotlbScope::Global => self.iotlb.invalidate_all(),
            IotlbScope::Domain(did) => self.iotlb.invalidate_domain(did.raw()),
            IotlbScope::Page { did, addr, am, .. } => {
                self.check_am(am)?;
                let f = RangeFilter { domain: did.raw(), space: SpaceMatch::Any, kinds: 1 << KIND_SS };
                self.iotlb.invalidate_range(f, addr.raw(), am);
                // Nested (combined) entries are tagged by their first-stage
                // input address, so a second-stage address range cannot pick
                // them out: every nested entry of the domain goes, in every
                // PASID (VT-d §6.5.2.3, §6.2.1 combined mappings).
                let nested = RangeFilter { domain: did.raw(), space: SpaceMatch::Any, kinds: 1 << KIND_NESTED };
                self.iotlb.invalidate_range(nested, 0, 52);
            }
        }
        Ok(())
    }

    /// Device-TLB invalidation with the PCIe ATS size encoding: with S set,
    /// the lowest clear bit of ADDR[63:12] gives the range. An endpoint that
    /// does not answer makes it time out.
    fn invalidate_devtlb(&self, sid: SourceId, spaces: SpaceMatch, addr: u64, size: bool) -> Result<(), IqError> {
        if !self.ats_responsive(sid) {
            return Err(IqError::Timeout(sid.raw()));
        }
        let am = if size { ((addr >> 12).trailing_ones() + 1).min(52) as u8 } else { 0 };
        self.devtlb.invalidate_range(RangeFilter { domain: sid.raw(), space: spaces, kinds: u32::MAX }, addr, am);
        Ok(())
    }
}
