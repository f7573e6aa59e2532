//! The SMMUv3 driver: bring-up (SMMUv3 §6.3, the order of Linux's device
//! reset), the stream table, CD tables sized from each master's
//! `ssid_bits`, the command queue with CMD_SYNC completion, live STE/CD
//! updates with the used-bits algorithm ([`entry`]), and the event and PRI
//! queues. Every hardware-visible step is recorded in an ordered log of
//! [`HwAction`]s that tests assert step by step.
//!
//! Layout of what it builds (all in memory the OS allocates):
//!
//! ```text
//!  STRTAB_BASE ─▶ linear STEs (SIDSIZE ≤ 8), or L1 descriptors ─▶ 256-STE leaves
//!  STE (Config = S1) ─▶ linear CD table (ssid_bits ≤ 10), or L1CDs ─▶ 1024-CD leaves
//!  CD ─▶ TTB0: an I/O page table or a process's page tables (VMSAv8-64, 4K)
//! ```

use std::collections::BTreeMap;

use iommu_format::smmuv3::cd::{Cd, L1Cd};
use iommu_format::smmuv3::cmd::{Command, SyncCompletion};
use iommu_format::smmuv3::event::Event;
use iommu_format::smmuv3::regs::{offset as o, CmdqError, Idr0, Idr1, Idr3, Idr5, QueueIndex};
use iommu_format::smmuv3::ste::{L1Std, Ste, SteConfig};
use iommu_types::{Hpa, PhysMem, RegisterBus, StreamId, SubstreamId, Width};

use crate::driver::{DeviceInfo, DomainDesc, DomainRef};
use crate::frames::FrameAllocator;
use crate::Errno;

pub mod entry;
mod faults;
mod ops;

pub use entry::Transition;

/// A hardware-visible action of the driver, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HwAction {
    /// Words of a stream's STE were stored (bit i: word i), one state of a
    /// live update.
    SteWrite {
        /// StreamID.
        sid: u32,
        /// Words written.
        words: u8,
    },
    /// Words of a CD were stored, one state of a live update.
    CdWrite {
        /// StreamID.
        sid: u32,
        /// CD index (SubstreamID).
        ssid: u32,
        /// Words written.
        words: u8,
    },
    /// A command was put on the command queue.
    Command(Command),
    /// ATS was enabled in the endpoint (PCIe ATS Control.Enable).
    AtsEnable {
        /// StreamID.
        sid: u32,
    },
    /// ATS was disabled in the endpoint.
    AtsDisable {
        /// StreamID.
        sid: u32,
    },
}

/// Bounds on polling (the model completes synchronously).
const POLL_LIMIT: usize = 1000;
/// Command queue: one page of 16-byte commands.
const CMDQ_LOG2: u32 = 8;
/// Event queue: one page of 32-byte records.
const EVTQ_LOG2: u32 = 7;
/// PRI queue: one page of 16-byte entries.
const PRIQ_LOG2: u32 = 8;
/// StreamID bits the driver supports (a 2-level table of 256-STE leaves).
const MAX_SID_BITS: u32 = 16;
/// StreamIDs per level-2 stream table (SPLIT = 8: 16 KiB).
const STE_SPLIT: u32 = 8;
/// CDs per level-2 CD table (S1Fmt = 64K leaves: 1024 CDs).
const CD_SPLIT: u32 = 10;
/// The CMD_SYNC closing every batch: completion is polled through
/// CMDQ_CONS, so no interrupt or MSI is asked for (§4.7.3 CS = SIG_NONE).
const SYNC: Command = Command::Sync { cs: SyncCompletion::SigNone, msh: 0, msiattr: 0, msi_data: 0, msi_addr: 0 };
/// Events kept for inspection (older ones are dropped).
const MAX_KEPT_EVENTS: usize = 256;

