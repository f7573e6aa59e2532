//! [`IommuDriver`] for SMMUv3: the RID domain becomes the STE (abort,
//! bypass, stage 2, or a CD-table STE whose S1DSS follows the RID domain),
//! PASID domains become CDs at their SubstreamID (semantics §3.4, §4.8),
//! and every change goes through the used-bits writer with CFGI + CMD_SYNC
//! after each step. Flushes become TLBI by ASID/VMID and ATC_INV.

use iommu_format::smmuv3::cd::Cd;
use iommu_format::smmuv3::cmd::{Command, TlbiRange};
use iommu_format::smmuv3::ste::{S1Dss, Ste, SteConfig};
use iommu_types::{Pasid, PhysMem, RegisterBus, SourceId, StreamId, SubstreamId};

use super::entry::Words;
use super::{same_cd_leaf, HwAction, Master, SmmuDriver};
use crate::driver::{
    DeviceInfo, DomainConfig, DomainDesc, DomainRef, FaultBatch, FlushTarget, HwInfo, HwInfoData, IommuDriver,
};
use crate::frames::FrameAllocator;
use crate::iopf::Response;
use crate::pasid::DeviceId;
use crate::pgtable::PtFormat;
use crate::Errno;

/// Page count above which a flush invalidates the whole ASID or VMID
/// instead of page by page (Linux uses a similar cut-off).
const MAX_TLBI_PAGES: u64 = 64;
/// MAIR attribute 0: Normal memory, inner and outer write-back
/// read/write-allocate (the attribute every leaf the OS builds uses).
const MAIR: u64 = 0xFF;

/// The ATC_INV that drops every ATC entry of a stream's substream (or of
/// every substream with `ssid` None and `global`), SMMUv3 §4.5.2: SIZE 52
/// covers the whole address space.
fn atc_inv_all(sid: u32, ssid: Option<SubstreamId>) -> Command {
    Command::AtcInv { sid: StreamId(sid), ssid, global: ssid.is_none(), addr: 0, size: 52 }
}

fn s1dss_for(rid: Option<&DomainDesc>) -> Result<S1Dss, Errno> {
    Ok(match rid.map(|d| d.config) {
        None | Some(DomainConfig::Blocked) => S1Dss::Terminate,
        Some(DomainConfig::Identity) => S1Dss::Bypass,
        Some(DomainConfig::FirstStage { .. }) => S1Dss::Substream0,
        // A stage-2-only STE cannot carry a CD table (semantics §3.4).
        Some(DomainConfig::SecondStage { .. } | DomainConfig::Nested { .. }) => return Err(Errno::Inval),
    })
}

impl<B: RegisterBus> SmmuDriver<B> {
    fn id_get(
        map: &mut std::collections::BTreeMap<DomainRef, (u16, u32)>,
        d: DomainRef,
        bits: u32,
    ) -> Result<u16, Errno> {
        if let Some((id, refs)) = map.get_mut(&d) {
            *refs += 1;
            return Ok(*id);
        }
        let used: std::collections::BTreeSet<u16> = map.values().map(|(i, _)| *i).collect();
        // ID 0 is left for streams without a domain of their own.
        let free = (1..(1u32 << bits)).find(|i| !used.contains(&(*i as u16))).ok_or(Errno::NoSpc)? as u16;
        map.insert(d, (free, 1));
        Ok(free)
    }

    /// The ASID of stage-1 domain `d` (private, not shared with a CPU:
    /// CD.ASET = 1), taking a reference.
    fn asid_get(&mut self, d: DomainRef) -> Result<u16, Errno> {
        let bits = if self.caps.asid16 { 16 } else { 8 };
        Self::id_get(&mut self.asids, d, bits)
    }

    fn vmid_get(&mut self, d: DomainRef) -> Result<u16, Errno> {
        let bits = if self.caps.vmid16 { 16 } else { 8 };
        Self::id_get(&mut self.vmids, d, bits)
    }

