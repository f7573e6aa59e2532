//! The VT-d driver (scalable mode): bring-up, device contexts, PASID-entry
//! install and teardown with the exact invalidation sequences of
//! semantics §4.1, §4.2 and §4.4, recorded in an ordered log of
//! hardware-visible actions ([`HwAction`]) that tests assert step by step.

use std::collections::BTreeMap;

use iommu_format::vtd::context::ScalableContextRepr;
use iommu_format::vtd::inv_desc::{ContextCacheScope, InvDescriptor, IotlbScope, PasidCacheScope, PasidIotlbScope};
use iommu_format::vtd::pasid::{dir_offset, table_offset, PasidDirEntry, PasidEntry, PasidEntryRepr, Pgtt};
use iommu_format::vtd::regs::{fsts, gcmd, offset as o, Cap, Caps, Ecap};
use iommu_format::vtd::root::ScalableRootEntry;
use iommu_types::{DomainId, Hpa, Iova, Pasid, PhysMem, RegisterBus, SourceId, Width};

use crate::frames::FrameAllocator;
use crate::Errno;

mod ops;
mod prq;
pub use prq::PrqBatch;

/// A hardware-visible action of the driver, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HwAction {
    /// A context entry was written (present bit last).
    ContextEntryWrite {
        /// Device.
        sid: SourceId,
    },
    /// Every field of a PASID entry was written with P clear.
    PasidEntryWrite {
        /// Device.
        sid: SourceId,
        /// PASID.
        pasid: Pasid,
    },
    /// P was set in a fully written PASID entry.
    PasidEntrySetPresent {
        /// Device.
        sid: SourceId,
        /// PASID.
        pasid: Pasid,
    },
    /// Only P was cleared; the rest of the entry is intact.
    PasidEntryClearPresent {
        /// Device.
        sid: SourceId,
        /// PASID.
        pasid: Pasid,
    },
    /// The PASID entry was zeroed.
    PasidEntryZero {
        /// Device.
        sid: SourceId,
        /// PASID.
        pasid: Pasid,
    },
    /// The PASID entry was left non-present with FPD set (mm exit).
    PasidEntryFaultIgnore {
        /// Device.
        sid: SourceId,
        /// PASID.
        pasid: Pasid,
    },
    /// A context entry was torn down and zeroed.
    ContextEntryZero {
        /// Device.
        sid: SourceId,
    },
    /// An empty PASID table was unlinked from the directory and freed.
    PasidTableFree {
        /// Device.
        sid: SourceId,
        /// Directory index (PASID bits 19:6).
        dir_index: u32,
    },
    /// A write-buffer flush (install without caching mode).
    WriteBufferFlush,
    /// An invalidation descriptor submitted to the queue.
    Invalidate(InvDescriptor),
}

/// What the driver knows of a device it manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceCaps {
    /// Number of PASIDs the device supports (0: none).
    pub max_pasids: u32,
    /// ATS enabled (device TLB present).
    pub ats: bool,
    /// PRI enabled (page requests).
    pub pri: bool,
}

#[derive(Debug, Clone)]
struct Device {
    caps: DeviceCaps,
    pasid_dir: Hpa,
    dir_entries: u32,
    tables: BTreeMap<u32, Hpa>,
}

/// Bounds on polling a register or a status word (the model completes
/// synchronously; real hardware within microseconds).
const POLL_LIMIT: usize = 1000;
/// Slots in the one-page 256-bit invalidation queue.
const QUEUE_SLOTS: u64 = 4096 / 32;
/// The largest PASID directory the driver builds (2^14 entries, PDTS=7).
const MAX_DIR_ENTRIES: u32 = 1 << 14;

/// A scalable-mode VT-d unit driven through `B`.
#[derive(Debug)]
pub struct VtdDriver<B> {
    bus: B,
    caps: Caps,
    root: Hpa,
    ctx_tables: BTreeMap<(u8, bool), Hpa>,
    devices: BTreeMap<u16, Device>,
    queue: Hpa,
    tail: u64,
    status: Hpa,
    status_seq: u32,
    prq: Option<Hpa>,
    log: Vec<HwAction>,
    /// DIDs in use: the domain, its DID and how many entries carry it.
    dids: BTreeMap<crate::driver::DomainRef, (DomainId, u32)>,
    /// Submissions so far, and the one to fail (fault injection, §5.8).
    submissions: u64,
    fail_submit_at: Option<u64>,
}

