//! The seed-era guest-SVA API (semantics §1.2 "Legacy", §4.10, §5.11
//! specs 65–69): IOASID-style PASID sets per VM with quotas,
//! `bind_gpasid` / `unbind_gpasid` building nested PASID entries over the
//! device's second stage, and aux domains attached at kernel-chosen PASIDs
//! of a single parent, shared by that parent's mediated devices.
//!
//! Where the 2020 design left questions open, this follows upstream's
//! later answers (§6): a second bind of the same (device, host PASID) is
//! `EBUSY`; unbind always flushes device TLBs and drains; freeing a host
//! PASID that is still bound tears the binding down first, so the value
//! can never be handed out while a device can still use it.

use std::collections::{BTreeMap, BTreeSet};

use iommu_types::{Gpa, Pasid, PhysMem};

use super::Kernel;
use crate::driver::{DomainRef, IommuDriver};
use crate::frames::FrameAllocator;
use crate::iommu::{HandleKind, NestedS1};
use crate::pasid::{DeviceId, PASID_SPACE};
use crate::Errno;

/// A VM's PASID set (IOASID set): the host PASIDs it allocated, bounded
/// by a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IoasidSetId(pub u32);

/// How many sets the kernel holds at most.
pub const MAX_IOASID_SETS: usize = 1024;

#[derive(Debug, Default)]
pub(super) struct IoasidSet {
    quota: u32,
    pasids: BTreeSet<u32>,
    /// Guest PASID → host PASID, for bindings that gave a guest PASID.
    g2h: BTreeMap<u32, u32>,
}

/// The VT-d vendor format of the bind data (`IOMMU_PASID_FORMAT_INTEL_VTD`).
pub const FORMAT_INTEL_VTD: u32 = 1;
/// The size of the bind data this kernel knows (`argsz` must be at least this).
pub const GPASID_BIND_ARGSZ: u32 = 48;

/// Bind-data flags (the VT-d block's `flags` plus the generic GPASID_VAL).
pub mod gpasid_flags {
    /// The guest PASID field is valid.
    pub const GPASID_VAL: u64 = 1 << 0;
    /// Supervisor requests (VT-d SRE).
    pub const SRE: u64 = 1 << 1;
    /// Extended access flag (VT-d EAFE).
    pub const EAFE: u64 = 1 << 2;
    /// Write protect (VT-d WPE).
    pub const WPE: u64 = 1 << 3;
    /// Every flag this kernel knows.
    pub const KNOWN: u64 = GPASID_VAL | SRE | EAFE | WPE;
}

/// `iommu_gpasid_bind_data` as a VMM passes it (semantics §1.2 legacy row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GpasidBindData {
    /// Size the caller filled in.
    pub argsz: u32,
    /// Vendor format.
    pub format: u32,
    /// [`gpasid_flags`].
    pub flags: u64,
    /// Host PASID (allocated by the VMM from its set).
    pub hpasid: u64,
    /// Guest PASID (with `GPASID_VAL`).
    pub gpasid: u64,
    /// Guest first-level root (guest-physical).
    pub gpgd: Gpa,
    /// Guest address width: 48 or 57.
    pub addr_width: u8,
}

impl GpasidBindData {
    /// The bind data for guest PASID `gpasid` (GPASID_VAL set) at host
    /// PASID `hpasid`, first level `s1`.
    pub fn for_guest(hpasid: Pasid, gpasid: Pasid, s1: &NestedS1) -> Self {
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        Self {
            argsz: GPASID_BIND_ARGSZ,
            format: FORMAT_INTEL_VTD,
            flags: gpasid_flags::GPASID_VAL
                | flag(s1.sre, gpasid_flags::SRE)
                | flag(s1.eafe, gpasid_flags::EAFE)
                | flag(s1.wpe, gpasid_flags::WPE),
            hpasid: hpasid.raw() as u64,
            gpasid: gpasid.raw() as u64,
            gpgd: s1.root,
            addr_width: s1.addr_width,
        }
    }
}

/// The first id [`Kernel::add_mdev`] hands out. Ids from here up name
/// mediated devices only: [`Kernel::add_device`] refuses them for
/// physical devices, so the two never collide.
pub const MDEV_ID_BASE: u32 = 0x8000_0000;

