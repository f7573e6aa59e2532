//! The IOMMU core (Linux's `iommu.c` for one IOMMU instance): devices and
//! groups, domains with OS-built I/O page tables, the per-group PASID slots
//! with attach handles, and attach / replace / detach with the errno
//! contract of semantics §1.2 and the lifecycle rules L1, L8, L10–L12.
//!
//! Every operation either succeeds or leaves the observable state (slots,
//! domains, hardware entries, frames) as it was: group-wide operations roll
//! back the members already done, and a failed replace leaves the old
//! attachment in effect.

use std::collections::{BTreeMap, BTreeSet};

use iommu_types::{Gpa, Hpa, Iova, Pasid, Perm, PhysMem};

use crate::driver::{DeviceInfo, DomainConfig, DomainDesc, DomainRef, FlushTarget, IommuDriver};
use crate::frames::FrameAllocator;
use crate::pasid::DeviceId;
use crate::pgtable::{IoPageTable, IotlbGather, PtFormat};
use crate::Errno;

/// An IOMMU group: devices that cannot be isolated from each other and so
/// share every attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u32);

/// A process address space known to the OS (the `mm` of an SVA domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MmId(pub u32);

/// Who attached a PASID, recorded in its attach handle (semantics §1.1:
/// the slot holds a bare domain or a handle, and the fault path finds the
/// owner through the handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandleKind {
    /// An SVA bond of this mm.
    Sva(MmId),
    /// A user-space owner (iommufd-style), with its cookie.
    User(u64),
}

/// What [`Iommu::attach_handle_get`] is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandleType {
    /// Any handle.
    Any,
    /// An SVA handle.
    Sva,
    /// A user handle.
    User,
}

/// An attach handle: the domain a slot holds and who owns the attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttachHandle {
    /// The attached domain.
    pub domain: DomainRef,
    /// The owner.
    pub kind: HandleKind,
}

/// Stage-1 data of a nested domain, as a guest (or the iommufd VT-d
/// `iommu_hwpt_vtd_s1` block) describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NestedS1 {
    /// Guest first-stage root (guest-physical).
    pub root: Gpa,
    /// Guest address width: 48 (4-level) or 57 (5-level).
    pub addr_width: u8,
    /// Supervisor requests enabled.
    pub sre: bool,
    /// Extended accessed flag enabled.
    pub eafe: bool,
    /// Write protect enable.
    pub wpe: bool,
}

/// Kinds of domain (semantics §1.1 type table).
#[derive(Debug)]
pub enum DomainKind {
    /// BLOCKED (one per instance, static).
    Blocked,
    /// IDENTITY (one per instance, static).
    Identity,
    /// PAGING / UNMANAGED with an OS-built table.
    Paging {
        /// The table.
        table: IoPageTable,
        /// May serve as the second stage of nested domains.
        nest_parent: bool,
    },
    /// SVA: a process's CPU page tables.
    Sva {
        /// The process.
        mm: MmId,
        /// Its CPU page-table root.
        cr3: Hpa,
    },
    /// NESTED: a guest first stage over a parent paging domain.
    Nested {
        /// The parent (a nest-parent paging domain).
        parent: DomainRef,
        /// Guest stage-1 data.
        s1: NestedS1,
    },
}

#[derive(Debug)]
struct Domain {
    kind: DomainKind,
    /// Every (device, PASID) it is attached at (PASID 0 = RID).
    attached: BTreeSet<(DeviceId, u32)>,
    /// Nested domains using it as parent.
    children: BTreeSet<u32>,
}

/// What a PASID slot of a group holds (semantics §1.1 `pasid_array`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Taken by an attach in progress: invisible to the fault path (L12).
    Reserved,
    /// Attached: a bare domain or a handle.
    Attached { domain: DomainRef, handle: Option<HandleKind> },
}

#[derive(Debug)]
struct Group {
    members: Vec<DeviceId>,
    rid: DomainRef,
    default: DomainRef,
    owner: Option<(u64, u32)>,
    slots: BTreeMap<u32, Slot>,
    resetting: bool,
}

/// An invalidation obligation: a `map` or `unmap` is finished only when
/// [`Iommu::flush`] has invalidated the range in every IOMMU cache and
/// device TLB that can hold it; table pages an unmap emptied are freed
/// only then.
#[must_use = "a mapping change is complete only after Iommu::flush"]
#[derive(Debug)]
pub struct Flush {
    domain: DomainRef,
    start: u64,
    end: u64,
    kind: FlushKind,
}

#[derive(Debug)]
enum FlushKind {
    /// New mappings: only IOMMUs that cache not-present entries need it.
    Map,
    /// Removed mappings, with the table pages to free afterwards.
    Unmap(IotlbGather),
}

impl Flush {
    /// The input range [start, end) to invalidate.
    pub fn range(&self) -> (u64, u64) {
        (self.start, self.end)
    }
}

/// How many domains one instance holds at most (anything user space or a
/// guest can make the host allocate is bounded).
pub const MAX_DOMAINS: usize = 1 << 16;