impl<B: RegisterBus> VtdDriver<B> {
    /// Brings the unit up (semantics §4.7): checks it offers scalable mode
    /// and queued invalidation, allocates the root table, the invalidation
    /// queue and (with ECAP.PRS) the page request queue, points the unit at
    /// them, invalidates every cache, unmasks the fault and page-request
    /// events and enables translation, waiting for each GSTS handshake.
    ///
    /// # Errors
    /// [`Errno::NoDev`] without ECAP.SMTS or ECAP.QI; [`Errno::NoMem`];
    /// [`Errno::TimedOut`] when a handshake never completes. On error every
    /// frame allocated here is returned.
    pub fn probe(bus: B, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator) -> Result<Self, Errno> {
        let rd = |off| bus.read(off, Width::W64).map_err(|_| Errno::NoDev);
        let caps = Caps::new(rd(o::CAP)?, rd(o::ECAP)?);
        if !caps.ecap_has(Ecap::SMTS) || !caps.ecap_has(Ecap::QI) {
            return Err(Errno::NoDev);
        }
        let mut taken = Vec::new();
        let mut take = |frames: &mut dyn FrameAllocator| -> Result<Hpa, Errno> {
            let f = frames.alloc_frame(mem)?;
            taken.push(f);
            Ok(f)
        };
        let setup = (|| {
            let root = take(frames)?;
            let queue = take(frames)?;
            let status = take(frames)?;
            let prq = if caps.ecap_has(Ecap::PRS) { Some(take(frames)?) } else { None };
            Ok::<_, Errno>((root, queue, status, prq))
        })();
        let (root, queue, status, prq) = match setup {
            Ok(v) => v,
            Err(e) => {
                for f in taken {
                    frames.free_frame(f);
                }
                return Err(e);
            }
        };
        let mut d = Self {
            bus,
            caps,
            root,
            ctx_tables: BTreeMap::new(),
            devices: BTreeMap::new(),
            queue,
            tail: 0,
            status,
            status_seq: 0,
            prq,
            log: Vec::new(),
            dids: BTreeMap::new(),
            submissions: 0,
            fail_submit_at: None,
        };
        match d.enable(mem) {
            Ok(()) => Ok(d),
            Err(e) => {
                for f in [Some(root), Some(queue), Some(status), prq].into_iter().flatten() {
                    frames.free_frame(f);
                }
                Err(e)
            }
        }
    }

    fn w(&self, off: u64, width: Width, v: u64) -> Result<(), Errno> {
        self.bus.write(off, width, v).map_err(|_| Errno::NoDev)
    }

    fn r(&self, off: u64, width: Width) -> Result<u64, Errno> {
        self.bus.read(off, width).map_err(|_| Errno::NoDev)
    }

    fn wait_gsts(&self, bits: u32) -> Result<(), Errno> {
        for _ in 0..POLL_LIMIT {
            if self.r(o::GSTS, Width::W32)? as u32 & bits == bits {
                return Ok(());
            }
        }
        Err(Errno::TimedOut)
    }

    fn enable(&mut self, mem: &dyn PhysMem) -> Result<(), Errno> {
        self.w(o::IQA, Width::W64, self.queue.raw() | 1 << 11)?;
        self.w(o::IQT, Width::W64, 0)?;
        self.w(o::GCMD, Width::W32, gcmd::QIE as u64)?;
        self.wait_gsts(gcmd::QIE)?;
        self.w(o::RTADDR, Width::W64, self.root.raw() | 1 << 10)?;
        self.w(o::GCMD, Width::W32, (gcmd::SRTP | gcmd::QIE) as u64)?;
        self.wait_gsts(gcmd::SRTP)?;
        self.submit(
            mem,
            &[
                InvDescriptor::ContextCache(ContextCacheScope::Global),
                InvDescriptor::PasidCache { did: DomainId::new(0), scope: PasidCacheScope::Global },
                InvDescriptor::Iotlb { scope: IotlbScope::Global, dr: true, dw: true },
            ],
        )?;
        if let Some(prq) = self.prq {
            self.w(o::PQH, Width::W64, 0)?;
            self.w(o::PQA, Width::W64, prq.raw())?;
            self.w(o::PEADDR, Width::W32, 0xFEE0_0000)?;
            self.w(o::PECTL, Width::W32, 0)?;
        }
        self.w(o::FEADDR, Width::W32, 0xFEE0_0000)?;
        self.w(o::FECTL, Width::W32, 0)?;
        self.w(o::GCMD, Width::W32, (gcmd::TE | gcmd::QIE) as u64)?;
        self.wait_gsts(gcmd::TE)
    }

