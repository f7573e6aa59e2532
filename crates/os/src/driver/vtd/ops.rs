//! [`IommuDriver`] for VT-d: domains become scalable-mode PASID entries
//! (VT-d §9.6; PASID 0 is the RID_PASID entry that untagged DMA uses),
//! domains get DIDs, flushes become IOTLB / PASID-IOTLB / device-TLB
//! descriptors (VT-d §6.5.2).

use iommu_format::vtd::inv_desc::{InvDescriptor, IotlbScope, PasidIotlbScope};
use iommu_format::vtd::pasid::{FirstStageCfg, PasidConfig, PasidEntryRepr, SecondStageCfg};
use iommu_format::vtd::regs::{Cap, Ecap};
use iommu_types::{DomainId, Gpa, Iova, Pasid, PhysMem, RegisterBus, SourceId};

use super::VtdDriver;
use crate::driver::{
    DeviceInfo, DomainConfig, DomainDesc, DomainRef, FaultBatch, FlushTarget, HwInfo, HwInfoData, IommuDriver,
};
use crate::frames::FrameAllocator;
use crate::iommu::NestedS1;
use crate::iopf::{Fault, Response};
use crate::pasid::DeviceId;
use crate::Errno;

/// The largest page-selective invalidation (2^AM pages) issued before
/// falling back to a whole-domain / whole-PASID one (Linux uses a similar
/// cut-off; CAP.MAMV bounds it in hardware).
const MAX_AM: u8 = 9;

impl<B: RegisterBus> VtdDriver<B> {
    /// The DID of `domain`, allocating one (VT-d §6.2.1: DIDs tag cached
    /// translations; CAP.ND bounds them; DID 0 is left unused because
    /// caching mode reserves it).
    fn did_get(&mut self, domain: DomainRef) -> Result<DomainId, Errno> {
        if let Some((did, refs)) = self.dids.get_mut(&domain) {
            *refs += 1;
            return Ok(*did);
        }
        let limit = 1u32.checked_shl(self.caps.did_bits()).unwrap_or(u32::MAX).min(1 << 16);
        let used: std::collections::BTreeSet<u16> = self.dids.values().map(|(d, _)| d.raw()).collect();
        let free = (1..limit).find(|d| !used.contains(&(*d as u16))).ok_or(Errno::NoSpc)?;
        let did = DomainId::new(free as u16);
        self.dids.insert(domain, (did, 1));
        Ok(did)
    }

    fn did_put(&mut self, domain: DomainRef) {
        if let Some((_, refs)) = self.dids.get_mut(&domain) {
            *refs = refs.saturating_sub(1);
            if *refs == 0 {
                self.dids.remove(&domain);
            }
        }
    }

    /// The DID `domain` is tagged with, if attached anywhere.
    pub fn did_of(&self, domain: DomainRef) -> Option<DomainId> {
        self.dids.get(&domain).map(|(d, _)| *d)
    }

    /// The PASID entry for `d` (semantics §5.9 spec 57 for nested), or
    /// `EINVAL` when this unit cannot translate that way.
    fn entry_for(&self, d: &DomainDesc, did: DomainId) -> Result<PasidEntryRepr, Errno> {
        let caps = &self.caps;
        let need = |ok: bool| if ok { Ok(()) } else { Err(Errno::Inval) };
        let fs = |root: Gpa, levels: u8, sre: bool| -> Result<FirstStageCfg, Errno> {
            need(caps.ecap_has(Ecap::FSTS))?;
            need(levels == 4 || (levels == 5 && caps.cap_has(Cap::FS5LP)))?;
            need(!sre || caps.ecap_has(Ecap::SRS))?;
            Ok(FirstStageCfg { root, levels, sre, ere: false, wpe: false, eafe: false })
        };
        let ss = |root, levels: u8| -> Result<SecondStageCfg, Errno> {
            need(caps.ecap_has(Ecap::SSTS) && caps.sagaw_supports(levels))?;
            Ok(SecondStageCfg { root, levels, ssade: false })
        };
        let config = match d.config {
            DomainConfig::Blocked => return Err(Errno::Inval),
            DomainConfig::Identity => {
                need(caps.ecap_has(Ecap::PT))?;
                PasidConfig::PassThrough
            }
            DomainConfig::SecondStage { root, levels } => PasidConfig::SecondStage(ss(root, levels)?),
            DomainConfig::FirstStage { root, levels, supervisor } => {
                PasidConfig::FirstStage(fs(Gpa::new(root.raw()), levels, supervisor)?)
            }
            DomainConfig::Nested { fs_root, fs_levels, sre, eafe, wpe, ss_root, ss_levels, .. } => {
                need(caps.ecap_has(Ecap::NEST))?;
                need(!eafe || caps.ecap_has(Ecap::EAFS))?;
                let mut f = fs(fs_root, fs_levels, sre)?;
                f.eafe = eafe;
                f.wpe = wpe;
                PasidConfig::Nested(f, ss(ss_root, ss_levels)?)
            }
        };
        Ok(PasidEntryRepr { fpd: false, did, pwsnp: false, pgsnp: false, config })
    }
}