/// Mediated devices one parent may have at most (an mdev type's
/// `available_instances` bounds them in Linux; anything user space can
/// make the kernel allocate is bounded here).
pub const MAX_MDEVS_PER_PARENT: usize = 64;

/// An aux domain's attachment (semantics §1.2 aux row): at one PASID of
/// its single parent, shared by the parent's devices that use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AuxAttachment {
    /// The physical device the PASID entry lives in.
    parent: DeviceId,
    /// The PASID, allocated at the first attach, freed with the last user.
    pasid: Pasid,
    /// The devices using it (the parent itself or its mdevs); never empty.
    users: BTreeSet<DeviceId>,
}

/// A guest binding: what `unbind_gpasid` undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GuestBinding {
    set: IoasidSetId,
    nested: DomainRef,
    gpasid: Option<u32>,
}

impl<D: IommuDriver, M: PhysMem, F: FrameAllocator> Kernel<D, M, F> {
    /// Creates a VM's PASID set allowing `quota` host PASIDs.
    ///
    /// # Errors
    /// [`Errno::NoSpc`] beyond [`MAX_IOASID_SETS`].
    pub fn ioasid_set_alloc(&mut self, quota: u32) -> Result<IoasidSetId, Errno> {
        if self.sets.len() >= MAX_IOASID_SETS {
            return Err(Errno::NoSpc);
        }
        let id = (1..).map(IoasidSetId).find(|i| !self.sets.contains_key(i)).ok_or(Errno::NoSpc)?;
        self.sets.insert(id, IoasidSet { quota, ..Default::default() });
        Ok(id)
    }

    /// Allocates a host PASID for the VM from the global space.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] for an unknown set; [`Errno::NoSpc`] at the quota
    /// or when the space is exhausted.
    pub fn ioasid_alloc(&mut self, set: IoasidSetId) -> Result<Pasid, Errno> {
        let s = self.sets.get(&set).ok_or(Errno::NoEnt)?;
        if s.pasids.len() >= s.quota as usize {
            return Err(Errno::NoSpc);
        }
        let p = self.pasids.alloc(PASID_SPACE)?;
        if let Some(s) = self.sets.get_mut(&set) {
            s.pasids.insert(p.raw());
        }
        Ok(p)
    }

    /// The host PASIDs of a set.
    pub fn ioasid_set_pasids(&self, set: IoasidSetId) -> Vec<Pasid> {
        self.sets.get(&set).map_or(Vec::new(), |s| s.pasids.iter().map(|p| Pasid::new_truncate(*p as u64)).collect())
    }

    /// Frees a host PASID of `set` ("free before unbind", spec 68): every
    /// binding still using it is torn down first (flush and drain), then
    /// the value returns to the allocator.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] when the set does not hold it.
    pub fn ioasid_free(&mut self, set: IoasidSetId, pasid: Pasid) -> Result<(), Errno> {
        if !self.sets.get(&set).is_some_and(|s| s.pasids.contains(&pasid.raw())) {
            return Err(Errno::NoEnt);
        }
        let bound: Vec<DeviceId> =
            self.guests.iter().filter(|((_, p), b)| *p == pasid.raw() && b.set == set).map(|((d, _), _)| *d).collect();
        for dev in bound {
            self.unbind_gpasid(dev, pasid)?;
        }
        if let Some(s) = self.sets.get_mut(&set) {
            s.pasids.remove(&pasid.raw());
        }
        let _ = self.pasids.free(pasid);
        Ok(())
    }

    /// Frees a whole set: every binding of every PASID in it is torn down,
    /// every PASID freed.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] for an unknown set.
    pub fn ioasid_set_free(&mut self, set: IoasidSetId) -> Result<(), Errno> {
        let pasids = self.ioasid_set_pasids(set);
        if !self.sets.contains_key(&set) {
            return Err(Errno::NoEnt);
        }
        for p in pasids {
            self.ioasid_free(set, p)?;
        }
        self.sets.remove(&set);
        Ok(())
    }