    /// The capabilities the unit reported.
    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// The hardware-visible actions so far, in order.
    pub fn log(&self) -> &[HwAction] {
        &self.log
    }

    /// Makes the `n`-th queue submission from now fail as an invalidation
    /// time-out before the hardware sees it (1 = the next one); `None`
    /// disables injection. The fail_nth sweep (semantics §5.8) uses it to
    /// fail hardware steps.
    pub fn fail_nth_submit(&mut self, n: Option<u64>) {
        self.fail_submit_at = n.map(|n| self.submissions + n);
    }

    /// Takes the action log.
    pub fn take_log(&mut self) -> Vec<HwAction> {
        std::mem::take(&mut self.log)
    }

    /// Submits `descs` followed by a wait with status write, and waits for
    /// the status (semantics §2.7: the driver batches and spins on the
    /// status). Each descriptor is logged.
    ///
    /// # Errors
    /// [`Errno::Inval`] when the unit reports a queue error (IQE),
    /// [`Errno::TimedOut`] for a device-TLB time-out (ITE) or a status that
    /// never arrives. The error bit is cleared so the queue can go on.
    pub fn submit(&mut self, mem: &dyn PhysMem, descs: &[InvDescriptor]) -> Result<(), Errno> {
        if descs.len() as u64 + 1 >= QUEUE_SLOTS {
            return Err(Errno::Inval);
        }
        self.submissions += 1;
        if self.fail_submit_at == Some(self.submissions) {
            // As if the unit had reported a device-TLB time-out (ITE) for
            // this batch before executing any of it.
            return Err(Errno::TimedOut);
        }
        self.status_seq = self.status_seq.wrapping_add(1).max(1);
        let wait = InvDescriptor::Wait {
            interrupt: false,
            status: Some((self.status, self.status_seq)),
            fence: true,
            drain_page_requests: false,
        };
        for d in descs.iter().chain([&wait]) {
            mem.write(Hpa::new(self.queue.raw() + self.tail * 32), &d.encode().to_bytes()).map_err(|_| Errno::Fault)?;
            self.tail = (self.tail + 1) % QUEUE_SLOTS;
        }
        self.log.extend(descs.iter().map(|d| HwAction::Invalidate(*d)));
        self.w(o::IQT, Width::W64, self.tail * 32)?;
        let fs = self.r(o::FSTS, Width::W32)? as u32;
        if fs & (fsts::IQE | fsts::ITE) != 0 {
            // Skip the queue past the batch: restart at the tail.
            self.w(o::FSTS, Width::W32, (fs & (fsts::IQE | fsts::ITE)) as u64)?;
            self.w(o::IQT, Width::W64, self.tail * 32)?;
            return Err(if fs & fsts::ITE != 0 { Errno::TimedOut } else { Errno::Inval });
        }
        for _ in 0..POLL_LIMIT {
            if mem.read_u64(self.status).map_err(|_| Errno::Fault)? as u32 == self.status_seq {
                return Ok(());
            }
        }
        Err(Errno::TimedOut)
    }