/// What the ID registers say, as the driver needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SmmuCaps {
    /// The raw IDR0–IDR5.
    pub idr: [u32; 6],
    /// Stage 1 (IDR0.S1P).
    pub s1: bool,
    /// Stage 2 (IDR0.S2P).
    pub s2: bool,
    /// ATS (IDR0.ATS).
    pub ats: bool,
    /// PRI queue (IDR0.PRI).
    pub pri: bool,
    /// Stalls supported (IDR0.STALL_MODEL != 0b01).
    pub stall: bool,
    /// 2-level CD tables (IDR0.CD2L).
    pub cd2l: bool,
    /// 2-level stream tables (IDR0.ST_LEVEL).
    pub st2l: bool,
    /// 16-bit ASIDs and VMIDs.
    pub asid16: bool,
    /// 16-bit VMIDs.
    pub vmid16: bool,
    /// Range invalidation (IDR3.RIL).
    pub ril: bool,
    /// StreamID bits (IDR1.SIDSIZE).
    pub sid_bits: u32,
    /// SubstreamID bits (IDR1.SSIDSIZE).
    pub ssid_bits: u32,
    /// Output address size encoding (IDR5.OAS).
    pub oas: u64,
}

impl SmmuCaps {
    /// Decodes IDR0, IDR1, IDR3 and IDR5 (SMMUv3 §6.3.1–§6.3.6).
    pub fn from_idr(idr: [u32; 6]) -> Self {
        let i0 = Idr0::from_words([idr[0] as u64]);
        let i1 = Idr1::from_words([idr[1] as u64]);
        let i3 = Idr3::from_words([idr[3] as u64]);
        let i5 = Idr5::from_words([idr[5] as u64]);
        Self {
            idr,
            s1: i0.get(Idr0::S1P) != 0,
            s2: i0.get(Idr0::S2P) != 0,
            ats: i0.get(Idr0::ATS) != 0,
            pri: i0.get(Idr0::PRI) != 0,
            stall: i0.get(Idr0::STALL_MODEL) != 0b01,
            cd2l: i0.get(Idr0::CD2L) != 0,
            st2l: i0.get(Idr0::ST_LEVEL) == 0b01,
            asid16: i0.get(Idr0::ASID16) != 0,
            vmid16: i0.get(Idr0::VMID16) != 0,
            ril: i3.get(Idr3::RIL) != 0,
            sid_bits: i1.get(Idr1::SIDSIZE) as u32,
            ssid_bits: i1.get(Idr1::SSIDSIZE) as u32,
            oas: i5.get(Idr5::OAS),
        }
    }

    /// `ssid_bits` of a master (semantics §3.1): the smaller of the
    /// device's PASID width and SSIDSIZE, at most 10 without 2-level CD
    /// tables.
    pub fn master_ssid_bits(&self, max_pasids: u32) -> u32 {
        let dev = if max_pasids > 1 { max_pasids.ilog2() } else { 0 };
        let bits = dev.min(self.ssid_bits);
        if self.cd2l {
            bits
        } else {
            bits.min(CD_SPLIT)
        }
    }
}

/// A queue in memory and the driver's index into it.
#[derive(Debug, Clone, Copy)]
struct Queue {
    base: Hpa,
    log2: u32,
    /// PROD for the command queue, CONS for the others (index + wrap).
    ptr: QueueIndex,
}

/// A master's CD table.
#[derive(Debug, Clone)]
struct CdTable {
    /// Linear table or L1 table.
    base: Hpa,
    /// Contiguous pages at `base`.
    pages: u64,
    two_level: bool,
    /// Level-2 tables by L1 index (16 pages each).
    leaves: BTreeMap<u32, Hpa>,
}

/// What the driver knows of a master.
#[derive(Debug, Clone)]
struct Master {
    info: DeviceInfo,
    /// SubstreamID bits (0: substreams unused).
    ssid_bits: u32,
    /// Stall model: a platform device on an SMMU with stalls; its faults
    /// stall and are answered with CMD_RESUME.
    stall: bool,
    cds: Option<CdTable>,
    /// The RID domain (SSID-less traffic); `None` until one is attached.
    rid: Option<DomainDesc>,
    /// Domains attached at SubstreamIDs, and whether the CD is the
    /// release CD (mm exit).
    pasids: BTreeMap<u32, (DomainDesc, bool)>,
    /// ATS enabled in the endpoint.
    ats_on: bool,
}