impl<B: RegisterBus> IommuDriver for VtdDriver<B> {
    fn name(&self) -> &'static str {
        "vt-d"
    }

    fn probe_device(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        dev: &DeviceInfo,
    ) -> Result<(), Errno> {
        let caps = super::DeviceCaps { max_pasids: dev.max_pasids, ats: dev.ats, pri: dev.pri };
        self.add_device(mem, frames, dev.sid, caps)
    }

    fn release_device(&mut self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, dev: &DeviceInfo) {
        self.remove_device(mem, frames, dev.sid);
    }

    /// VT-d 7.0 replace (semantics §4.3): the new entry is validated and its
    /// PASID table made to exist first, then the old entry is torn down
    /// (with drain) and the new one installed; if the install fails the old
    /// one is put back.
    fn set_dev_pasid(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        dev: &DeviceInfo,
        pasid: Pasid,
        new: &DomainDesc,
        old: Option<&DomainDesc>,
    ) -> Result<(), Errno> {
        if pasid.raw() != 0 && (pasid.raw() >= dev.max_pasids || !self.caps.ecap_has(Ecap::PASID)) {
            return Err(Errno::Inval);
        }
        if new.sva && !(dev.ats && dev.pri) {
            // SVA needs the device to fetch translations and request pages.
            return Err(Errno::Inval);
        }
        let did = self.did_get(new.id)?;
        let entry = match self.entry_for(new, did) {
            Ok(e) => e,
            Err(e) => {
                self.did_put(new.id);
                return Err(e);
            }
        };
        if let Err(e) = self.ensure_pasid_table(mem, frames, dev.sid, pasid) {
            self.did_put(new.id);
            return Err(e);
        }
        if let Some(old) = old {
            // Failed submissions are retried inside the teardown itself.
            let _ = self.teardown_pasid(mem, dev.sid, pasid, false);
            let result = self.install_pasid(mem, frames, dev.sid, pasid, &entry);
            if let Err(e) = result {
                self.did_put(new.id);
                if let Some(old_did) = self.did_of(old.id) {
                    if let Ok(old_entry) = self.entry_for(old, old_did) {
                        let _ = self.install_pasid(mem, frames, dev.sid, pasid, &old_entry);
                    }
                }
                return Err(e);
            }
            self.did_put(old.id);
            return Ok(());
        }
        let result = self.install_pasid(mem, frames, dev.sid, pasid, &entry);
        if result.is_err() {
            self.did_put(new.id);
            self.release_empty_pasid_table(mem, frames, dev.sid, pasid);
        }
        result
    }

    fn remove_dev_pasid(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        dev: &DeviceInfo,
        pasid: Pasid,
        fault_ignore: bool,
    ) {
        let did = self.pasid_entry(mem, dev.sid, pasid).map(|e| e.get(iommu_format::vtd::pasid::PasidEntry::DID));
        let _ = self.teardown_pasid(mem, dev.sid, pasid, fault_ignore);
        if fault_ignore {
            return;
        }
        self.release_empty_pasid_table(mem, frames, dev.sid, pasid);
        // The domain's DID reference is dropped by whoever held it.
        if let Some(did) = did {
            let owner = self.dids.iter().find(|(_, (d, _))| d.raw() as u64 == did).map(|(k, _)| *k);
            if let Some(owner) = owner {
                self.did_put(owner);
            }
        }
    }

    /// Page-selective invalidation by DID for second-stage, nested and
    /// identity domains (their translations are tagged by DID), PASID-based
    /// for first-stage ones (VT-d §6.5.2.4), then device TLBs with ATS.
    fn flush_range(
        &mut self,
        mem: &dyn PhysMem,
        domain: &DomainDesc,
        targets: &[FlushTarget],
        start: u64,
        end: u64,
        leaf_only: bool,
    ) -> Result<(), Errno> {
        let range = covering_block(start, end);
        let mut descs = Vec::new();
        let mut dids_done = std::collections::BTreeSet::new();
        for (dev, pasid) in targets {
            let Some(entry) = self.pasid_entry(mem, dev.sid, *pasid) else { continue };
            let did = DomainId::new(entry.get(iommu_format::vtd::pasid::PasidEntry::DID) as u16);
            // First-stage and nested (guest stage-1) changes are PASID-based
            // (VT-d §6.5.2.4); second-stage changes, also those a nested
            // child inherits from its parent, are domain-based (§6.5.2.3).
            let first_stage = matches!(domain.config, DomainConfig::FirstStage { .. } | DomainConfig::Nested { .. });
            if first_stage {
                let scope = match range {
                    Some((addr, am)) => PasidIotlbScope::Page { addr, am, ih: leaf_only },
                    None => PasidIotlbScope::AllNonGlobal,
                };
                descs.push(InvDescriptor::PasidIotlb { did, pasid: *pasid, scope });
            } else if dids_done.insert(did.raw()) {
                let scope = match range {
                    Some((addr, am)) => IotlbScope::Page { did, addr, am, ih: leaf_only },
                    None => IotlbScope::Domain(did),
                };
                descs.push(InvDescriptor::Iotlb { scope, dr: true, dw: true });
            }
            if dev.ats {
                descs.push(super::device_tlb_range(dev.sid, *pasid, range));
            }
        }
        // Batches stay well inside the one-page queue.
        for chunk in descs.chunks(64) {
            self.submit(mem, chunk)?;
        }
        Ok(())
    }

    fn hw_info(&self) -> HwInfo {
        HwInfo {
            data: HwInfoData::Vtd { cap: self.caps.cap.0[0], ecap: self.caps.ecap.0[0] },
            nesting: self.caps.ecap_has(Ecap::NEST),
            pasid: self.caps.ecap_has(Ecap::PASID),
        }
    }

    /// VT-d §9.6 / semantics §5.3 #25: a 5-level guest table needs
    /// CAP.FS5LP, SRE needs ECAP.SRS, EAFE needs ECAP.EAFS.
    fn check_nested_s1(&self, s1: &NestedS1) -> Result<(), Errno> {
        if s1.addr_width == 57 && !self.caps.cap_has(Cap::FS5LP)
            || s1.sre && !self.caps.ecap_has(Ecap::SRS)
            || s1.eafe && !self.caps.ecap_has(Ecap::EAFS)
        {
            return Err(Errno::Inval);
        }
        Ok(())
    }

    fn caches_not_present(&self) -> bool {
        self.caps.cap_has(Cap::CM)
    }

    fn domain_freed(&mut self, domain: DomainRef) {
        self.dids.remove(&domain);
    }

    fn take_faults(
        &mut self,
        mem: &dyn PhysMem,
        lookup: &dyn Fn(SourceId) -> Option<DeviceId>,
    ) -> Result<FaultBatch, Errno> {
        let batch = self.take_page_requests(mem)?;
        let mut faults = Vec::with_capacity(batch.requests.len());
        for req in &batch.requests {
            match lookup(req.rid) {
                Some(dev) => faults.push(Fault::from_vtd_request(dev, req)),
                // A requester the OS does not know: nobody can handle it.
                None if req.lpig => {
                    let code = crate::iopf::ResponseCode::Invalid;
                    let _ = self.page_response(mem, req.rid, req.pasid, req.prgi, code, None);
                }
                None => {}
            }
        }
        Ok(FaultBatch { faults, overflow: batch.overflow })
    }

    fn clear_fault_overflow(&mut self) -> Result<(), Errno> {
        self.clear_prq_overflow()
    }

    fn send_page_response(&mut self, mem: &dyn PhysMem, dev: &DeviceInfo, r: &Response) -> Result<(), Errno> {
        let private = (r.private != [0, 0]).then_some(r.private);
        self.page_response(mem, dev.sid, r.pasid, r.grpid, r.code, private)
    }
}

/// The naturally aligned power-of-two block of pages covering [start, end)
/// as (address, AM), or `None` when it would exceed [`MAX_AM`] (then the
/// caller invalidates everything of the domain or PASID).
fn covering_block(start: u64, end: u64) -> Option<(Iova, u8)> {
    let first = start >> 12;
    let last = end.saturating_sub(1).max(start) >> 12;
    let mut am = 0u8;
    while (first >> am) != (last >> am) {
        am += 1;
        if am > MAX_AM {
            return None;
        }
    }
    Some((Iova::new((first >> am) << (am + 12)), am))
}