    /// Sets up the scalable context entry of `sid`: a PASID directory sized
    /// for the device's `max_pasids`, PASIDs enabled, ATS and PRI as the
    /// device has them (present bit written last), then a device-selective
    /// context-cache invalidation.
    ///
    /// # Errors
    /// [`Errno::Busy`] if the device is already set up; [`Errno::NoMem`]
    /// (every frame taken here is returned).
    pub fn add_device(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        sid: SourceId,
        caps: DeviceCaps,
    ) -> Result<(), Errno> {
        if self.devices.contains_key(&sid.raw()) {
            return Err(Errno::Busy);
        }
        let dir_entries = caps.max_pasids.div_ceil(64).clamp(128, MAX_DIR_ENTRIES).next_power_of_two();
        let pdts = dir_entries.trailing_zeros() - 7;
        let dir_pages = (dir_entries as u64 * 8).div_ceil(4096);
        let upper = sid.devfn() >= 0x80;
        let mut new_frames = Vec::new();
        let result = (|| {
            let ctx_table = match self.ctx_tables.get(&(sid.bus(), upper)) {
                Some(t) => *t,
                None => {
                    let t = frames.alloc_frame(mem)?;
                    new_frames.push(t);
                    t
                }
            };
            let dir = alloc_contiguous(mem, frames, dir_pages, &mut new_frames)?;
            Ok::<_, Errno>((ctx_table, dir))
        })();
        let (ctx_table, dir) = match result {
            Ok(v) => v,
            Err(e) => {
                for f in new_frames {
                    frames.free_frame(f);
                }
                return Err(e);
            }
        };
        if self.ctx_tables.insert((sid.bus(), upper), ctx_table).is_none() {
            let lower = self.ctx_tables.get(&(sid.bus(), false)).copied();
            let up = self.ctx_tables.get(&(sid.bus(), true)).copied();
            let re = ScalableRootEntry::new(lower, up);
            mem.write(Hpa::new(self.root.raw() + 16 * sid.bus() as u64), &re.to_bytes()).map_err(|_| Errno::Fault)?;
        }
        let ce = ScalableContextRepr {
            fpd: false,
            dte: caps.ats,
            paside: caps.max_pasids > 0,
            pre: caps.pri,
            pdts: pdts as u8,
            pasid_dir: dir,
            rid_pasid: Pasid::ZERO,
            rid_priv: false,
        }
        .encode();
        let at = Hpa::new(ctx_table.raw() + 32 * (sid.devfn() & 0x7F) as u64);
        write_words_present_last(mem, at, &ce.0)?;
        self.log.push(HwAction::ContextEntryWrite { sid });
        self.devices.insert(sid.raw(), Device { caps, pasid_dir: dir, dir_entries, tables: BTreeMap::new() });
        let cc = ContextCacheScope::Device { did: DomainId::new(0), sid, fm: 0 };
        let flushed = self.submit(mem, &[InvDescriptor::ContextCache(cc)]);
        if flushed.is_err() {
            self.remove_device(mem, frames, sid);
        }
        flushed
    }

    fn entry_addr(&self, sid: SourceId, pasid: Pasid) -> Option<Hpa> {
        let dev = self.devices.get(&sid.raw())?;
        let table = dev.tables.get(&(pasid.raw() >> 6))?;
        Some(Hpa::new(table.raw() + table_offset(pasid)))
    }

    /// Reads the PASID entry of (`sid`, `pasid`), if its table exists.
    pub fn pasid_entry(&self, mem: &dyn PhysMem, sid: SourceId, pasid: Pasid) -> Option<PasidEntry> {
        let at = self.entry_addr(sid, pasid)?;
        let mut w = [0u64; 8];
        for (i, slot) in w.iter_mut().enumerate() {
            *slot = mem.read_u64(Hpa::new(at.raw() + 8 * i as u64)).ok()?;
        }
        Some(PasidEntry(w))
    }

    /// Installs `entry` at (`sid`, `pasid`), semantics §4.1: the entry must
    /// not be present (EBUSY); all fields are written with P clear, then P;
    /// with caching mode a PASID-cache and a PASID-based IOTLB invalidation
    /// follow, otherwise a write-buffer flush.
    ///
    /// # Errors
    /// [`Errno::NoDev`] for an unknown device; [`Errno::Inval`] for a PASID
    /// beyond the device's range (PASID 0, the RID, is always allowed); [`Errno::Busy`] when present;
    /// [`Errno::NoMem`] when a PASID table cannot be allocated (nothing is
    /// left half-built).
    pub fn install_pasid(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        sid: SourceId,
        pasid: Pasid,
        entry: &PasidEntryRepr,
    ) -> Result<(), Errno> {
        if self.pasid_entry(mem, sid, pasid).is_some_and(|e| e.present()) {
            return Err(Errno::Busy);
        }
        self.ensure_pasid_table(mem, frames, sid, pasid)?;
        let at = self.entry_addr(sid, pasid).ok_or(Errno::NoDev)?;
        let words = entry.encode().0;
        let mut not_present = words;
        not_present[0] &= !1;
        write_words(mem, at, &not_present)?;
        self.log.push(HwAction::PasidEntryWrite { sid, pasid });
        mem.write_u64(at, words[0]).map_err(|_| Errno::Fault)?;
        self.log.push(HwAction::PasidEntrySetPresent { sid, pasid });
        if self.caps.cap_has(Cap::CM) {
            let flushed = self.submit(
                mem,
                &[
                    InvDescriptor::PasidCache { did: entry.did, scope: PasidCacheScope::Pasid(pasid) },
                    InvDescriptor::PasidIotlb { did: entry.did, pasid, scope: PasidIotlbScope::AllNonGlobal },
                ],
            );
            if let Err(e) = flushed {
                // The unit may still use a cached not-present copy: the
                // install did not happen. Take the entry back out.
                write_words(mem, at, &[0; 8])?;
                self.log.push(HwAction::PasidEntryZero { sid, pasid });
                return Err(e);
            }
        } else {
            if self.caps.cap_has(Cap::RWBF) {
                self.w(o::GCMD, Width::W32, (gcmd::WBF | gcmd::TE | gcmd::QIE) as u64)?;
            }
            self.log.push(HwAction::WriteBufferFlush);
        }
        Ok(())
    }

