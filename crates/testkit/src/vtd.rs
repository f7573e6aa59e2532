//! Programming a VT-d unit the way a driver does: tables in memory, then
//! registers. Generic over [`RegisterBus`] and [`PhysMem`], so it works on
//! any implementation (the model, a fake, a vIOMMU).

use std::collections::HashMap;

use iommu_format::vtd::context::{ContextRepr, ScalableContextRepr};
use iommu_format::vtd::pasid::{dir_offset, table_offset, PasidDirEntry, PasidEntryRepr};
use iommu_format::vtd::regs::{gcmd, offset, Caps};
use iommu_format::vtd::root::{RootEntry, ScalableRootEntry};
use iommu_types::{Hpa, Pasid, PhysMem, RegisterBus, SourceId, Width};

use crate::PageAlloc;

/// Builds root, context and PASID tables for a set of devices and turns
/// translation on.
#[derive(Debug)]
pub struct VtdSetup {
    /// Scalable-mode tables (else legacy).
    pub scalable: bool,
    /// Root table.
    pub root: Hpa,
    /// Context tables by bus (legacy) or by (bus, upper half) (scalable).
    ctx_tables: HashMap<(u8, bool), Hpa>,
    /// PASID directory and tables by source-id.
    pasid_dirs: HashMap<u16, Hpa>,
    pasid_tables: HashMap<(u16, u32), Hpa>,
}

/// Wraps a memory write error as a panic with context (test setup only).
fn put<M: PhysMem + ?Sized>(mem: &M, addr: Hpa, bytes: &[u8]) {
    mem.write(addr, bytes).unwrap_or_else(|e| panic!("setup write at {addr}: {e}"));
}

impl VtdSetup {
    /// A fresh root table from `alloc`.
    pub fn new(alloc: &mut PageAlloc, scalable: bool) -> Self {
        Self {
            scalable,
            root: alloc.page(),
            ctx_tables: HashMap::new(),
            pasid_dirs: HashMap::new(),
            pasid_tables: HashMap::new(),
        }
    }

    fn context_table<M: PhysMem + ?Sized>(&mut self, mem: &M, alloc: &mut PageAlloc, sid: SourceId) -> Hpa {
        let upper = self.scalable && sid.devfn() >= 0x80;
        if let Some(t) = self.ctx_tables.get(&(sid.bus(), upper)) {
            return *t;
        }
        let t = alloc.page();
        self.ctx_tables.insert((sid.bus(), upper), t);
        let re_addr = Hpa::new(self.root.raw() + 16 * sid.bus() as u64);
        let bytes = if self.scalable {
            let lower = self.ctx_tables.get(&(sid.bus(), false)).copied();
            let up = self.ctx_tables.get(&(sid.bus(), true)).copied();
            ScalableRootEntry::new(lower, up).to_bytes()
        } else {
            RootEntry::new_present(t).to_bytes()
        };
        put(mem, re_addr, &bytes);
        t
    }

    /// A legacy context entry for `sid` (`ce` gives the translation type,
    /// tables and domain).
    pub fn legacy_device<M: PhysMem + ?Sized>(
        &mut self,
        mem: &M,
        alloc: &mut PageAlloc,
        sid: SourceId,
        ce: &ContextRepr,
    ) {
        let t = self.context_table(mem, alloc, sid);
        put(mem, Hpa::new(t.raw() + 16 * sid.devfn() as u64), &ce.encode().to_bytes());
    }

    /// A scalable context entry for `sid` with a full-size PASID directory
    /// (PDTS=7), PASIDs, ATS and page requests enabled as given.
    pub fn scalable_device<M: PhysMem + ?Sized>(
        &mut self,
        mem: &M,
        alloc: &mut PageAlloc,
        sid: SourceId,
        ats: bool,
        pri: bool,
    ) {
        let t = self.context_table(mem, alloc, sid);
        // A 2^14-entry directory is 128 KiB: 32 pages, allocated contiguously.
        let dir = alloc.page();
        for _ in 1..32 {
            alloc.page();
        }
        self.pasid_dirs.insert(sid.raw(), dir);
        let ce = ScalableContextRepr {
            fpd: false,
            dte: ats,
            paside: true,
            pre: pri,
            pdts: 7,
            pasid_dir: dir,
            rid_pasid: Pasid::ZERO,
            rid_priv: false,
        };
        put(mem, Hpa::new(t.raw() + 32 * (sid.devfn() & 0x7F) as u64), &ce.encode().to_bytes());
    }