    /// Drops a reference on `d`'s ASID or VMID; the last one invalidates
    /// everything the TLB holds under it before the ID can be reused.
    fn ids_put(&mut self, mem: &dyn PhysMem, d: &DomainDesc) -> Result<(), Errno> {
        let drop = |map: &mut std::collections::BTreeMap<DomainRef, (u16, u32)>| -> Option<u16> {
            let (id, refs) = map.get_mut(&d.id)?;
            *refs = refs.saturating_sub(1);
            let id = *id;
            (*refs == 0).then(|| {
                map.remove(&d.id);
                id
            })
        };
        match d.config {
            DomainConfig::FirstStage { .. } => {
                if let Some(asid) = drop(&mut self.asids) {
                    self.submit(mem, &[Command::TlbiNhAsid { vmid: 0, asid }])?;
                }
            }
            DomainConfig::SecondStage { .. } => {
                if let Some(vmid) = drop(&mut self.vmids) {
                    self.submit(mem, &[Command::TlbiS12Vmall { vmid }])?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The CD for stage-1 domain `d` (semantics §3.3): TTB0 with T0SZ from
    /// the table's levels, 4K granule, write-back walks, TTB1 disabled,
    /// faults recorded, ASID private, MAIR attribute 0 write-back; stalls
    /// for a stall-model master.
    fn make_cd(&self, d: &DomainDesc, asid: u16, stall: bool) -> Result<Words, Errno> {
        let DomainConfig::FirstStage { root, levels, .. } = d.config else { return Err(Errno::Inval) };
        if !self.caps.s1 || !(3..=4).contains(&levels) {
            return Err(Errno::Inval);
        }
        Ok(Cd::default()
            .with(Cd::T0SZ, 64 - (12 + 9 * levels as u64))
            .with(Cd::IR0, 1)
            .with(Cd::OR0, 1)
            .with(Cd::SH0, 3)
            .with(Cd::EPD1, 1)
            .with(Cd::V, 1)
            .with(Cd::IPS, self.caps.oas)
            .with(Cd::AA64, 1)
            .with(Cd::S, stall as u64)
            .with(Cd::R, 1)
            .with(Cd::A, 1)
            .with(Cd::ASET, 1)
            .with(Cd::ASID, asid as u64)
            .with_in_place(Cd::TTB0, root.raw())
            .with(Cd::MAIR0, MAIR)
            .words())
    }

    /// The STE a master needs now (semantics §3.2, §3.4), with EATS as
    /// given.
    fn make_ste(&self, m: &Master, eats: bool) -> Result<Words, Errno> {
        let rid_s1 = matches!(m.rid.map(|d| d.config), Some(DomainConfig::FirstStage { .. }));
        if rid_s1 || !m.pasids.is_empty() {
            let t = m.cds.as_ref().ok_or(Errno::Inval)?;
            let dss = s1dss_for(m.rid.as_ref())?;
            let mut s = Ste::default()
                .with(Ste::V, 1)
                .with_config(SteConfig::S1)
                .with(Ste::S1FMT, if t.two_level { 2 } else { 0 })
                .with_s1_context_ptr(t.base.raw())
                .with(Ste::S1CDMAX, m.ssid_bits as u64)
                .with(Ste::S1DSS, dss.bits())
                .with(Ste::S1CIR, 1)
                .with(Ste::S1COR, 1)
                .with(Ste::S1CSH, 3)
                .with(Ste::S1STALLD, (self.caps.stall && !m.stall) as u64)
                .with(Ste::EATS, eats as u64);
            if dss == S1Dss::Bypass {
                s.set(Ste::SHCFG, 1);
            }
            return Ok(s.words());
        }
        let base = Ste::default().with(Ste::V, 1);
        Ok(match m.rid.map(|d| (d.id, d.config)) {
            None | Some((_, DomainConfig::Blocked)) => base.with_config(SteConfig::Abort).words(),
            Some((_, DomainConfig::Identity)) => base.with_config(SteConfig::Bypass).with(Ste::SHCFG, 1).words(),
            Some((id, DomainConfig::SecondStage { root, levels })) => {
                if !self.caps.s2 || !(3..=4).contains(&levels) {
                    return Err(Errno::Inval);
                }
                let vmid = self.vmids.get(&id).map(|(v, _)| *v).ok_or(Errno::Inval)?;
                base.with_config(SteConfig::S2)
                    .with(Ste::EATS, eats as u64)
                    .with(Ste::SHCFG, 1)
                    .with(Ste::S2VMID, vmid as u64)
                    .with(Ste::S2T0SZ, 64 - (12 + 9 * levels as u64))
                    // 4K granule: SL0 = 2 starts at level 0, 1 at level 1.
                    .with(Ste::S2SL0, if levels == 4 { 2 } else { 1 })
                    .with(Ste::S2IR0, 1)
                    .with(Ste::S2OR0, 1)
                    .with(Ste::S2SH0, 3)
                    .with(Ste::S2PS, self.caps.oas)
                    .with(Ste::S2AA64, 1)
                    .with(Ste::S2PTW, 1)
                    .with(Ste::S2R, 1)
                    .with_s2ttb(root.raw())
                    .words()
            }
            Some((_, DomainConfig::FirstStage { .. } | DomainConfig::Nested { .. })) => return Err(Errno::Inval),
        })
    }

    /// Whether the master's endpoint should have ATS on: it has ATS, the
    /// SMMU does, and its STE translates.
    fn wants_ats(&self, m: &Master) -> bool {
        let translates = !m.pasids.is_empty()
            || matches!(
                m.rid.map(|d| d.config),
                Some(DomainConfig::FirstStage { .. } | DomainConfig::SecondStage { .. })
            );
        m.info.ats && m.info.pci && self.caps.ats && translates
    }

    /// Writes the STE the master's state calls for, with the ATS ordering
    /// of semantics §4.8: the endpoint's ATS goes off before EATS is
    /// cleared, and on only after EATS is set, each with a full ATC
    /// invalidation.
    fn update_ste(&mut self, mem: &dyn PhysMem, sid: u32) -> Result<(), Errno> {
        let m = self.masters.get(&sid).ok_or(Errno::NoDev)?;
        let want = self.wants_ats(m);
        let was_on = m.ats_on;
        let target = self.make_ste(m, want)?;
        if was_on && !want {
            self.log.push(HwAction::AtsDisable { sid });
            if let Some(m) = self.masters.get_mut(&sid) {
                m.ats_on = false;
            }
        }
        self.write_ste(mem, sid, &target)?;
        if was_on && !want {
            self.submit(mem, &[atc_inv_all(sid, None)])?;
        }
        if want && !was_on {
            self.submit(mem, &[atc_inv_all(sid, None)])?;
            self.log.push(HwAction::AtsEnable { sid });
            if let Some(m) = self.masters.get_mut(&sid) {
                m.ats_on = true;
            }
        }
        Ok(())
    }

    /// Frees the CD table once nothing needs it (no PASID and a RID that
    /// is not stage 1); the STE no longer points at it.
    fn maybe_free_cds(&mut self, frames: &mut dyn FrameAllocator, sid: u32) {
        let idle = self.masters.get(&sid).is_some_and(|m| {
            m.pasids.is_empty() && !matches!(m.rid.map(|d| d.config), Some(DomainConfig::FirstStage { .. }))
        });
        if idle {
            self.free_cd_table(frames, sid);
        }
    }

    /// After CD `ssid` was cleared: frees the CD table once nothing needs
    /// it, else the level-2 table holding `ssid` once none of its CDs is
    /// in use, so that a failed attach, or a detach, leaves no table
    /// memory behind that nothing reaches through a live CD.
    fn release_cds(&mut self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, sid: u32, ssid: u32) {
        self.maybe_free_cds(frames, sid);
        let unused = self.masters.get(&sid).is_some_and(|m| {
            let rid_s1 = matches!(m.rid.map(|d| d.config), Some(DomainConfig::FirstStage { .. }));
            let used = m.pasids.keys().any(|s| same_cd_leaf(*s, ssid)) || (rid_s1 && same_cd_leaf(0, ssid));
            !used
        });
        if unused {
            self.free_cd_leaf(mem, frames, sid, ssid);
        }
    }

    fn set_rid(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        sid: u32,
        new: &DomainDesc,
    ) -> Result<(), Errno> {
        let m = self.masters.get(&sid).ok_or(Errno::NoDev)?;
        let (old, stall, live) = (m.rid, m.stall, !m.pasids.is_empty());
        match new.config {
            DomainConfig::SecondStage { .. } if live => return Err(Errno::Busy),
            DomainConfig::SecondStage { .. } if !self.caps.s2 => return Err(Errno::Inval),
            DomainConfig::FirstStage { .. } if !self.caps.s1 => return Err(Errno::Inval),
            DomainConfig::Nested { .. } => return Err(Errno::Inval),
            _ => {}
        }
        let staged = match new.config {
            DomainConfig::FirstStage { .. } => {
                let asid = self.asid_get(new.id)?;
                self.make_cd(new, asid, stall).and_then(|cd| {
                    self.ensure_cd(mem, frames, sid, 0)?;
                    self.write_cd(mem, sid, 0, &cd)
                })
            }
            DomainConfig::SecondStage { .. } => self.vmid_get(new.id).map(|_| 0),
            _ => Ok(0),
        };
        let result = staged.and_then(|_| {
            if let Some(m) = self.masters.get_mut(&sid) {
                m.rid = Some(*new);
            }
            self.update_ste(mem, sid)
        });
        if let Err(e) = result {
            // Put the old configuration back: CD 0 as it was (the old
            // stage-1 domain's, else cleared once the STE no longer uses
            // it) and the STE.
            if let Some(m) = self.masters.get_mut(&sid) {
                m.rid = old;
            }
            match old.filter(|o| matches!(o.config, DomainConfig::FirstStage { .. })) {
                Some(o) => {
                    if let Some(cd) = self.asids.get(&o.id).and_then(|(a, _)| self.make_cd(&o, *a, stall).ok()) {
                        let _ = self.write_cd(mem, sid, 0, &cd);
                    }
                    let _ = self.update_ste(mem, sid);
                }
                None => {
                    let _ = self.update_ste(mem, sid);
                    if matches!(new.config, DomainConfig::FirstStage { .. }) {
                        let _ = self.write_cd(mem, sid, 0, &[0; 8]);
                    }
                }
            }
            let _ = self.ids_put(mem, new);
            self.release_cds(mem, frames, sid, 0);
            return Err(e);
        }
        // The new domain is in effect: the old one's clean-up cannot be
        // undone, so its steps are retried rather than given up.
        if let Some(old) = old {
            self.retrying(|d| {
                let was_s1 = matches!(old.config, DomainConfig::FirstStage { .. });
                if was_s1 && !matches!(new.config, DomainConfig::FirstStage { .. }) {
                    let _ = d.write_cd(mem, sid, 0, &[0; 8]);
                }
                let _ = d.ids_put(mem, &old);
                if d.masters.get(&sid).is_some_and(|m| m.ats_on) && old.id != new.id {
                    let _ = d.submit(mem, &[atc_inv_all(sid, None)]);
                }
            });
        }
        self.release_cds(mem, frames, sid, 0);
        Ok(())
    }

    fn set_pasid(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        sid: u32,
        ssid: u32,
        new: &DomainDesc,
    ) -> Result<(), Errno> {
        let m = self.masters.get(&sid).ok_or(Errno::NoDev)?;
        if m.ssid_bits == 0 || ssid >> m.ssid_bits != 0 || !self.caps.s1 {
            return Err(Errno::Inval);
        }
        if !matches!(new.config, DomainConfig::FirstStage { .. }) {
            return Err(Errno::Inval);
        }
        s1dss_for(m.rid.as_ref())?;
        // SVA needs a way to resolve faults: PRI (with ATS) or stalls.
        if new.sva && !(m.stall || (m.info.pri && m.info.ats && self.caps.pri)) {
            return Err(Errno::Inval);
        }
        let (stall, old) = (m.stall, m.pasids.get(&ssid).map(|(d, _)| *d));
        let asid = self.asid_get(new.id)?;
        let cd = match self.make_cd(new, asid, stall) {
            Ok(cd) => cd,
            Err(e) => {
                let _ = self.ids_put(mem, new);
                return Err(e);
            }
        };
        let written = self.ensure_cd(mem, frames, sid, ssid).and_then(|_| self.write_cd(mem, sid, ssid, &cd));
        let result = written.and_then(|_| {
            if let Some(m) = self.masters.get_mut(&sid) {
                m.pasids.insert(ssid, (*new, false));
            }
            self.update_ste(mem, sid)
        });
        if let Err(e) = result {
            // Back to the old CD (or none) and the STE that matched it.
            let restore = match old {
                Some(o) => self.asids.get(&o.id).and_then(|(a, _)| self.make_cd(&o, *a, stall).ok()),
                None => Some([0; 8]),
            };
            if let Some(w) = restore {
                let _ = self.write_cd(mem, sid, ssid, &w);
            }
            if let Some(m) = self.masters.get_mut(&sid) {
                match old {
                    Some(o) => m.pasids.insert(ssid, (o, false)),
                    None => m.pasids.remove(&ssid),
                };
            }
            let _ = self.update_ste(mem, sid);
            let _ = self.ids_put(mem, new);
            self.release_cds(mem, frames, sid, ssid);
            return Err(e);
        }
        if let Some(old) = old {
            self.retrying(|d| {
                let _ = d.ids_put(mem, &old);
                if d.masters.get(&sid).is_some_and(|m| m.ats_on) {
                    let sub = SubstreamId::try_new(ssid).ok();
                    let _ = d.submit(mem, &[atc_inv_all(sid, sub)]);
                }
            });
        }
        Ok(())
    }

    /// Removes the domain at `ssid` (semantics §4.8): the CD is cleared
    /// (CFGI_CD + sync), the ATC entries of the SSID invalidated if ATS is
    /// on, the ASID reference dropped; with no SSID left and a RID that is
    /// not stage 1 the STE is rewritten without the CD table, which is
    /// freed. With `fault_ignore` (mm exit) the release CD (EPD0 set,
    /// faults neither recorded nor stalled) replaces it instead, and the
    /// ASID and the SSID's ATC entries are invalidated.
    fn remove_pasid(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        sid: u32,
        ssid: u32,
        fault_ignore: bool,
    ) -> Result<(), Errno> {
        let m = self.masters.get(&sid).ok_or(Errno::NoDev)?;
        let Some((d, released)) = m.pasids.get(&ssid).copied() else { return Ok(()) };
        let ats = m.ats_on;
        let sub = SubstreamId::try_new(ssid).map_err(|_| Errno::Inval)?;
        if fault_ignore {
            if released {
                return Ok(());
            }
            let t = self.masters.get(&sid).and_then(|m| m.cds.as_ref()).ok_or(Errno::NoDev)?;
            let at = Self::cd_addr(t, ssid).ok_or(Errno::Inval)?;
            let mut cd = Cd::from_words(Self::read_words(mem, at)?);
            for f in [Cd::T0SZ, Cd::TG0, Cd::IR0, Cd::OR0, Cd::SH0, Cd::TTB0, Cd::S, Cd::R] {
                cd.set(f, 0);
            }
            cd.set(Cd::EPD0, 1);
            self.write_cd(mem, sid, ssid, &cd.words())?;
            if let Some(m) = self.masters.get_mut(&sid) {
                m.pasids.insert(ssid, (d, true));
            }
            let mut cmds = Vec::new();
            if let Some((asid, _)) = self.asids.get(&d.id) {
                cmds.push(Command::TlbiNhAsid { vmid: 0, asid: *asid });
            }
            if ats {
                cmds.push(atc_inv_all(sid, Some(sub)));
            }
            return self.submit(mem, &cmds);
        }
        self.write_cd(mem, sid, ssid, &[0; 8])?;
        if ats {
            self.submit(mem, &[atc_inv_all(sid, Some(sub))])?;
        }
        if let Some(m) = self.masters.get_mut(&sid) {
            m.pasids.remove(&ssid);
        }
        self.ids_put(mem, &d)?;
        let idle = self.masters.get(&sid).is_some_and(|m| m.pasids.is_empty());
        if idle {
            self.update_ste(mem, sid)?;
        }
        self.release_cds(mem, frames, sid, ssid);
        Ok(())
    }

    /// [`IommuDriver::release_device`]: every SubstreamID and the RID
    /// domain removed, the STE aborting, the CD table freed.
    fn release_master(&mut self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, dev: &DeviceInfo) {
        let sid = dev.sid.raw() as u32;
        let Some(m) = self.masters.get(&sid).cloned() else { return };
        for ssid in m.pasids.keys() {
            let _ = self.remove_pasid(mem, frames, sid, *ssid, false);
        }
        if let Some(m) = self.masters.get_mut(&sid) {
            m.rid = None;
        }
        let _ = self.update_ste(mem, sid);
        if let Some(old) = m.rid {
            let _ = self.ids_put(mem, &old);
        }
        self.free_cd_table(frames, sid);
        self.masters.remove(&sid);
    }

    /// [`IommuDriver::remove_dev_pasid`].
    fn remove_domain(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        dev: &DeviceInfo,
        pasid: Pasid,
        fault_ignore: bool,
    ) {
        let sid = dev.sid.raw() as u32;
        if pasid.raw() == 0 {
            // No RID domain: the STE blocks (aborts, or terminates untagged
            // traffic under a CD table).
            let Some(old) = self.masters.get_mut(&sid).and_then(|m| m.rid.take()) else { return };
            let _ = self.update_ste(mem, sid);
            if matches!(old.config, DomainConfig::FirstStage { .. }) {
                let _ = self.write_cd(mem, sid, 0, &[0; 8]);
            }
            let _ = self.ids_put(mem, &old);
            self.release_cds(mem, frames, sid, 0);
            return;
        }
        // Not repeated as a whole on error: the PASID may already be gone
        // from the master (or its CD released) with the invalidations
        // still owed, so each submission is retried instead (the caller
        // runs this inside `retrying`).
        let _ = self.remove_pasid(mem, frames, sid, pasid.raw(), fault_ignore);
    }
}

impl<B: RegisterBus> IommuDriver for SmmuDriver<B> {
    fn name(&self) -> &'static str {
        "smmuv3"
    }

    /// Makes the master's STE exist (aborting until a domain is attached);
    /// `ssid_bits` from the device's PASID width (semantics §3.1); a
    /// platform device on an SMMU with stalls uses the stall model.
    fn probe_device(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        dev: &DeviceInfo,
    ) -> Result<(), Errno> {
        let sid = dev.sid.raw() as u32;
        if self.masters.contains_key(&sid) {
            return Err(Errno::Busy);
        }
        self.ensure_ste(mem, frames, sid)?;
        let master = Master {
            info: *dev,
            ssid_bits: self.caps.master_ssid_bits(dev.max_pasids),
            stall: !dev.pci && self.caps.stall,
            cds: None,
            rid: None,
            pasids: Default::default(),
            ats_on: false,
        };
        self.masters.insert(sid, master);
        if let Err(e) = self.update_ste(mem, sid) {
            self.masters.remove(&sid);
            return Err(e);
        }
        Ok(())
    }

    fn release_device(&mut self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, dev: &DeviceInfo) {
        self.retrying(|d| d.release_master(mem, frames, dev));
    }

    fn set_dev_pasid(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        dev: &DeviceInfo,
        pasid: Pasid,
        new: &DomainDesc,
        _old: Option<&DomainDesc>,
    ) -> Result<(), Errno> {
        let sid = dev.sid.raw() as u32;
        if pasid.raw() == 0 {
            self.set_rid(mem, frames, sid, new)
        } else {
            self.set_pasid(mem, frames, sid, pasid.raw(), new)
        }
    }

    fn remove_dev_pasid(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        dev: &DeviceInfo,
        pasid: Pasid,
        fault_ignore: bool,
    ) {
        self.retrying(|d| d.remove_domain(mem, frames, dev, pasid, fault_ignore));
    }

    /// TLBI_NH_VA (range with IDR3.RIL) by ASID for stage-1 domains,
    /// TLBI_S2_IPA by VMID for stage-2 ones, the whole ASID/VMID beyond
    /// [`MAX_TLBI_PAGES`]; then ATC_INV for every target with ATS on.
    fn flush_range(
        &mut self,
        mem: &dyn PhysMem,
        domain: &DomainDesc,
        targets: &[FlushTarget],
        start: u64,
        end: u64,
        leaf_only: bool,
    ) -> Result<(), Errno> {
        let first = start >> 12;
        let pages = (end.saturating_sub(1).max(start) >> 12) - first + 1;
        let mut cmds = Vec::new();
        // A range of one page would be TG != 0 with NUM = SCALE = TTL = 0,
        // the reserved combination (§4.4.1.1): single pages go without a
        // range. TTL stays 0 (no level hint): blocks may back the range.
        let ranged = |addr: u64, n: u64| match n {
            1 => TlbiRange::page(addr, leaf_only),
            _ => TlbiRange { addr, leaf: leaf_only, ttl: 0, tg: 1, num: (n - 1) as u8, scale: 0 },
        };
        let per_page = |cmds: &mut Vec<Command>, make: &dyn Fn(TlbiRange) -> Command| {
            if self.caps.ril {
                let mut p = 0;
                while p < pages {
                    let n = (pages - p).min(32);
                    cmds.push(make(ranged((first + p) << 12, n)));
                    p += n;
                }
            } else {
                for p in 0..pages {
                    cmds.push(make(TlbiRange::page((first + p) << 12, leaf_only)));
                }
            }
        };
        match domain.config {
            DomainConfig::FirstStage { .. } => {
                if let Some((asid, _)) = self.asids.get(&domain.id).copied() {
                    if pages > MAX_TLBI_PAGES {
                        cmds.push(Command::TlbiNhAsid { vmid: 0, asid });
                    } else {
                        per_page(&mut cmds, &|range| Command::TlbiNhVa { vmid: 0, asid, range });
                    }
                }
            }
            DomainConfig::SecondStage { .. } => {
                if let Some((vmid, _)) = self.vmids.get(&domain.id).copied() {
                    if pages > MAX_TLBI_PAGES {
                        cmds.push(Command::TlbiS12Vmall { vmid });
                    } else {
                        per_page(&mut cmds, &|range| Command::TlbiS2Ipa { vmid, range });
                    }
                }
            }
            _ => {}
        }
        // The ATC: the naturally aligned block of 2^size pages covering the
        // range (§4.5.2), per (stream, substream).
        let mut size = 0u8;
        while (first >> size) != ((first + pages - 1) >> size) && size < 52 {
            size += 1;
        }
        let addr = (first >> size) << (size as u64 + 12);
        for (dev, pasid) in targets {
            let sid = dev.sid.raw() as u32;
            if !self.masters.get(&sid).is_some_and(|m| m.ats_on) {
                continue;
            }
            let ssid = (pasid.raw() != 0).then(|| SubstreamId::try_new(pasid.raw()).ok()).flatten();
            cmds.push(Command::AtcInv { sid: StreamId(sid), ssid, global: false, addr, size });
        }
        for chunk in cmds.chunks(128) {
            self.submit(mem, chunk)?;
        }
        Ok(())
    }

    /// Semantics §3.4: a stage-2 RID domain cannot sit under a CD table.
    fn check_rid_with_pasids(&self, rid: &DomainDesc, attaching_rid: bool) -> Result<(), Errno> {
        match rid.config {
            DomainConfig::SecondStage { .. } | DomainConfig::Nested { .. } if attaching_rid => Err(Errno::Busy),
            DomainConfig::SecondStage { .. } | DomainConfig::Nested { .. } => Err(Errno::Inval),
            _ => Ok(()),
        }
    }

    fn hw_info(&self) -> HwInfo {
        HwInfo {
            data: HwInfoData::Smmuv3 { idr: self.caps.idr },
            nesting: self.caps.s1 && self.caps.s2,
            pasid: self.caps.ssid_bits > 0 && self.caps.s1,
        }
    }

    /// VMSAv8-64 with 4 KiB granules (SMMUv3 §3.4, Arm ARM D8).
    fn table_format(&self, second_stage: bool, levels: u8) -> PtFormat {
        if second_stage {
            PtFormat::ArmS2 { levels }
        } else {
            PtFormat::ArmS1 { levels }
        }
    }

    /// PRI for PCIe functions (IDR0.PRI), stalls for platform masters when
    /// the SMMU implements the stall model (§3.12.2).
    fn iopf_capable(&self, dev: &DeviceInfo) -> bool {
        (dev.pci && dev.pri && dev.ats && self.caps.pri) || (!dev.pci && self.caps.stall)
    }

    fn caches_not_present(&self) -> bool {
        false
    }

    fn domain_freed(&mut self, domain: DomainRef) {
        // The last detach already invalidated the ID's TLB entries.
        self.asids.remove(&domain);
        self.vmids.remove(&domain);
    }

    fn take_faults(
        &mut self,
        mem: &dyn PhysMem,
        lookup: &dyn Fn(SourceId) -> Option<DeviceId>,
    ) -> Result<FaultBatch, Errno> {
        self.take_iopf(mem, lookup)
    }

    fn clear_fault_overflow(&mut self) -> Result<(), Errno> {
        self.ack_pri_overflow()
    }

    fn send_page_response(&mut self, mem: &dyn PhysMem, dev: &DeviceInfo, r: &Response) -> Result<(), Errno> {
        self.respond(mem, dev.sid.raw() as u32, r)
    }
}