/// An SMMUv3 driven through `B`.
#[derive(Debug)]
pub struct SmmuDriver<B> {
    bus: B,
    caps: SmmuCaps,
    strtab: Hpa,
    /// StreamID bits the stream table covers.
    sid_bits: u32,
    two_level_st: bool,
    /// Level-2 stream tables by L1 index.
    st_leaves: BTreeMap<u32, Hpa>,
    cmdq: Queue,
    evtq: Queue,
    priq: Option<Queue>,
    masters: BTreeMap<u32, Master>,
    /// ASIDs of stage-1 domains: (ASID, references).
    asids: BTreeMap<DomainRef, (u16, u32)>,
    /// VMIDs of stage-2 domains: (VMID, references).
    vmids: BTreeMap<DomainRef, (u16, u32)>,
    log: Vec<HwAction>,
    /// Events that were not page faults, oldest first, bounded.
    events: Vec<Event>,
    submissions: u64,
    fail_submit_at: Option<u64>,
    /// A teardown (or the clean-up after a change took effect) is under
    /// way: it cannot be undone half-way, so a submission that times out
    /// is retried once ([`SmmuDriver::retrying`]).
    retry_submit: bool,
}

impl<B: RegisterBus> SmmuDriver<B> {
    /// Brings the SMMU up (SMMUv3 §6.3.9 CR0, the sequence of semantics
    /// §4.7 for SMMUv3): checks it translates with AArch64 tables and 4 KiB
    /// granules, disables it if enabled, allocates the stream table and the
    /// queues, programs CR1/CR2 and the bases, enables the command queue,
    /// invalidates every configuration and TLB entry, enables the event and
    /// PRI queues and finally SMMUEN, waiting for CR0ACK at each step.
    ///
    /// # Errors
    /// [`Errno::NoDev`] when the SMMU lacks both stages, AArch64 tables or
    /// the 4 KiB granule; [`Errno::NoMem`]; [`Errno::TimedOut`] when a
    /// handshake never completes. On error every frame taken is returned.
    pub fn probe(bus: B, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator) -> Result<Self, Errno> {
        let mut idr = [0u32; 6];
        for (i, v) in idr.iter_mut().enumerate() {
            *v = bus.read(o::IDR0 + 4 * i as u64, Width::W32).map_err(|_| Errno::NoDev)? as u32;
        }
        let caps = SmmuCaps::from_idr(idr);
        let i0 = Idr0::from_words([idr[0] as u64]);
        let aarch64 = i0.get(Idr0::TTF) & 0b10 != 0;
        let gran4k = Idr5::from_words([idr[5] as u64]).get(Idr5::GRAN4K) != 0;
        if !(caps.s1 || caps.s2) || !aarch64 || !gran4k {
            return Err(Errno::NoDev);
        }
        let sid_bits = caps.sid_bits.min(MAX_SID_BITS);
        let two_level_st = caps.st2l && sid_bits > STE_SPLIT;
        // Linear: 64 bytes per STE; 2-level: 8 bytes per L1 descriptor.
        let strtab_bytes = if two_level_st { 8u64 << (sid_bits - STE_SPLIT) } else { 64u64 << sid_bits };
        let strtab_pages = strtab_bytes.div_ceil(4096);
        let mut taken: Vec<(Hpa, u64)> = Vec::new();
        let mut take = |frames: &mut dyn FrameAllocator, pages: u64| -> Result<Hpa, Errno> {
            let f = frames.alloc_contiguous(mem, pages)?;
            taken.push((f, pages));
            Ok(f)
        };
        let setup = (|| {
            let strtab = take(frames, strtab_pages)?;
            let cmdq = take(frames, 1)?;
            let evtq = take(frames, 1)?;
            let priq = if caps.pri { Some(take(frames, 1)?) } else { None };
            Ok::<_, Errno>((strtab, cmdq, evtq, priq))
        })();
        let give_back = |frames: &mut dyn FrameAllocator, taken: &[(Hpa, u64)]| {
            for (f, pages) in taken {
                free_pages(frames, *f, *pages);
            }
        };
        let (strtab, cmdq, evtq, priq) = match setup {
            Ok(v) => v,
            Err(e) => {
                give_back(frames, &taken);
                return Err(e);
            }
        };
        let q = |base, log2| Queue { base, log2, ptr: QueueIndex::default() };
        let mut d = Self {
            bus,
            caps,
            strtab,
            sid_bits,
            two_level_st,
            st_leaves: BTreeMap::new(),
            cmdq: q(cmdq, CMDQ_LOG2),
            evtq: q(evtq, EVTQ_LOG2),
            priq: priq.map(|p| q(p, PRIQ_LOG2)),
            masters: BTreeMap::new(),
            asids: BTreeMap::new(),
            vmids: BTreeMap::new(),
            log: Vec::new(),
            events: Vec::new(),
            submissions: 0,
            fail_submit_at: None,
            retry_submit: false,
        };
        if !two_level_st {
            // Every linear STE starts as an aborting one (V = 1, Config =
            // abort): unknown StreamIDs are terminated silently.
            if let Err(e) = d.init_stes(mem, strtab, 1u64 << sid_bits) {
                give_back(frames, &taken);
                return Err(e);
            }
        }
        match d.enable(mem) {
            Ok(()) => Ok(d),
            Err(e) => {
                give_back(frames, &taken);
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

    /// Writes CR0 and waits for CR0ACK to match (§6.3.9, §6.3.10).
    fn write_cr0(&self, v: u32) -> Result<(), Errno> {
        self.w(o::CR0, Width::W32, v as u64)?;
        for _ in 0..POLL_LIMIT {
            if self.r(o::CR0ACK, Width::W32)? as u32 == v {
                return Ok(());
            }
        }
        Err(Errno::TimedOut)
    }

    fn enable(&mut self, mem: &dyn PhysMem) -> Result<(), Errno> {
        const SMMUEN: u32 = 1;
        const PRIQEN: u32 = 1 << 1;
        const EVENTQEN: u32 = 1 << 2;
        const CMDQEN: u32 = 1 << 3;
        if self.r(o::CR0, Width::W32)? as u32 & SMMUEN != 0 {
            self.write_cr0(0)?;
        }
        // CR1 (§6.3.11): tables and queues write-back cacheable, inner
        // shareable. CR2 (§6.3.12): record C_BAD_STREAMID.
        self.w(o::CR1, Width::W32, 0b11_01_01 << 6 | 0b11_01_01)?;
        self.w(o::CR2, Width::W32, 1 << 1)?;
        let cfg = if self.two_level_st {
            1u64 << 16 | (STE_SPLIT as u64) << 6 | self.sid_bits as u64
        } else {
            self.sid_bits as u64
        };
        self.w(o::STRTAB_BASE, Width::W64, 1 << 62 | self.strtab.raw())?;
        self.w(o::STRTAB_BASE_CFG, Width::W32, cfg)?;
        let base = |q: &Queue| 1u64 << 62 | q.base.raw() | q.log2 as u64;
        self.w(o::CMDQ_BASE, Width::W64, base(&self.cmdq))?;
        self.w(o::CMDQ_PROD, Width::W32, 0)?;
        self.w(o::CMDQ_CONS, Width::W32, 0)?;
        self.write_cr0(CMDQEN)?;
        self.submit(mem, &[Command::cfgi_all(), Command::TlbiNsnhAll])?;
        self.w(o::EVENTQ_BASE, Width::W64, base(&self.evtq))?;
        self.w(o::EVENTQ_PROD, Width::W32, 0)?;
        self.w(o::EVENTQ_CONS, Width::W32, 0)?;
        let mut cr0 = CMDQEN | EVENTQEN;
        self.write_cr0(cr0)?;
        if let Some(p) = self.priq {
            self.w(o::PRIQ_BASE, Width::W64, base(&p))?;
            self.w(o::PRIQ_PROD, Width::W32, 0)?;
            self.w(o::PRIQ_CONS, Width::W32, 0)?;
            cr0 |= PRIQEN;
            self.write_cr0(cr0)?;
        }
        self.write_cr0(cr0 | SMMUEN)
    }

    /// The capabilities the SMMU reported.
    pub fn caps(&self) -> &SmmuCaps {
        &self.caps
    }

    /// The hardware-visible actions so far, in order.
    pub fn log(&self) -> &[HwAction] {
        &self.log
    }

    /// Takes the action log.
    pub fn take_log(&mut self) -> Vec<HwAction> {
        std::mem::take(&mut self.log)
    }

    /// Events read from the event queue that were not page faults (kept
    /// for inspection, at most 256, oldest dropped first).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Makes the `n`-th command submission from now fail as a CMD_SYNC
    /// time-out before the SMMU sees it (1 = the next one); `None` disables
    /// injection (the fail_nth sweep of semantics §5.8).
    pub fn fail_nth_submit(&mut self, n: Option<u64>) {
        self.fail_submit_at = n.map(|n| self.submissions + n);
    }

    /// Command submissions so far, injected failures included (for sizing
    /// fault-injection sweeps).
    pub fn submissions(&self) -> u64 {
        self.submissions
    }

    /// Puts `cmds` and a CMD_SYNC on the command queue and waits until the
    /// SMMU has consumed them (SMMUv3 §4.7: CMD_SYNC completes once every
    /// earlier command has). Each command, the CMD_SYNC included, is
    /// logged.
    ///
    /// # Errors
    /// [`Errno::Inval`] for CERROR_ILL, [`Errno::Fault`] for CERROR_ABT,
    /// [`Errno::TimedOut`] for CERROR_ATC_INV_SYNC or a queue that does not
    /// drain. After an error the bad command is replaced by a CMD_SYNC and
    /// the error acknowledged, so the queue goes on (as Linux does). Inside
    /// [`SmmuDriver::retrying`] a time-out is retried once.
    pub fn submit(&mut self, mem: &dyn PhysMem, cmds: &[Command]) -> Result<(), Errno> {
        match self.submit_once(mem, cmds) {
            Err(Errno::TimedOut) if self.retry_submit => self.submit_once(mem, cmds),
            r => r,
        }
    }

    /// Runs `f` with every command submission that times out retried once,
    /// as the VT-d driver's teardowns do: for steps that cannot be undone
    /// half-way (removing a PASID or a RID domain, releasing a master, the
    /// invalidations that follow a replace), where giving up would leave a
    /// live CD, a half-written STE or stale TLB and ATC entries behind.
    pub(crate) fn retrying<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let was = std::mem::replace(&mut self.retry_submit, true);
        let r = f(self);
        self.retry_submit = was;
        r
    }

    fn submit_once(&mut self, mem: &dyn PhysMem, cmds: &[Command]) -> Result<(), Errno> {
        let slots = 1usize << self.cmdq.log2;
        if cmds.len() + 1 >= slots {
            return Err(Errno::Inval);
        }
        self.submissions += 1;
        if self.fail_submit_at == Some(self.submissions) {
            return Err(Errno::TimedOut);
        }
        // Every batch is drained (or recovered) before this returns, so the
        // queue is empty here and the batch fits.
        for c in cmds.iter().chain([&SYNC]) {
            self.write_cmd(mem, self.cmdq.ptr, c)?;
            self.cmdq.ptr = self.cmdq.ptr.incremented(self.cmdq.log2);
        }
        self.log.extend(cmds.iter().chain([&SYNC]).map(|c| HwAction::Command(*c)));
        let prod = self.cmdq.ptr;
        self.w(o::CMDQ_PROD, Width::W32, prod.words()[0])?;
        for _ in 0..POLL_LIMIT {
            let cons = QueueIndex::from_words([self.r(o::CMDQ_CONS, Width::W32)?]);
            let err = cons.get(QueueIndex::ERR);
            if err != 0 {
                return Err(self.recover_cmdq(mem, cons, err));
            }
            if cons.pointer(self.cmdq.log2) == prod.pointer(self.cmdq.log2) {
                return Ok(());
            }
        }
        Err(Errno::TimedOut)
    }

    /// Writes `c` into the command-queue slot `at` points at.
    fn write_cmd(&self, mem: &dyn PhysMem, at: QueueIndex, c: &Command) -> Result<(), Errno> {
        let addr = self.cmdq.base.raw() + 16 * at.index(self.cmdq.log2) as u64;
        let w = c.encode();
        mem.write_u64(Hpa::new(addr), w[0]).map_err(|_| Errno::Fault)?;
        mem.write_u64(Hpa::new(addr + 8), w[1]).map_err(|_| Errno::Fault)
    }

    /// Recovers from a command error (§7.1): the failing command is
    /// replaced by a CMD_SYNC, GERROR.CMDQ_ERR acknowledged, and the queue
    /// drained.
    fn recover_cmdq(&mut self, mem: &dyn PhysMem, cons: QueueIndex, err: u64) -> Errno {
        let _ = self.write_cmd(mem, cons, &SYNC);
        if let Ok(gerror) = self.r(o::GERROR, Width::W32) {
            let _ = self.w(o::GERRORN, Width::W32, gerror);
        }
        for _ in 0..POLL_LIMIT {
            match self.r(o::CMDQ_CONS, Width::W32) {
                Ok(c)
                    if QueueIndex::from_words([c]).pointer(self.cmdq.log2) == self.cmdq.ptr.pointer(self.cmdq.log2) =>
                {
                    break
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        match CmdqError::from_bits(err) {
            Some(CmdqError::Illegal) => Errno::Inval,
            Some(CmdqError::Abort) => Errno::Fault,
            _ => Errno::TimedOut,
        }
    }

    /// Writes aborting STEs (V = 1, Config = abort) at `base`.
    fn init_stes(&self, mem: &dyn PhysMem, base: Hpa, n: u64) -> Result<(), Errno> {
        let abort = abort_ste();
        for i in 0..n {
            for (k, w) in abort.iter().enumerate() {
                mem.write_u64(Hpa::new(base.raw() + 64 * i + 8 * k as u64), *w).map_err(|_| Errno::Fault)?;
            }
        }
        Ok(())
    }

    /// The address of `sid`'s STE, if its part of the table exists.
    fn ste_addr(&self, sid: u32) -> Option<Hpa> {
        if sid >> self.sid_bits != 0 {
            return None;
        }
        if !self.two_level_st {
            return Some(Hpa::new(self.strtab.raw() + 64 * sid as u64));
        }
        let leaf = self.st_leaves.get(&(sid >> STE_SPLIT))?;
        Some(Hpa::new(leaf.raw() + 64 * (sid & ((1 << STE_SPLIT) - 1)) as u64))
    }

    /// Makes `sid`'s part of a 2-level stream table exist (§5.1): a leaf of
    /// aborting STEs, then the L1 descriptor pointing at it.
    fn ensure_ste(&mut self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, sid: u32) -> Result<(), Errno> {
        if sid >> self.sid_bits != 0 {
            return Err(Errno::Range);
        }
        if !self.two_level_st || self.st_leaves.contains_key(&(sid >> STE_SPLIT)) {
            return Ok(());
        }
        let pages = (64u64 << STE_SPLIT) / 4096;
        let leaf = frames.alloc_contiguous(mem, pages)?;
        let l1 = L1Std::default().with(L1Std::SPAN, STE_SPLIT as u64 + 1).with_in_place(L1Std::L2PTR, leaf.raw());
        let at = Hpa::new(self.strtab.raw() + 8 * (sid >> STE_SPLIT) as u64);
        let r = self
            .init_stes(mem, leaf, 1 << STE_SPLIT)
            .and_then(|_| mem.write_u64(at, l1.words()[0]).map_err(|_| Errno::Fault));
        if let Err(e) = r {
            free_pages(frames, leaf, pages);
            return Err(e);
        }
        self.st_leaves.insert(sid >> STE_SPLIT, leaf);
        Ok(())
    }

    /// Reads the 8 words at `at`.
    fn read_words(mem: &dyn PhysMem, at: Hpa) -> Result<entry::Words, Errno> {
        let mut w = [0u64; entry::QWORDS];
        for (i, v) in w.iter_mut().enumerate() {
            *v = mem.read_u64(Hpa::new(at.raw() + 8 * i as u64)).map_err(|_| Errno::Fault)?;
        }
        Ok(w)
    }

    /// Takes a live STE to `target` with the used-bits algorithm, each
    /// state followed by CFGI_STE + CMD_SYNC (semantics §3.7). Returns the
    /// number of syncs.
    fn write_ste(&mut self, mem: &dyn PhysMem, sid: u32, target: &entry::Words) -> Result<usize, Errno> {
        let at = self.ste_addr(sid).ok_or(Errno::Range)?;
        let cur = Self::read_words(mem, at)?;
        let (states, _) = entry::plan(&cur, target, entry::ste_used, Ste::V);
        let mut prev = cur;
        for s in &states {
            let words = store_changed(mem, at, &prev, s)?;
            self.log.push(HwAction::SteWrite { sid, words });
            self.submit(mem, &[Command::CfgiSte { sid: StreamId(sid), leaf: true }])?;
            prev = *s;
        }
        Ok(states.len())
    }

    /// The address of CD `ssid` of a master, if its table part exists.
    fn cd_addr(t: &CdTable, ssid: u32) -> Option<Hpa> {
        if !t.two_level {
            return Some(Hpa::new(t.base.raw() + 64 * ssid as u64));
        }
        let leaf = t.leaves.get(&(ssid >> CD_SPLIT))?;
        Some(Hpa::new(leaf.raw() + 64 * (ssid & ((1 << CD_SPLIT) - 1)) as u64))
    }

    /// Makes the master's CD table, and the leaf holding `ssid`, exist.
    fn ensure_cd(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        sid: u32,
        ssid: u32,
    ) -> Result<(), Errno> {
        let m = self.masters.get_mut(&sid).ok_or(Errno::NoDev)?;
        if m.cds.is_none() {
            let two_level = m.ssid_bits > CD_SPLIT;
            // Linear: 64 bytes per CD; 2-level: 8 bytes per L1CD.
            let bytes = if two_level { 8u64 << (m.ssid_bits - CD_SPLIT) } else { 64u64 << m.ssid_bits };
            let pages = bytes.div_ceil(4096);
            let base = frames.alloc_contiguous(mem, pages)?;
            m.cds = Some(CdTable { base, pages, two_level, leaves: BTreeMap::new() });
        }
        let Some(t) = m.cds.as_mut() else { return Err(Errno::NoDev) };
        if !t.two_level || t.leaves.contains_key(&(ssid >> CD_SPLIT)) {
            return Ok(());
        }
        let pages = (64u64 << CD_SPLIT) / 4096;
        let leaf = frames.alloc_contiguous(mem, pages)?;
        let l1 = L1Cd::new(leaf.raw());
        let at = Hpa::new(t.base.raw() + 8 * (ssid >> CD_SPLIT) as u64);
        if mem.write_u64(at, l1.words()[0]).is_err() {
            free_pages(frames, leaf, pages);
            return Err(Errno::Fault);
        }
        t.leaves.insert(ssid >> CD_SPLIT, leaf);
        Ok(())
    }

    /// Frees a master's CD table (no STE may point at it any more).
    fn free_cd_table(&mut self, frames: &mut dyn FrameAllocator, sid: u32) {
        let Some(t) = self.masters.get_mut(&sid).and_then(|m| m.cds.take()) else { return };
        for leaf in t.leaves.values() {
            free_pages(frames, *leaf, (64u64 << CD_SPLIT) / 4096);
        }
        free_pages(frames, t.base, t.pages);
    }

    /// Frees the level-2 CD table holding `ssid` (the CD table itself
    /// stays): the L1CD is cleared and CFGI_CD without Leaf drops any copy
    /// of it the SMMU holds (SMMUv3 §4.3.3) before the frames go back. If
    /// that invalidation fails, the L1CD is restored and the leaf kept.
    /// None of the leaf's CDs may be live.
    fn free_cd_leaf(&mut self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, sid: u32, ssid: u32) {
        let index = ssid >> CD_SPLIT;
        let Some(t) = self.masters.get(&sid).and_then(|m| m.cds.as_ref()).filter(|t| t.two_level) else { return };
        let Some(leaf) = t.leaves.get(&index).copied() else { return };
        let (Ok(sub), at) = (SubstreamId::try_new(ssid), Hpa::new(t.base.raw() + 8 * index as u64)) else { return };
        let Ok(l1) = mem.read_u64(at) else { return };
        if mem.write_u64(at, 0).is_err() {
            return;
        }
        if self.submit(mem, &[Command::CfgiCd { sid: StreamId(sid), ssid: sub, leaf: false }]).is_err() {
            let _ = mem.write_u64(at, l1);
            return;
        }
        if let Some(t) = self.masters.get_mut(&sid).and_then(|m| m.cds.as_mut()) {
            t.leaves.remove(&index);
        }
        free_pages(frames, leaf, (64u64 << CD_SPLIT) / 4096);
    }

    /// Takes a live CD to `target` with the used-bits algorithm, each state
    /// followed by CFGI_CD + CMD_SYNC. Returns the number of syncs.
    fn write_cd(&mut self, mem: &dyn PhysMem, sid: u32, ssid: u32, target: &entry::Words) -> Result<usize, Errno> {
        let t = self.masters.get(&sid).and_then(|m| m.cds.as_ref()).ok_or(Errno::NoDev)?;
        let at = Self::cd_addr(t, ssid).ok_or(Errno::Inval)?;
        let cur = Self::read_words(mem, at)?;
        let (states, _) = entry::plan(&cur, target, entry::cd_used, Cd::V);
        let sub = SubstreamId::try_new(ssid).map_err(|_| Errno::Inval)?;
        let mut prev = cur;
        for s in &states {
            let words = store_changed(mem, at, &prev, s)?;
            self.log.push(HwAction::CdWrite { sid, ssid, words });
            self.submit(mem, &[Command::CfgiCd { sid: StreamId(sid), ssid: sub, leaf: true }])?;
            prev = *s;
        }
        Ok(states.len())
    }

    /// The STE of `sid` as it is in memory.
    ///
    /// # Errors
    /// [`Errno::Range`] for a StreamID without an STE; [`Errno::Fault`].
    pub fn read_ste(&self, mem: &dyn PhysMem, sid: u32) -> Result<Ste, Errno> {
        let at = self.ste_addr(sid).ok_or(Errno::Range)?;
        Ok(Ste::from_words(Self::read_words(mem, at)?))
    }

    /// CD `ssid` of the master at `sid` as it is in memory.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] when the master has no CD table, `ssid` is beyond
    /// its SubstreamID bits (past the end of a linear table) or has no
    /// leaf; [`Errno::Fault`].
    pub fn read_cd(&self, mem: &dyn PhysMem, sid: u32, ssid: u32) -> Result<Cd, Errno> {
        let m = self.masters.get(&sid).filter(|m| ssid >> m.ssid_bits == 0).ok_or(Errno::NoEnt)?;
        let t = m.cds.as_ref().ok_or(Errno::NoEnt)?;
        let at = Self::cd_addr(t, ssid).ok_or(Errno::NoEnt)?;
        Ok(Cd::from_words(Self::read_words(mem, at)?))
    }
}

/// Whether SubstreamIDs `a` and `b` have their CDs in the same level-2 CD
/// table (of a 2-level CD table).
fn same_cd_leaf(a: u32, b: u32) -> bool {
    a >> CD_SPLIT == b >> CD_SPLIT
}

/// An STE that aborts every transaction silently.
fn abort_ste() -> entry::Words {
    Ste::default().with(Ste::V, 1).with_config(SteConfig::Abort).words()
}

/// Stores the words of `next` that differ from `prev` at `at`, in order
/// (each a single 64-bit store, §3.21.3); returns them as a bit mask.
fn store_changed(mem: &dyn PhysMem, at: Hpa, prev: &entry::Words, next: &entry::Words) -> Result<u8, Errno> {
    let mut words = 0u8;
    for i in 0..entry::QWORDS {
        if prev[i] != next[i] {
            mem.write_u64(Hpa::new(at.raw() + 8 * i as u64), next[i]).map_err(|_| Errno::Fault)?;
            words |= 1 << i;
        }
    }
    Ok(words)
}

fn free_pages(frames: &mut dyn FrameAllocator, base: Hpa, pages: u64) {
    for p in 0..pages {
        frames.free_frame(Hpa::new(base.raw() + p * 4096));
    }
}