    /// Makes the PASID table holding (`sid`, `pasid`) exist, allocating and
    /// linking it into the directory (VT-d §9.5) if needed. PASID 0 is the
    /// RID_PASID entry every device has; other PASIDs must be below the
    /// device's `max_pasids`.
    ///
    /// # Errors
    /// [`Errno::NoDev`], [`Errno::Inval`], [`Errno::NoMem`] (nothing changed).
    pub(crate) fn ensure_pasid_table(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        sid: SourceId,
        pasid: Pasid,
    ) -> Result<(), Errno> {
        let dev = self.devices.get_mut(&sid.raw()).ok_or(Errno::NoDev)?;
        let dir_index = pasid.raw() >> 6;
        if (pasid.raw() != 0 && pasid.raw() >= dev.caps.max_pasids) || dir_index >= dev.dir_entries {
            return Err(Errno::Inval);
        }
        if dev.tables.contains_key(&dir_index) {
            return Ok(());
        }
        let t = frames.alloc_frame(mem)?;
        let de = PasidDirEntry::new_present(t);
        if mem.write(Hpa::new(dev.pasid_dir.raw() + dir_offset(pasid)), &de.to_bytes()).is_err() {
            frames.free_frame(t);
            return Err(Errno::Fault);
        }
        dev.tables.insert(dir_index, t);
        Ok(())
    }

    /// Frees the PASID table holding (`sid`, `pasid`) once every entry in
    /// it is zero (after a full teardown): the directory entry is cleared
    /// first, then the frame goes back (the PASID cache held only entries
    /// of that table, already invalidated by the teardown).
    pub(crate) fn release_empty_pasid_table(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        sid: SourceId,
        pasid: Pasid,
    ) {
        let dir_index = pasid.raw() >> 6;
        let Some(dev) = self.devices.get(&sid.raw()) else { return };
        let Some(table) = dev.tables.get(&dir_index).copied() else { return };
        let empty = (0..512u64).all(|i| mem.read_u64(Hpa::new(table.raw() + 8 * i)).is_ok_and(|w| w == 0));
        if !empty {
            return;
        }
        if mem.write_u64(Hpa::new(dev.pasid_dir.raw() + dir_offset(pasid)), 0).is_err() {
            return;
        }
        if let Some(dev) = self.devices.get_mut(&sid.raw()) {
            dev.tables.remove(&dir_index);
        }
        frames.free_frame(table);
        self.log.push(HwAction::PasidTableFree { sid, dir_index });
    }