/// The IOMMU core for one IOMMU instance driven by `D`, with the memory
/// its tables live in and the frames it allocates them from.
#[derive(Debug)]
pub struct Iommu<D, M, F> {
    instance: u16,
    driver: D,
    mem: M,
    frames: F,
    devices: BTreeMap<DeviceId, (DeviceInfo, GroupId)>,
    groups: BTreeMap<GroupId, Group>,
    domains: BTreeMap<u32, Domain>,
    next_domain: u32,
}

const BLOCKED: u32 = 0;
const IDENTITY: u32 = 1;

impl<D: IommuDriver, M: PhysMem, F: FrameAllocator> Iommu<D, M, F> {
    /// A core over a probed driver. `instance` tells its domains apart
    /// from those of other instances.
    pub fn new(instance: u16, driver: D, mem: M, frames: F) -> Self {
        let mut domains = BTreeMap::new();
        for (i, kind) in [(BLOCKED, DomainKind::Blocked), (IDENTITY, DomainKind::Identity)] {
            domains.insert(i, Domain { kind, attached: BTreeSet::new(), children: BTreeSet::new() });
        }
        Self {
            instance,
            driver,
            mem,
            frames,
            devices: BTreeMap::new(),
            groups: BTreeMap::new(),
            domains,
            next_domain: 2,
        }
    }

    /// Takes the core apart (instance, driver, memory, frames), e.g. to
    /// wrap its driver; only meaningful before any device was added.
    pub fn into_parts(self) -> (u16, D, M, F) {
        (self.instance, self.driver, self.mem, self.frames)
    }

    /// The driver.
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The driver, mutably (tests inject faults through it).
    pub fn driver_mut(&mut self) -> &mut D {
        &mut self.driver
    }

    /// The driver and the memory together.
    pub fn driver_and_mem(&mut self) -> (&mut D, &M) {
        (&mut self.driver, &self.mem)
    }

    /// The memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// The frame allocator.
    pub fn frames(&self) -> &F {
        &self.frames
    }

    /// The frame allocator, mutably.
    pub fn frames_mut(&mut self) -> &mut F {
        &mut self.frames
    }

    /// Memory and frames together (for code that builds tables, e.g. mms).
    pub fn mem_frames(&mut self) -> (&M, &mut F) {
        (&self.mem, &mut self.frames)
    }

    /// The static blocked domain.
    pub fn blocked_domain(&self) -> DomainRef {
        self.dref(BLOCKED)
    }

    /// The static identity domain.
    pub fn identity_domain(&self) -> DomainRef {
        self.dref(IDENTITY)
    }

    fn dref(&self, index: u32) -> DomainRef {
        DomainRef { instance: self.instance, index }
    }

    fn domain(&self, d: DomainRef) -> Result<&Domain, Errno> {
        if d.instance != self.instance {
            return Err(Errno::Inval);
        }
        self.domains.get(&d.index).ok_or(Errno::NoEnt)
    }

    /// The device's description.
    ///
    /// # Errors
    /// [`Errno::NoDev`] for an unknown device.
    pub fn device(&self, dev: DeviceId) -> Result<DeviceInfo, Errno> {
        self.devices.get(&dev).map(|(i, _)| *i).ok_or(Errno::NoDev)
    }