    /// `intel_svm_bind_gpasid` (specs 65–66): validates the bind data, then
    /// attaches a nested domain at (`dev`, hpasid): first level = the
    /// guest's table (GPA), second level = the device's RID domain, which
    /// must be a nest-parent paging domain (the VM's stage 2).
    ///
    /// # Errors
    /// [`Errno::Inval`] for a wrong format, a short `argsz`, unknown flags,
    /// a host PASID of 0 or ≥ 2^20, a device whose PASID width is not 20
    /// bits, a bad address width or a second level that cannot nest;
    /// [`Errno::OpNotSupp`] for a platform (non-PCI) device;
    /// [`Errno::NoEnt`] when the host PASID is not in `set`;
    /// [`Errno::Busy`] when (device, host PASID) is already bound (the first
    /// binding is untouched); driver errors.
    pub fn bind_gpasid(&mut self, dev: DeviceId, set: IoasidSetId, data: &GpasidBindData) -> Result<(), Errno> {
        if data.format != FORMAT_INTEL_VTD
            || data.argsz < GPASID_BIND_ARGSZ
            || data.flags & !gpasid_flags::KNOWN != 0
            || data.hpasid == 0
            || data.hpasid >= PASID_SPACE as u64
            || (data.flags & gpasid_flags::GPASID_VAL != 0 && (data.gpasid == 0 || data.gpasid >= PASID_SPACE as u64))
        {
            return Err(Errno::Inval);
        }
        let info = self.iommu.device(dev)?;
        if !info.pci {
            return Err(Errno::OpNotSupp);
        }
        if info.max_pasids != PASID_SPACE {
            return Err(Errno::Inval);
        }
        let hpasid = Pasid::new_truncate(data.hpasid);
        if !self.sets.get(&set).is_some_and(|s| s.pasids.contains(&hpasid.raw())) {
            return Err(Errno::NoEnt);
        }
        if self.guests.contains_key(&(dev, hpasid.raw())) {
            return Err(Errno::Busy);
        }
        let gpasid = (data.flags & gpasid_flags::GPASID_VAL != 0).then_some(data.gpasid as u32);
        if let Some(g) = gpasid {
            if self.sets.get(&set).is_some_and(|s| s.g2h.get(&g).is_some_and(|h| *h != hpasid.raw())) {
                return Err(Errno::Busy);
            }
        }
        let parent = self.iommu.rid_domain(dev)?;
        let s1 = NestedS1 {
            root: data.gpgd,
            addr_width: data.addr_width,
            sre: data.flags & gpasid_flags::SRE != 0,
            eafe: data.flags & gpasid_flags::EAFE != 0,
            wpe: data.flags & gpasid_flags::WPE != 0,
        };
        let nested = self.iommu.alloc_nested(parent, s1)?;
        let handle = HandleKind::User(u64::from(set.0) << 32 | u64::from(gpasid.unwrap_or(0)));
        if let Err(e) = self.iommu.attach_dev_pasid(nested, dev, hpasid, Some(handle)) {
            let _ = self.iommu.free_domain(nested);
            return Err(e);
        }
        if let (Some(g), Some(s)) = (gpasid, self.sets.get_mut(&set)) {
            s.g2h.insert(g, hpasid.raw());
        }
        self.guests.insert((dev, hpasid.raw()), GuestBinding { set, nested, gpasid });
        Ok(())
    }

    /// `intel_svm_unbind_gpasid` (spec 67): the nested entry is torn down
    /// with PASID-cache, IOTLB and device-TLB invalidation and a page
    /// request drain whatever the guest flushed, then its domain freed.
    /// The host PASID stays allocated to its set.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] when (device, PASID) is not bound.
    pub fn unbind_gpasid(&mut self, dev: DeviceId, hpasid: Pasid) -> Result<(), Errno> {
        let b = self.guests.remove(&(dev, hpasid.raw())).ok_or(Errno::NoEnt)?;
        self.quiesce_pasid(dev, hpasid);
        self.iommu.detach_dev_pasid(b.nested, dev, hpasid);
        let _ = self.iommu.free_domain(b.nested);
        if let (Some(g), Some(s)) = (b.gpasid, self.sets.get_mut(&b.set)) {
            if !self.guests.values().any(|o| o.set == b.set && o.gpasid == Some(g)) {
                s.g2h.remove(&g);
            }
        }
        Ok(())
    }

    /// The host PASID bound for guest PASID `gpasid` in `set`.
    pub fn gpasid_to_host(&self, set: IoasidSetId, gpasid: Pasid) -> Option<Pasid> {
        self.sets.get(&set)?.g2h.get(&gpasid.raw()).map(|h| Pasid::new_truncate(*h as u64))
    }