    /// Tears down the PASID entry of (`sid`, `pasid`), semantics §4.2:
    /// clear only P; PASID-cache invalidation; PASID-based IOTLB
    /// invalidation for first-stage and pass-through entries, domain IOTLB
    /// invalidation for second-stage and nested ones; device-TLB
    /// invalidation with ATS; zero the entry; drain page requests (§4.4).
    /// With `fault_ignore` (mm exit, §4.5) the entry is left non-present
    /// with FPD set and nothing is drained; a later teardown clears it and
    /// drains. An entry that is not present and has no FPD needs nothing.
    ///
    /// # Errors
    /// [`Errno::NoDev`] for an unknown device; queue errors from [`VtdDriver::submit`].
    pub fn teardown_pasid(
        &mut self,
        mem: &dyn PhysMem,
        sid: SourceId,
        pasid: Pasid,
        fault_ignore: bool,
    ) -> Result<(), Errno> {
        let dev = self.devices.get(&sid.raw()).ok_or(Errno::NoDev)?.caps;
        let Some(entry) = self.pasid_entry(mem, sid, pasid) else { return Ok(()) };
        let at = self.entry_addr(sid, pasid).ok_or(Errno::NoDev)?;
        // The DID is kept in the fault-ignore entry left by mm exit (P=0,
        // FPD=1; hardware reads nothing else of it), so the later unbind
        // drains under the DID the PASID's translations were tagged with.
        let did = DomainId::new(entry.get(PasidEntry::DID) as u16);
        if !entry.present() {
            if entry.get(PasidEntry::FPD) != 0 && !fault_ignore {
                write_words(mem, at, &[0; 8])?;
                self.log.push(HwAction::PasidEntryZero { sid, pasid });
                return self.drain(mem, sid, pasid, did, dev);
            }
            return Ok(());
        }
        let pgtt = entry.pgtt();
        mem.write_u64(at, entry.0[0] & !1).map_err(|_| Errno::Fault)?;
        self.log.push(HwAction::PasidEntryClearPresent { sid, pasid });
        let mut descs = vec![InvDescriptor::PasidCache { did, scope: PasidCacheScope::Pasid(pasid) }];
        descs.push(match pgtt {
            Pgtt::FirstStage | Pgtt::PassThrough => {
                InvDescriptor::PasidIotlb { did, pasid, scope: PasidIotlbScope::AllNonGlobal }
            }
            _ => InvDescriptor::Iotlb { scope: IotlbScope::Domain(did), dr: true, dw: true },
        });
        if dev.ats {
            descs.push(device_tlb_all(sid, pasid));
        }
        self.submit_retrying(mem, &descs)?;
        if fault_ignore {
            let mut w = [0u64; 8];
            w[0] = PasidEntry::default().with(PasidEntry::FPD, 1).0[0];
            w[1] = PasidEntry::default().with(PasidEntry::DID, did.raw() as u64).0[1];
            write_words(mem, at, &w)?;
            self.log.push(HwAction::PasidEntryFaultIgnore { sid, pasid });
            return Ok(());
        }
        write_words(mem, at, &[0; 8])?;
        self.log.push(HwAction::PasidEntryZero { sid, pasid });
        self.drain(mem, sid, pasid, did, dev)
    }

    /// Drains page requests for (`sid`, `pasid`), semantics §4.4 step 4: a
    /// wait with fence and page-request drain, a PASID-based IOTLB
    /// invalidation (under the DID the PASID's translations are tagged
    /// with) and a PASID-based device-TLB invalidation, as one batch.
    /// Nothing to do without PRI.
    fn drain(
        &mut self,
        mem: &dyn PhysMem,
        sid: SourceId,
        pasid: Pasid,
        did: DomainId,
        dev: DeviceCaps,
    ) -> Result<(), Errno> {
        if !dev.pri {
            return Ok(());
        }
        let mut descs = vec![
            InvDescriptor::Wait { interrupt: false, status: None, fence: true, drain_page_requests: true },
            InvDescriptor::PasidIotlb { did, pasid, scope: PasidIotlbScope::AllNonGlobal },
        ];
        if dev.ats {
            descs.push(device_tlb_all(sid, pasid));
        }
        self.submit_retrying(mem, &descs)
    }

    /// Submits a batch that belongs to a teardown, which cannot be undone
    /// half-way: a failed submission (time-out) is retried once, as Linux's
    /// queue submission retries after clearing ITE.
    fn submit_retrying(&mut self, mem: &dyn PhysMem, descs: &[InvDescriptor]) -> Result<(), Errno> {
        match self.submit(mem, descs) {
            Ok(()) => Ok(()),
            Err(_) => self.submit(mem, descs),
        }
    }

    /// Submissions so far (for sizing fault-injection sweeps).
    pub fn submissions(&self) -> u64 {
        self.submissions
    }