    /// Every device added.
    pub fn devices(&self) -> impl Iterator<Item = DeviceInfo> + '_ {
        self.devices.values().map(|(i, _)| *i)
    }

    /// The device with requester ID `sid`, if known.
    pub fn device_by_sid(&self, sid: iommu_types::SourceId) -> Option<DeviceId> {
        self.devices.values().find(|(i, _)| i.sid == sid).map(|(i, _)| i.id)
    }

    /// The group of `dev`.
    ///
    /// # Errors
    /// [`Errno::NoDev`].
    pub fn group_of(&self, dev: DeviceId) -> Result<GroupId, Errno> {
        self.devices.get(&dev).map(|(_, g)| *g).ok_or(Errno::NoDev)
    }

    /// The group's members.
    pub fn group_members(&self, group: GroupId) -> Vec<DeviceId> {
        self.groups.get(&group).map(|g| g.members.clone()).unwrap_or_default()
    }

    /// The driver's view of domain `d`.
    ///
    /// # Errors
    /// [`Errno::Inval`] for another instance's domain, [`Errno::NoEnt`].
    pub fn domain_desc(&self, d: DomainRef) -> Result<DomainDesc, Errno> {
        let dom = self.domain(d)?;
        let config = match &dom.kind {
            DomainKind::Blocked => DomainConfig::Blocked,
            DomainKind::Identity => DomainConfig::Identity,
            DomainKind::Paging { table, .. } => match table.format() {
                PtFormat::SecondStage { levels } | PtFormat::ArmS2 { levels } => {
                    DomainConfig::SecondStage { root: table.root(), levels }
                }
                PtFormat::FirstStage { levels } | PtFormat::ArmS1 { levels } => {
                    DomainConfig::FirstStage { root: table.root(), levels, supervisor: false }
                }
            },
            DomainKind::Sva { cr3, .. } => DomainConfig::FirstStage { root: *cr3, levels: 4, supervisor: false },
            DomainKind::Nested { parent, s1 } => {
                let (ss_root, ss_levels) = match &self.domain(*parent)?.kind {
                    DomainKind::Paging { table, .. } => match table.format() {
                        PtFormat::SecondStage { levels } | PtFormat::ArmS2 { levels } => (table.root(), levels),
                        PtFormat::FirstStage { .. } | PtFormat::ArmS1 { .. } => return Err(Errno::Inval),
                    },
                    _ => return Err(Errno::Inval),
                };
                DomainConfig::Nested {
                    fs_root: s1.root,
                    fs_levels: if s1.addr_width == 57 { 5 } else { 4 },
                    sre: s1.sre,
                    eafe: s1.eafe,
                    wpe: s1.wpe,
                    ss_root,
                    ss_levels,
                    parent: *parent,
                }
            }
        };
        Ok(DomainDesc { id: d, config, sva: matches!(dom.kind, DomainKind::Sva { .. }) })
    }

    /// What kind of domain `d` is.
    ///
    /// # Errors
    /// As [`Iommu::domain_desc`].
    pub fn domain_kind(&self, d: DomainRef) -> Result<&DomainKind, Errno> {
        Ok(&self.domain(d)?.kind)
    }

    /// Where `d` is attached: (device, PASID) pairs, PASID 0 for the RID.
    pub fn domain_attachments(&self, d: DomainRef) -> Vec<(DeviceId, Pasid)> {
        self.domain(d)
            .map(|dom| dom.attached.iter().map(|(dev, p)| (*dev, Pasid::new_truncate(*p as u64))).collect())
            .unwrap_or_default()
    }

    /// Domains allocated (besides the static blocked and identity ones).
    pub fn domain_count(&self) -> usize {
        self.domains.len() - 2
    }

    // ---- devices -------------------------------------------------------

    /// Adds a device to `group` (created on first use, with the identity
    /// domain as its default), sets it up in the driver and attaches the
    /// group's current RID domain to it.
    ///
    /// # Errors
    /// [`Errno::Exist`] for a device already added or a requester ID in
    /// use; [`Errno::Busy`] when the group is owned or has PASIDs attached
    /// (a new member could not follow them); driver errors.
    pub fn add_device(&mut self, info: DeviceInfo, group: GroupId) -> Result<(), Errno> {
        if self.devices.contains_key(&info.id) || self.device_by_sid(info.sid).is_some() {
            return Err(Errno::Exist);
        }
        let rid = match self.groups.get(&group) {
            Some(g) if g.owner.is_some() || !g.slots.is_empty() || g.resetting => return Err(Errno::Busy),
            Some(g) => g.rid,
            None => self.identity_domain(),
        };
        let desc = self.domain_desc(rid)?;
        self.driver.probe_device(&self.mem, &mut self.frames, &info)?;
        if !matches!(desc.config, DomainConfig::Blocked) {
            if let Err(e) = self.driver.set_dev_pasid(&self.mem, &mut self.frames, &info, Pasid::ZERO, &desc, None) {
                self.driver.release_device(&self.mem, &mut self.frames, &info);
                return Err(e);
            }
        }
        self.devices.insert(info.id, (info, group));
        let g = self.groups.entry(group).or_insert_with(|| Group {
            members: Vec::new(),
            rid,
            default: rid,
            owner: None,
            slots: BTreeMap::new(),
            resetting: false,
        });
        g.members.push(info.id);
        if let Some(d) = self.domains.get_mut(&rid.index) {
            d.attached.insert((info.id, 0));
        }
        Ok(())
    }

    /// Removes a device (semantics L7): its group must have no PASID
    /// attached while it is PASID-capable ([`Errno::Busy`]); its RID entry
    /// is torn down and the driver forgets it. An emptied group is deleted.
    ///
    /// # Errors
    /// [`Errno::NoDev`], [`Errno::Busy`].
    pub fn remove_device(&mut self, dev: DeviceId) -> Result<(), Errno> {
        let (gid, group) = self.group(dev)?;
        let info = self.device(dev)?;
        if info.max_pasids > 0 && group.slots.values().any(|s| matches!(s, Slot::Attached { .. })) {
            return Err(Errno::Busy);
        }
        let rid = group.rid;
        if !group.resetting && !matches!(self.domain_desc(rid)?.config, DomainConfig::Blocked) {
            self.driver.remove_dev_pasid(&self.mem, &mut self.frames, &info, Pasid::ZERO, false);
        }
        self.driver.release_device(&self.mem, &mut self.frames, &info);
        if let Some(d) = self.domains.get_mut(&rid.index) {
            d.attached.remove(&(dev, 0));
        }
        self.devices.remove(&dev);
        if let Some(g) = self.groups.get_mut(&gid) {
            g.members.retain(|m| *m != dev);
            if g.members.is_empty() {
                self.groups.remove(&gid);
            }
        }
        Ok(())
    }

    fn group(&self, dev: DeviceId) -> Result<(GroupId, &Group), Errno> {
        let g = self.group_of(dev)?;
        self.groups.get(&g).map(|grp| (g, grp)).ok_or(Errno::NoDev)
    }

    fn members_info(&self, group: &Group) -> Vec<DeviceInfo> {
        group.members.iter().filter_map(|m| self.devices.get(m).map(|(i, _)| *i)).collect()
    }

    // ---- domains -------------------------------------------------------

    fn insert_domain(&mut self, kind: DomainKind) -> Result<DomainRef, Errno> {
        if self.domains.len() >= MAX_DOMAINS + 2 {
            return Err(Errno::NoSpc);
        }
        let mut index = self.next_domain;
        while self.domains.contains_key(&index) || index < 2 {
            index = index.wrapping_add(1);
        }
        self.next_domain = index.wrapping_add(1);
        self.domains.insert(index, Domain { kind, attached: BTreeSet::new(), children: BTreeSet::new() });
        Ok(self.dref(index))
    }

    /// Allocates a paging domain with an empty table of `format`.
    /// `nest_parent` lets it serve as the second stage of nested domains
    /// (a second-stage format only: VT-d second stage or Arm stage 2).
    ///
    /// # Errors
    /// [`Errno::Inval`] for a first-stage (VT-d or Arm) nest parent, bad
    /// levels, or a format of the other architecture than the driver's
    /// [`IommuDriver::table_format`] (tables the IOMMU cannot walk);
    /// [`Errno::NoMem`], [`Errno::NoSpc`] beyond [`MAX_DOMAINS`].
    pub fn alloc_paging(&mut self, format: PtFormat, nest_parent: bool) -> Result<DomainRef, Errno> {
        if nest_parent && !matches!(format, PtFormat::SecondStage { .. } | PtFormat::ArmS2 { .. }) {
            return Err(Errno::Inval);
        }
        if format.is_arm() != self.driver.table_format(false, 4).is_arm() {
            return Err(Errno::Inval);
        }
        if self.domains.len() >= MAX_DOMAINS + 2 {
            return Err(Errno::NoSpc);
        }
        let table = IoPageTable::new(&self.mem, &mut self.frames, format)?;
        self.insert_domain(DomainKind::Paging { table, nest_parent })
    }

    /// Allocates an SVA domain over the CPU page tables at `cr3` of `mm`.
    ///
    /// # Errors
    /// [`Errno::NoSpc`] beyond [`MAX_DOMAINS`].
    pub fn alloc_sva(&mut self, mm: MmId, cr3: Hpa) -> Result<DomainRef, Errno> {
        self.insert_domain(DomainKind::Sva { mm, cr3 })
    }

    /// Allocates a nested domain over `parent`.
    ///
    /// # Errors
    /// [`Errno::Inval`] when the parent is not a nest-parent paging domain
    /// of this instance or the address width is neither 48 nor 57
    /// (semantics §1.3 nested HWPT_ALLOC).
    pub fn alloc_nested(&mut self, parent: DomainRef, s1: NestedS1) -> Result<DomainRef, Errno> {
        if !matches!(self.domain(parent)?.kind, DomainKind::Paging { nest_parent: true, .. }) {
            return Err(Errno::Inval);
        }
        if s1.addr_width != 48 && s1.addr_width != 57 || s1.root.raw() & 0xFFF != 0 {
            return Err(Errno::Inval);
        }
        self.driver.check_nested_s1(&s1)?;
        let d = self.insert_domain(DomainKind::Nested { parent, s1 })?;
        if let Some(p) = self.domains.get_mut(&parent.index) {
            p.children.insert(d.index);
        }
        Ok(d)
    }

    /// Frees a domain.
    ///
    /// # Errors
    /// [`Errno::Busy`] while it is attached anywhere or is the parent of a
    /// nested domain (semantics L9), or for the static domains.
    pub fn free_domain(&mut self, d: DomainRef) -> Result<(), Errno> {
        let dom = self.domain(d)?;
        if d.index < 2 || !dom.attached.is_empty() || !dom.children.is_empty() {
            return Err(Errno::Busy);
        }
        let Some(dom) = self.domains.remove(&d.index) else { return Err(Errno::NoEnt) };
        match dom.kind {
            DomainKind::Paging { table, .. } => table.destroy(&self.mem, &mut self.frames),
            DomainKind::Nested { parent, .. } => {
                if let Some(p) = self.domains.get_mut(&parent.index) {
                    p.children.remove(&d.index);
                }
            }
            _ => {}
        }
        self.driver.domain_freed(d);
        Ok(())
    }

    /// Maps [`iova`, `iova + len`) to [`pa`, ...) in paging domain `d`
    /// (all or nothing). First-stage tables get user-accessible leaves (the
    /// device's untagged and non-privileged requests use them).
    ///
    /// # Errors
    /// [`Errno::Inval`] for a non-paging domain or a bad range,
    /// [`Errno::Exist`] over an existing mapping, [`Errno::NoMem`].
    pub fn map(&mut self, d: DomainRef, iova: Iova, pa: Hpa, len: u64, perm: Perm) -> Result<Flush, Errno> {
        let (mem, frames) = (&self.mem, &mut self.frames);
        let table = match self.domains.get_mut(&d.index).map(|x| &mut x.kind) {
            Some(DomainKind::Paging { table, .. }) if d.instance == self.instance => table,
            _ => return Err(Errno::Inval),
        };
        table.map_range(mem, frames, iova, pa, len, perm, true)?;
        let end = iova.raw().saturating_add(len);
        Ok(Flush { domain: d, start: iova.raw(), end, kind: FlushKind::Map })
    }

    /// Unmaps [`iova`, `iova + len`) in paging domain `d`.
    ///
    /// # Errors
    /// [`Errno::Inval`] for a non-paging domain or a range splitting a
    /// large page.
    pub fn unmap(&mut self, d: DomainRef, iova: Iova, len: u64) -> Result<Flush, Errno> {
        let mem = &self.mem;
        let table = match self.domains.get_mut(&d.index).map(|x| &mut x.kind) {
            Some(DomainKind::Paging { table, .. }) if d.instance == self.instance => table,
            _ => return Err(Errno::Inval),
        };
        let gather = table.unmap(mem, iova, len)?;
        let end = iova.raw().saturating_add(len);
        Ok(Flush { domain: d, start: iova.raw(), end, kind: FlushKind::Unmap(gather) })
    }

    /// Looks `iova` up in paging domain `d` (software walk).
    pub fn iova_to_phys(&self, d: DomainRef, iova: Iova) -> Option<Hpa> {
        match &self.domain(d).ok()?.kind {
            DomainKind::Paging { table, .. } => table.lookup(&self.mem, iova).map(|(pa, _, _)| pa),
            _ => None,
        }
    }

    /// Where translations of `d` may be cached: its own attachments and
    /// those of nested domains over it.
    fn flush_targets(&self, d: DomainRef) -> Vec<(DomainDesc, Vec<FlushTarget>)> {
        let mut out = Vec::new();
        let Ok(dom) = self.domain(d) else { return out };
        let Ok(own) = self.domain_desc(d) else { return out };
        let mut doms = vec![d];
        doms.extend(dom.children.iter().map(|c| self.dref(*c)));
        // Nested children cache the parent's second stage too: they are
        // flushed as the parent is (an address range of the parent's input).
        for x in doms {
            let Ok(xd) = self.domain(x) else { continue };
            let desc = own;
            let targets: Vec<FlushTarget> = xd
                .attached
                .iter()
                .filter_map(|(dev, p)| self.devices.get(dev).map(|(i, _)| (*i, Pasid::new_truncate(*p as u64))))
                .collect();
            if !targets.is_empty() {
                out.push((desc, targets));
            }
        }
        out
    }

    /// Discharges an obligation: invalidates the range wherever the domain
    /// is attached (semantics §4.6-style, per driver), then frees the table
    /// pages an unmap emptied.
    ///
    /// # Errors
    /// Queue errors; the table pages are then kept (leaked rather than
    /// reused while possibly cached) and the error returned.
    pub fn flush(&mut self, f: Flush) -> Result<(), Errno> {
        let needed = match &f.kind {
            FlushKind::Map => self.driver.caches_not_present(),
            FlushKind::Unmap(g) => !g.is_empty(),
        };
        let leaf_only = match &f.kind {
            FlushKind::Map => true,
            FlushKind::Unmap(g) => g.leaf_only(),
        };
        if needed {
            for (desc, targets) in self.flush_targets(f.domain) {
                self.driver.flush_range(&self.mem, &desc, &targets, f.start, f.end, leaf_only)?;
            }
        }
        if let FlushKind::Unmap(g) = f.kind {
            g.complete(&mut self.frames);
        }
        Ok(())
    }

    /// Invalidates [`start`, `end`) of domain `d` wherever it is attached
    /// (SVA mm notifier: CPU page tables changed).
    ///
    /// # Errors
    /// Queue errors.
    pub fn flush_domain_range(&mut self, d: DomainRef, start: u64, end: u64) -> Result<(), Errno> {
        for (desc, targets) in self.flush_targets(d) {
            self.driver.flush_range(&self.mem, &desc, &targets, start, end, false)?;
        }
        Ok(())
    }

    // ---- PASID attach / replace / detach (semantics §1.2, §5.2) -------

    fn check_pasid_attach(&self, d: DomainRef, dev: DeviceId, pasid: Pasid) -> Result<GroupId, Errno> {
        let (gid, group) = self.group(dev)?;
        let dom = self.domain(d)?;
        if pasid.raw() == 0 {
            return Err(Errno::Inval);
        }
        if matches!(dom.kind, DomainKind::Blocked) {
            return Err(Errno::OpNotSupp);
        }
        if group.resetting {
            return Err(Errno::Busy);
        }
        let members = self.members_info(group);
        if members.iter().any(|m| m.max_pasids > 0 && pasid.raw() >= m.max_pasids)
            || !members.iter().any(|m| m.max_pasids > 0)
        {
            return Err(Errno::Inval);
        }
        Ok(gid)
    }

    /// Attaches `d` at `pasid` of `dev`'s group (`iommu_attach_device_pasid`):
    /// the slot is reserved (invisible to faults), every PASID-capable
    /// member is programmed, and only then is the slot published, holding
    /// `handle` if given. A failure on any member rolls back the members
    /// done and releases the slot.
    ///
    /// # Errors
    /// [`Errno::NoDev`]; [`Errno::Inval`] for PASID 0, another instance's
    /// domain, a PASID beyond a member's `max_pasids`, or a group without
    /// PASID support; [`Errno::OpNotSupp`] for the blocked domain;
    /// [`Errno::Busy`] during reset or when the slot is occupied; driver
    /// errors.
    pub fn attach_dev_pasid(
        &mut self,
        d: DomainRef,
        dev: DeviceId,
        pasid: Pasid,
        handle: Option<HandleKind>,
    ) -> Result<(), Errno> {
        let gid = self.check_pasid_attach(d, dev, pasid)?;
        let desc = self.domain_desc(d)?;
        let rid = self.domain_desc(self.groups.get(&gid).ok_or(Errno::NoDev)?.rid)?;
        self.driver.check_rid_with_pasids(&rid, false)?;
        let group = self.groups.get_mut(&gid).ok_or(Errno::NoDev)?;
        if group.slots.contains_key(&pasid.raw()) {
            return Err(Errno::Busy);
        }
        group.slots.insert(pasid.raw(), Slot::Reserved);
        let members: Vec<DeviceInfo> = self.members_info(&self.groups[&gid]);
        let mut done = Vec::new();
        for m in members.iter().filter(|m| m.max_pasids > 0) {
            match self.driver.set_dev_pasid(&self.mem, &mut self.frames, m, pasid, &desc, None) {
                Ok(()) => done.push(*m),
                Err(e) => {
                    for m in done {
                        self.driver.remove_dev_pasid(&self.mem, &mut self.frames, &m, pasid, false);
                    }
                    if let Some(g) = self.groups.get_mut(&gid) {
                        g.slots.remove(&pasid.raw());
                    }
                    return Err(e);
                }
            }
        }
        if let Some(g) = self.groups.get_mut(&gid) {
            g.slots.insert(pasid.raw(), Slot::Attached { domain: d, handle });
        }
        if let Some(dom) = self.domains.get_mut(&d.index) {
            dom.attached.extend(done.iter().map(|m| (m.id, pasid.raw())));
        }
        Ok(())
    }

    /// Replaces the domain at `pasid` (`iommu_replace_device_pasid`). With
    /// the same domain only the handle changes. On any failure the old
    /// domain and handle stay fully in effect (semantics L8).
    ///
    /// # Errors
    /// As attach, plus [`Errno::Inval`] when nothing is attached there.
    pub fn replace_dev_pasid(
        &mut self,
        d: DomainRef,
        dev: DeviceId,
        pasid: Pasid,
        handle: HandleKind,
    ) -> Result<(), Errno> {
        let gid = self.check_pasid_attach(d, dev, pasid)?;
        let Some(Slot::Attached { domain: old, handle: old_handle }) =
            self.groups.get(&gid).and_then(|g| g.slots.get(&pasid.raw())).copied()
        else {
            return Err(Errno::Inval);
        };
        if old_handle == Some(handle) && old == d {
            return Err(Errno::Inval);
        }
        if old != d {
            let new_desc = self.domain_desc(d)?;
            let old_desc = self.domain_desc(old)?;
            let members: Vec<DeviceInfo> = self.members_info(&self.groups[&gid]);
            let mut done = Vec::new();
            for m in members.iter().filter(|m| m.max_pasids > 0) {
                match self.driver.set_dev_pasid(&self.mem, &mut self.frames, m, pasid, &new_desc, Some(&old_desc)) {
                    Ok(()) => done.push(*m),
                    Err(e) => {
                        for m in done {
                            // Best effort: the driver restores old on its own errors.
                            let _ = self.driver.set_dev_pasid(
                                &self.mem,
                                &mut self.frames,
                                &m,
                                pasid,
                                &old_desc,
                                Some(&new_desc),
                            );
                        }
                        return Err(e);
                    }
                }
            }
            if let Some(o) = self.domains.get_mut(&old.index) {
                for m in &done {
                    o.attached.remove(&(m.id, pasid.raw()));
                }
            }
            if let Some(n) = self.domains.get_mut(&d.index) {
                n.attached.extend(done.iter().map(|m| (m.id, pasid.raw())));
            }
        }
        if let Some(g) = self.groups.get_mut(&gid) {
            g.slots.insert(pasid.raw(), Slot::Attached { domain: d, handle: Some(handle) });
        }
        Ok(())
    }

    /// Detaches `d` from `pasid` (`iommu_detach_device_pasid`): every
    /// member's entry is torn down with flushes and drain, the slot erased.
    /// A mismatching domain or an empty slot is ignored (the call is void).
    pub fn detach_dev_pasid(&mut self, d: DomainRef, dev: DeviceId, pasid: Pasid) {
        let Ok((gid, group)) = self.group(dev) else { return };
        if !matches!(group.slots.get(&pasid.raw()), Some(Slot::Attached { domain, .. }) if *domain == d) {
            return;
        }
        let members = self.members_info(group);
        let resetting = group.resetting;
        for m in members.iter().filter(|m| m.max_pasids > 0) {
            if !resetting {
                self.driver.remove_dev_pasid(&self.mem, &mut self.frames, m, pasid, false);
            }
            if let Some(dom) = self.domains.get_mut(&d.index) {
                dom.attached.remove(&(m.id, pasid.raw()));
            }
        }
        if let Some(g) = self.groups.get_mut(&gid) {
            g.slots.remove(&pasid.raw());
        }
    }

    /// Makes every member's entry at `pasid` block silently (mm exit,
    /// semantics §4.5); the slot and bookkeeping stay for the later detach.
    pub fn block_dev_pasid_silently(&mut self, dev: DeviceId, pasid: Pasid) {
        let Ok((_, group)) = self.group(dev) else { return };
        for m in self.members_info(group).iter().filter(|m| m.max_pasids > 0) {
            self.driver.remove_dev_pasid(&self.mem, &mut self.frames, m, pasid, true);
        }
    }

    /// The attach handle at (`dev`'s group, `pasid`)
    /// (`iommu_attach_handle_get`; PASID 0 = the RID slot is not tracked
    /// here).
    ///
    /// # Errors
    /// [`Errno::NoEnt`] for an empty or reserved slot (L12) or a bare
    /// domain; [`Errno::Busy`] for a handle of another type.
    pub fn attach_handle_get(&self, dev: DeviceId, pasid: Pasid, ty: HandleType) -> Result<AttachHandle, Errno> {
        let (_, group) = self.group(dev).map_err(|_| Errno::NoEnt)?;
        match group.slots.get(&pasid.raw()) {
            Some(Slot::Attached { domain, handle: Some(kind) }) => {
                let ok = matches!(
                    (ty, kind),
                    (HandleType::Any, _)
                        | (HandleType::Sva, HandleKind::Sva(_))
                        | (HandleType::User, HandleKind::User(_))
                );
                if ok {
                    Ok(AttachHandle { domain: *domain, kind: *kind })
                } else {
                    Err(Errno::Busy)
                }
            }
            _ => Err(Errno::NoEnt),
        }
    }

    /// The domain at (`dev`'s group, `pasid`), if attached (handle or not).
    pub fn pasid_domain(&self, dev: DeviceId, pasid: Pasid) -> Option<DomainRef> {
        let (_, group) = self.group(dev).ok()?;
        match group.slots.get(&pasid.raw()) {
            Some(Slot::Attached { domain, .. }) => Some(*domain),
            _ => None,
        }
    }

    /// Every attached PASID of `dev`'s group.
    pub fn attached_pasids(&self, dev: DeviceId) -> Vec<Pasid> {
        let Ok((_, group)) = self.group(dev) else { return Vec::new() };
        group
            .slots
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Attached { .. }))
            .map(|(p, _)| Pasid::new_truncate(*p as u64))
            .collect()
    }

    // ---- RID attach ----------------------------------------------------

    /// The domain the RID of `dev`'s group translates through.
    ///
    /// # Errors
    /// [`Errno::NoDev`].
    pub fn rid_domain(&self, dev: DeviceId) -> Result<DomainRef, Errno> {
        Ok(self.group(dev)?.1.rid)
    }

    fn set_rid(&mut self, gid: GroupId, d: DomainRef) -> Result<(), Errno> {
        let group = self.groups.get(&gid).ok_or(Errno::NoDev)?;
        let old = group.rid;
        if old == d {
            return Ok(());
        }
        let new_desc = self.domain_desc(d)?;
        let old_desc = self.domain_desc(old)?;
        if group.slots.values().any(|s| matches!(s, Slot::Attached { .. })) {
            self.driver.check_rid_with_pasids(&new_desc, true)?;
        }
        let members = self.members_info(group);
        let mut done = Vec::new();
        for m in &members {
            if let Err(e) = self.reprogram_rid(m, &new_desc, &old_desc) {
                for m in done.iter().rev() {
                    let _ = self.reprogram_rid(m, &old_desc, &new_desc);
                }
                return Err(e);
            }
            done.push(*m);
        }
        for m in &members {
            if let Some(o) = self.domains.get_mut(&old.index) {
                o.attached.remove(&(m.id, 0));
            }
            if let Some(n) = self.domains.get_mut(&d.index) {
                n.attached.insert((m.id, 0));
            }
        }
        if let Some(g) = self.groups.get_mut(&gid) {
            g.rid = d;
        }
        Ok(())
    }

    fn reprogram_rid(&mut self, m: &DeviceInfo, to: &DomainDesc, from: &DomainDesc) -> Result<(), Errno> {
        match (to.config, from.config) {
            (DomainConfig::Blocked, _) => {
                self.driver.remove_dev_pasid(&self.mem, &mut self.frames, m, Pasid::ZERO, false);
                Ok(())
            }
            (_, DomainConfig::Blocked) => {
                self.driver.set_dev_pasid(&self.mem, &mut self.frames, m, Pasid::ZERO, to, None)
            }
            _ => self.driver.set_dev_pasid(&self.mem, &mut self.frames, m, Pasid::ZERO, to, Some(from)),
        }
    }

    /// Attaches `d` to the RID of `dev`'s group (`iommu_attach_group`).
    ///
    /// # Errors
    /// [`Errno::Busy`] when the group is not on its default domain or is
    /// resetting; [`Errno::Inval`] for another instance's domain; driver
    /// errors (every member rolled back).
    pub fn attach_rid(&mut self, d: DomainRef, dev: DeviceId) -> Result<(), Errno> {
        let (gid, group) = self.group(dev)?;
        self.domain(d)?;
        if group.rid != group.default || group.resetting {
            return Err(Errno::Busy);
        }
        self.set_rid(gid, d)
    }

    /// Replaces the RID domain (`iommu_replace_group_handle`); failure
    /// leaves the old one in effect.
    ///
    /// # Errors
    /// As [`Iommu::attach_rid`] without the default-domain rule.
    pub fn replace_rid(&mut self, d: DomainRef, dev: DeviceId) -> Result<(), Errno> {
        let (gid, group) = self.group(dev)?;
        self.domain(d)?;
        if group.resetting {
            return Err(Errno::Busy);
        }
        self.set_rid(gid, d)
    }

    /// Puts the RID back on the group's default domain.
    ///
    /// # Errors
    /// Driver errors.
    pub fn detach_rid(&mut self, dev: DeviceId) -> Result<(), Errno> {
        let (gid, group) = self.group(dev)?;
        let default = group.default;
        self.set_rid(gid, default)
    }

    // ---- DMA ownership and reset --------------------------------------

    /// Claims DMA ownership of `dev`'s group for `owner`
    /// (`iommu_device_claim_dma_owner`, semantics §1.2, spec 20).
    ///
    /// # Errors
    /// [`Errno::Busy`] when the group is off its default domain, has any
    /// PASID attached, or is owned by another owner.
    pub fn claim_dma_owner(&mut self, dev: DeviceId, owner: u64) -> Result<(), Errno> {
        let (gid, group) = self.group(dev)?;
        match group.owner {
            Some((o, _)) if o != owner => return Err(Errno::Busy),
            Some(_) => {}
            None if group.rid != group.default || !group.slots.is_empty() => return Err(Errno::Busy),
            None => {}
        }
        if let Some(g) = self.groups.get_mut(&gid) {
            g.owner = Some((owner, g.owner.map_or(1, |(_, n)| n + 1)));
        }
        Ok(())
    }

    /// Releases one claim of `owner`.
    pub fn release_dma_owner(&mut self, dev: DeviceId, owner: u64) {
        let Ok(gid) = self.group_of(dev) else { return };
        if let Some(g) = self.groups.get_mut(&gid) {
            g.owner = match g.owner {
                Some((o, n)) if o == owner && n > 1 => Some((o, n - 1)),
                Some((o, _)) if o == owner => None,
                other => other,
            };
        }
    }

    /// PCI reset prepare (semantics §1.2, L11): the RID is blocked and every
    /// PASID entry removed in the driver; the core's bookkeeping stays.
    pub fn reset_prepare(&mut self, dev: DeviceId) {
        let Ok((gid, group)) = self.group(dev) else { return };
        if group.resetting {
            return;
        }
        let pasids: Vec<u32> = group.slots.keys().copied().collect();
        for m in self.members_info(group) {
            for p in &pasids {
                if m.max_pasids > 0 {
                    self.driver.remove_dev_pasid(
                        &self.mem,
                        &mut self.frames,
                        &m,
                        Pasid::new_truncate(*p as u64),
                        false,
                    );
                }
            }
            self.driver.remove_dev_pasid(&self.mem, &mut self.frames, &m, Pasid::ZERO, false);
        }
        if let Some(g) = self.groups.get_mut(&gid) {
            g.resetting = true;
        }
    }

    /// PCI reset done: re-installs the RID domain and every PASID
    /// attachment.
    ///
    /// # Errors
    /// Driver errors (the group stays in reset so the caller can retry).
    pub fn reset_done(&mut self, dev: DeviceId) -> Result<(), Errno> {
        let (gid, group) = self.group(dev)?;
        if !group.resetting {
            return Ok(());
        }
        let rid = self.domain_desc(group.rid)?;
        let slots: Vec<(u32, DomainRef)> = group
            .slots
            .iter()
            .filter_map(|(p, s)| match s {
                Slot::Attached { domain, .. } => Some((*p, *domain)),
                Slot::Reserved => None,
            })
            .collect();
        for m in self.members_info(group) {
            if !matches!(rid.config, DomainConfig::Blocked) {
                self.driver.set_dev_pasid(&self.mem, &mut self.frames, &m, Pasid::ZERO, &rid, None)?;
            }
            for (p, d) in &slots {
                if m.max_pasids > 0 {
                    let desc = self.domain_desc(*d)?;
                    let pasid = Pasid::new_truncate(*p as u64);
                    self.driver.set_dev_pasid(&self.mem, &mut self.frames, &m, pasid, &desc, None)?;
                }
            }
        }
        if let Some(g) = self.groups.get_mut(&gid) {
            g.resetting = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