    /// The guest PASID a host PASID of `set` was bound with.
    pub fn host_to_gpasid(&self, set: IoasidSetId, hpasid: Pasid) -> Option<Pasid> {
        let s = self.sets.get(&set)?;
        s.g2h.iter().find(|(_, h)| **h == hpasid.raw()).map(|(g, _)| Pasid::new_truncate(*g as u64))
    }

    /// Whether (device, host PASID) is bound to a guest.
    pub fn gpasid_bound(&self, dev: DeviceId, hpasid: Pasid) -> bool {
        self.guests.contains_key(&(dev, hpasid.raw()))
    }

    // ---- aux domains (2019-2022 API, SMMUv3 RFC rules; spec 69) -------

    /// The device whose requester ID `dev`'s DMA carries: an mdev's parent,
    /// or `dev` itself for a physical device.
    fn aux_parent(&self, dev: DeviceId) -> Result<DeviceId, Errno> {
        match self.mdevs.get(&dev) {
            Some(parent) => Ok(*parent),
            None => self.iommu.device(dev).map(|_| dev),
        }
    }

    /// Creates a mediated device under the physical device `parent`
    /// (semantics §1.2 aux row: the mdev world the aux-domain API served).
    /// The mdev has no hardware identity of its own: it DMAs with its
    /// parent's requester ID, tagged with the PASID of the aux domain it
    /// is attached to. Its id is taken from [`MDEV_ID_BASE`] upwards and
    /// never names a physical device.
    ///
    /// # Errors
    /// [`Errno::NoDev`] when `parent` is not a physical device this kernel
    /// knows (an mdev cannot parent another); [`Errno::NoSpc`] beyond
    /// [`MAX_MDEVS_PER_PARENT`] mdevs of `parent`, or when the id range is
    /// exhausted.
    pub fn add_mdev(&mut self, parent: DeviceId) -> Result<DeviceId, Errno> {
        self.iommu.device(parent)?;
        if self.mdevs.values().filter(|p| **p == parent).count() >= MAX_MDEVS_PER_PARENT {
            return Err(Errno::NoSpc);
        }
        let id = (MDEV_ID_BASE..=u32::MAX)
            .map(DeviceId)
            .find(|i| !self.mdevs.contains_key(i) && self.iommu.device(*i).is_err())
            .ok_or(Errno::NoSpc)?;
        self.mdevs.insert(id, parent);
        Ok(id)
    }

    /// Removes a mediated device.
    ///
    /// # Errors
    /// [`Errno::NoDev`] when `mdev` is not an mdev; [`Errno::Busy`] while
    /// it is still a user of an aux domain (detach first).
    pub fn remove_mdev(&mut self, mdev: DeviceId) -> Result<(), Errno> {
        if !self.mdevs.contains_key(&mdev) {
            return Err(Errno::NoDev);
        }
        if self.aux.values().any(|a| a.users.contains(&mdev)) {
            return Err(Errno::Busy);
        }
        self.mdevs.remove(&mdev);
        Ok(())
    }

    /// The parent of mediated device `mdev` (`None` for anything else).
    pub fn mdev_parent(&self, mdev: DeviceId) -> Option<DeviceId> {
        self.mdevs.get(&mdev).copied()
    }