    /// Releases a device (semantics §4.7 context-entry teardown): clear P
    /// only, device-selective context-cache invalidation, device-TLB
    /// invalidation with ATS, zero the entry; then its PASID tables and
    /// directory are freed, and the context table too once no device uses
    /// it. Every PASID entry must already be torn down.
    pub fn remove_device(&mut self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, sid: SourceId) {
        let Some(dev) = self.devices.remove(&sid.raw()) else { return };
        let upper = sid.devfn() >= 0x80;
        let Some(ctx_table) = self.ctx_tables.get(&(sid.bus(), upper)).copied() else { return };
        let at = Hpa::new(ctx_table.raw() + 32 * (sid.devfn() & 0x7F) as u64);
        if let Ok(w0) = mem.read_u64(at) {
            let _ = mem.write_u64(at, w0 & !1);
        }
        let mut descs =
            vec![InvDescriptor::ContextCache(ContextCacheScope::Device { did: DomainId::new(0), sid, fm: 0 })];
        if dev.caps.ats {
            descs.push(device_tlb_all(sid, Pasid::ZERO));
        }
        let _ = self.submit_retrying(mem, &descs);
        let _ = write_words(mem, at, &[0; 4]);
        self.log.push(HwAction::ContextEntryZero { sid });
        for t in dev.tables.values() {
            frames.free_frame(*t);
        }
        let dir_pages = (dev.dir_entries as u64 * 8).div_ceil(4096);
        for i in 0..dir_pages {
            frames.free_frame(Hpa::new(dev.pasid_dir.raw() + i * 4096));
        }
        let in_use = self.devices.keys().any(|k| {
            let other = SourceId::new(*k);
            other.bus() == sid.bus() && (other.devfn() >= 0x80) == upper
        });
        if !in_use {
            self.ctx_tables.remove(&(sid.bus(), upper));
            let lower = self.ctx_tables.get(&(sid.bus(), false)).copied();
            let up = self.ctx_tables.get(&(sid.bus(), true)).copied();
            let re = ScalableRootEntry::new(lower, up);
            let _ = mem.write(Hpa::new(self.root.raw() + 16 * sid.bus() as u64), &re.to_bytes());
            let _ = self.submit_retrying(mem, &[InvDescriptor::ContextCache(ContextCacheScope::Global)]);
            frames.free_frame(ctx_table);
        }
    }
}

/// A device-TLB invalidation of 2^am pages at an address (`Some`) or of
/// everything (`None`), in the ATS size encoding (PCIe ATS §2.3: with S
/// set, the run of low one bits above bit 11 gives the size).
fn device_tlb_range(sid: SourceId, pasid: Pasid, range: Option<(Iova, u8)>) -> InvDescriptor {
    let (addr, size) = match range {
        None => return device_tlb_all(sid, pasid),
        Some((addr, 0)) => (addr, false),
        Some((addr, am)) => (Iova::new(addr.raw() | ((1u64 << (am - 1)) - 1) << 12), true),
    };
    if pasid.raw() == 0 {
        InvDescriptor::DeviceTlb { sid, pfsid: 0, qdep: 0, addr, size }
    } else {
        InvDescriptor::PasidDeviceTlb { sid, pfsid: 0, qdep: 0, pasid, global: false, addr, size }
    }
}

/// A whole-range device-TLB invalidation (the ATS size encoding with every
/// address bit set), PASID-based unless PASID 0 (semantics §4.2 step 5).
fn device_tlb_all(sid: SourceId, pasid: Pasid) -> InvDescriptor {
    let all = Iova::new(0x7FFF_FFFF_FFFF_F000);
    if pasid.raw() == 0 {
        InvDescriptor::DeviceTlb { sid, pfsid: 0, qdep: 0, addr: all, size: true }
    } else {
        InvDescriptor::PasidDeviceTlb { sid, pfsid: 0, qdep: 0, pasid, global: false, addr: all, size: true }
    }
}

fn write_words(mem: &dyn PhysMem, at: Hpa, words: &[u64]) -> Result<(), Errno> {
    for (i, w) in words.iter().enumerate() {
        mem.write_u64(Hpa::new(at.raw() + 8 * i as u64), *w).map_err(|_| Errno::Fault)?;
    }
    Ok(())
}

/// Writes every qword but the first, then the first (which holds P).
fn write_words_present_last(mem: &dyn PhysMem, at: Hpa, words: &[u64]) -> Result<(), Errno> {
    write_words(mem, Hpa::new(at.raw() + 8), &words[1..])?;
    mem.write_u64(at, words[0]).map_err(|_| Errno::Fault)
}

/// `pages` physically contiguous frames (the PASID directory can span up
/// to 32 pages); every frame taken is recorded in `taken`.
fn alloc_contiguous(
    mem: &dyn PhysMem,
    frames: &mut dyn FrameAllocator,
    pages: u64,
    taken: &mut Vec<Hpa>,
) -> Result<Hpa, Errno> {
    let first = frames.alloc_contiguous(mem, pages)?;
    taken.extend((0..pages).map(|i| Hpa::new(first.raw() + i * 4096)));
    Ok(first)
}