    /// Installs `entry` as the PASID entry of (`sid`, `pasid`); the device
    /// must have a scalable context entry.
    ///
    /// # Panics
    /// If `sid` has no scalable context entry (a test setup error).
    pub fn pasid_entry<M: PhysMem + ?Sized>(
        &mut self,
        mem: &M,
        alloc: &mut PageAlloc,
        sid: SourceId,
        pasid: Pasid,
        entry: &PasidEntryRepr,
    ) {
        let dir = *self.pasid_dirs.get(&sid.raw()).expect("scalable_device first");
        let key = (sid.raw(), pasid.raw() >> 6);
        let table = match self.pasid_tables.get(&key) {
            Some(t) => *t,
            None => {
                let t = alloc.page();
                self.pasid_tables.insert(key, t);
                put(mem, Hpa::new(dir.raw() + dir_offset(pasid)), &PasidDirEntry::new_present(t).to_bytes());
                t
            }
        };
        put(mem, Hpa::new(table.raw() + table_offset(pasid)), &entry.encode().to_bytes());
    }

    /// Points the unit at the root table, invalidates the context cache
    /// and the IOTLB through the registers and enables translation, the way
    /// a driver does: each GCMD carries the persistent enables read back
    /// from GSTS, and every command is waited for (GSTS.RTPS, CCMD.ICC and
    /// IOTLB.IVT cleared with CAIG/IAIG reporting a global invalidation,
    /// GSTS.TES).
    ///
    /// # Panics
    /// On a register bus error or a handshake that never completes (a test
    /// setup error).
    pub fn enable<B: RegisterBus + ?Sized>(&self, bus: &B) {
        const POLLS: usize = 1000;
        let rd = |off, width| bus.read(off, width).unwrap_or_else(|e| panic!("register read: {e}"));
        let w = |off, width, v| bus.write(off, width, v).unwrap_or_else(|e| panic!("register write: {e}"));
        let command = |cmd: u32| {
            let gsts = rd(offset::GSTS, Width::W32) as u32;
            w(offset::GCMD, Width::W32, ((gsts & gcmd::PERSISTENT) | cmd) as u64);
            let done = (0..POLLS).any(|_| rd(offset::GSTS, Width::W32) as u32 & cmd == cmd);
            assert!(done, "GSTS never reported GCMD {cmd:#x}");
        };
        let invalidate = |off: u64, busy_bit: u32, actual_shift: u32| {
            let done = (0..POLLS).any(|_| rd(off, Width::W64) >> busy_bit & 1 == 0);
            assert!(done, "invalidation at {off:#x} never completed");
            assert_eq!(rd(off, Width::W64) >> actual_shift & 3, 1, "invalidation at {off:#x} was not global");
        };
        let caps = Caps::new(rd(offset::CAP, Width::W64), rd(offset::ECAP, Width::W64));
        w(offset::RTADDR, Width::W64, self.root.raw() | if self.scalable { 1 << 10 } else { 0 });
        command(gcmd::SRTP);
        // CCMD: ICC (63) | CIRG=01b, global (62:61); CAIG at 60:59.
        w(offset::CCMD, Width::W64, 1 << 63 | 1 << 61);
        invalidate(offset::CCMD, 63, 59);
        // IOTLB: IVT (63) | IIRG=01b, global (61:60); IAIG at 58:57.
        let iotlb = caps.iotlb_offset() + 8;
        w(iotlb, Width::W64, 1 << 63 | 1 << 60);
        invalidate(iotlb, 63, 57);
        command(gcmd::TE);
    }
}