    /// Attaches `domain` to `dev` as an auxiliary domain
    /// (`iommu_aux_attach_device`, semantics §1.2 aux row, spec 69) and
    /// returns the PASID `dev` must tag its DMA with. `dev` is a physical
    /// device or an mdev; either way the attachment lives at its parent
    /// (a physical device is its own parent). The rules of the 2019
    /// SMMUv3 aux-domain RFC, in our words:
    ///
    /// * the first aux attach fixes the domain's mode (aux or normal for
    ///   good) and its single parent, allocates a PASID from the global
    ///   space and attaches the domain at (parent, PASID);
    /// * a later attach from a device under the same parent (another mdev
    ///   of that physical function) shares that attachment: it becomes one
    ///   more user and gets the same PASID, and nothing is written to the
    ///   hardware;
    /// * a device under another parent cannot use the domain: an aux
    ///   domain has exactly one parent.
    ///
    /// # Errors
    /// [`Errno::NoDev`] for an unknown device; [`Errno::Inval`] when the
    /// domain is in normal use (attached at a RID or a PASID other than as
    /// aux); [`Errno::Busy`] when the domain is aux under another parent,
    /// or `dev` already is one of its users; [`Errno::NoSpc`]; attach
    /// errors (the PASID is freed again).
    pub fn aux_attach(&mut self, domain: DomainRef, dev: DeviceId) -> Result<Pasid, Errno> {
        let parent = self.aux_parent(dev)?;
        let info = self.iommu.device(parent)?;
        if let Some(a) = self.aux.get_mut(&domain) {
            // Single parent; one user holds one reference.
            if a.parent != parent || a.users.contains(&dev) {
                return Err(Errno::Busy);
            }
            a.users.insert(dev);
            return Ok(a.pasid);
        }
        if self.normal.contains(&domain) || !self.iommu.domain_attachments(domain).is_empty() {
            return Err(Errno::Inval);
        }
        let pasid = self.pasids.alloc(info.max_pasids)?;
        if let Err(e) = self.iommu.attach_dev_pasid(domain, parent, pasid, None) {
            let _ = self.pasids.free(pasid);
            return Err(e);
        }
        self.aux.insert(domain, AuxAttachment { parent, pasid, users: BTreeSet::from([dev]) });
        Ok(pasid)
    }

    /// The PASID of an aux domain (`iommu_aux_get_pasid`).
    pub fn aux_get_pasid(&self, domain: DomainRef) -> Option<Pasid> {
        self.aux.get(&domain).map(|a| a.pasid)
    }

    /// The devices (physical or mdevs) currently using aux domain
    /// `domain`, in id order.
    pub fn aux_users(&self, domain: DomainRef) -> Vec<DeviceId> {
        self.aux.get(&domain).map_or(Vec::new(), |a| a.users.iter().copied().collect())
    }

    /// Detaches `dev` from aux domain `domain` (`iommu_aux_detach_device`,
    /// semantics §4.8 "Aux domain detach", spec 69). Only the last user's
    /// detach tears the attachment down: the PASID entry is removed from
    /// the parent (on SMMUv3: the CD at the SSID cleared, CFGI_CD,
    /// CMD_SYNC, and with ATS on ATC_INV for that SSID; on VT-d the
    /// device-TLB invalidation for the PASID) and the PASID freed. Earlier
    /// detaches only drop the user; DMA through the PASID keeps working
    /// for the others. The domain stays an aux domain.
    ///
    /// The 2019 RFC review asked what happens when devices attach to or
    /// detach from the domain between the CD write and the ATC
    /// invalidation. In this model there is no such window: every change
    /// of a domain's attachments and every invalidation goes through the
    /// one `&mut` of the IOMMU instance, so the CD clear, CFGI_CD,
    /// CMD_SYNC and ATC_INV of a detach (like the CD write of an attach
    /// and the TLBI + ATC_INV of an unmap) run inside one critical section
    /// of whoever owns the kernel; only devices run concurrently, and
    /// every invalidation has completed before the call returns
    /// (`crates/os/tests/aux_concurrency.rs` checks it under shuttle).
    ///
    /// # Errors
    /// [`Errno::NoEnt`] when `dev` is not a user of `domain` as aux.
    pub fn aux_detach(&mut self, domain: DomainRef, dev: DeviceId) -> Result<(), Errno> {
        let a = self.aux.get_mut(&domain).filter(|a| a.users.contains(&dev)).ok_or(Errno::NoEnt)?;
        a.users.remove(&dev);
        if !a.users.is_empty() {
            return Ok(());
        }
        let (parent, pasid) = (a.parent, a.pasid);
        self.aux.remove(&domain);
        self.iommu.detach_dev_pasid(domain, parent, pasid);
        let _ = self.pasids.free(pasid);
        self.aux_used.insert(domain);
        Ok(())
    }

    /// Attaches `domain` to the RID of `dev` normally; refused for a
    /// domain that has been used as aux (spec 69).
    ///
    /// # Errors
    /// [`Errno::Inval`] for an aux domain; as [`crate::iommu::Iommu::attach_rid`].
    pub fn attach_normal(&mut self, domain: DomainRef, dev: DeviceId) -> Result<(), Errno> {
        if self.aux.contains_key(&domain) || self.aux_used.contains(&domain) {
            return Err(Errno::Inval);
        }
        self.iommu.attach_rid(domain, dev)?;
        self.normal.insert(domain);
        Ok(())
    }
}
