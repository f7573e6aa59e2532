//! SMMUv3 translation (SMMUv3 §3.3 configuration lookup, §3.4 translation,
//! §3.5 fault recording) through guest-controlled structures: stream
//! table, level-1 descriptors, CDs and page tables are all fuzz bytes.
//!
//! The simulated memory is the whole physical address space the SMMU can
//! output (2^OAS bytes: 44 bits for the QEMU profiles, 48 for the full
//! one). Every byte never written reads from the tile T, repeated over the
//! whole space (byte a = T[a % T.len()]), so any pointer a structure holds
//! leads to more fuzz bytes. The SMMU is brought up with
//! `iommu_testkit::smmuv3::Driver` (queues at the top of memory), with the
//! stream table registers taken from the input.
//!
//! Input format (a fixed 268-byte header, then the tile):
//! ```text
//! byte 0       bits 1:0: SMMU profile (0 full, 1 QEMU nested, 2 QEMU stage 1
//!              only, 3 QEMU stage 2 only); bit 2: CR2.RECINVSID; bit 3:
//!              leave SMMUEN clear (bypass or abort by GBPA); bit 4:
//!              GBPA.ABORT; bit 5: STRTAB_BASE as is (else reduced modulo
//!              2^OAS); bit 6: StreamIDs as is (else modulo 64)
//! bytes 1-4    STRTAB_BASE_CFG (u32 LE)
//! bytes 5-12   STRTAB_BASE (u64 LE)
//! byte 13      number of requests (% 16 + 1)
//! bytes 14-267 16 request records of 16 bytes (the last one 14 bytes):
//!                sid:u16 ssid:u32 (bit 31 present, 19:0 value) addr:u64
//!                access:u8 (bits r, w, x, priv)
//!                mode:u8 (bit 0: translate twice; bit 1: DMA of 4 KiB + 1
//!                         bytes, bit 2: a write; bits 7:6: address 0 as is,
//!                         1 low 32 bits, 2 modulo 2^OAS, 3 bit 47 copied to
//!                         bits 63:48)
//! byte 268..   the tile T
//! ```
//!
//! Properties: nothing panics; bring-up through the driver succeeds; every
//! successful translation's output is inside the simulated memory (below
//! 2^OAS) unless the SMMU is disabled and the request bypassed it
//! unchanged; a translation keeps the page offset; translating the same
//! request twice in a row succeeds twice with the same output; every event
//! record written decodes and names the request's StreamID, and a
//! translation reported as recorded wrote exactly its event.
#![no_main]

use std::collections::HashMap;
use std::sync::Mutex;

use iommu_format::smmuv3::regs::offset as o;
use iommu_fuzz::{access, Input};
use iommu_hw::smmuv3::{QemuStages, Request, Smmu, SmmuConfig};
use iommu_testkit::smmuv3::{BumpAlloc, Driver, DriverConfig};
use iommu_types::{Hpa, MemError, NullInterrupts, PhysMem, RegisterBus, StreamId, SubstreamId, Width};
use libfuzzer_sys::fuzz_target;

const PAGE: u64 = 4096;

/// 2^bits bytes of memory: pages never written read the tile repeated
/// over the whole space; written pages live in a map.
struct Sparse<'a> {
    tile: &'a [u8],
    size: u64,
    pages: Mutex<HashMap<u64, Box<[u8; PAGE as usize]>>>,
}

impl<'a> Sparse<'a> {
    fn new(bits: u32, tile: &'a [u8]) -> Self {
        Self { tile, size: 1 << bits, pages: Mutex::new(HashMap::new()) }
    }

    fn tile_bytes(&self, addr: u64, out: &mut [u8]) {
        if self.tile.is_empty() {
            out.fill(0);
            return;
        }
        let n = self.tile.len() as u64;
        for (i, b) in out.iter_mut().enumerate() {
            *b = self.tile[((addr + i as u64) % n) as usize];
        }
    }

    fn check(&self, addr: Hpa, len: usize) -> Result<(), MemError> {
        match addr.raw().checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(MemError::Unbacked(addr)),
        }
    }

    /// Runs `f` on each page-sized piece of `[addr, addr + len)`, with the
    /// page materialised from the tile when `write`.
    fn each(
        &self,
        addr: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(Option<&mut [u8; PAGE as usize]>, u64, usize, usize),
    ) {
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = 0;
        while done < len {
            let a = addr + done as u64;
            let page = a / PAGE;
            let n = ((PAGE - a % PAGE) as usize).min(len - done);
            if write && !pages.contains_key(&page) {
                let mut p = Box::new([0u8; PAGE as usize]);
                self.tile_bytes(page * PAGE, &mut p[..]);
                pages.insert(page, p);
            }
            f(pages.get_mut(&page).map(|p| &mut **p), a, done, n);
            done += n;
        }
    }
}

impl PhysMem for Sparse<'_> {
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(addr, buf.len())?;
        self.each(addr.raw(), buf.len(), false, |page, a, done, n| {
            let out = &mut buf[done..done + n];
            match page {
                Some(p) => out.copy_from_slice(&p[(a % PAGE) as usize..(a % PAGE) as usize + n]),
                None => self.tile_bytes(a, out),
            }
        });
        Ok(())
    }

    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), MemError> {
        self.check(addr, data.len())?;
        self.each(addr.raw(), data.len(), true, |page, a, done, n| {
            if let Some(p) = page {
                p[(a % PAGE) as usize..(a % PAGE) as usize + n].copy_from_slice(&data[done..done + n]);
            }
        });
        Ok(())
    }

    fn compare_exchange_u64(&self, addr: Hpa, current: u64, new: u64) -> Result<Result<u64, u64>, MemError> {
        if addr.raw() % 8 != 0 {
            return Err(MemError::Misaligned(addr));
        }
        self.check(addr, 8)?;
        let mut out = Ok(current);
        self.each(addr.raw(), 8, true, |page, a, _, _| {
            if let Some(p) = page {
                let at = (a % PAGE) as usize;
                let mut b = [0u8; 8];
                b.copy_from_slice(&p[at..at + 8]);
                let now = u64::from_le_bytes(b);
                if now == current {
                    p[at..at + 8].copy_from_slice(&new.to_le_bytes());
                } else {
                    out = Err(now);
                }
            }
        });
        Ok(out)
    }
}

fn profile(sel: u8) -> SmmuConfig {
    match sel & 3 {
        0 => SmmuConfig::full(),
        1 => SmmuConfig::qemu(QemuStages::Nested),
        2 => SmmuConfig::qemu(QemuStages::S1Only),
        _ => SmmuConfig::qemu(QemuStages::S2Only),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let strtab_cfg = inp.u32();
    let strtab_base = inp.u64();
    let n = inp.u8() as usize % 16 + 1;
    let records = inp.bytes(254);
    let tile = inp.rest();

    let cfg = profile(flags);
    let oas = cfg.features().oas_bits;
    let size = 1u64 << oas;
    let unit = Smmu::new(cfg, Sparse::new(oas, tile), NullInterrupts);
    let mem = unit.mem();
    // Queues in the top MiB; the stream table registers from the input.
    let mut alloc = BumpAlloc::new(size - (1 << 20), size);
    let dcfg = DriverConfig {
        strtab_base: if flags & 0x20 != 0 { strtab_base } else { strtab_base % size },
        strtab_base_cfg: strtab_cfg,
        cmdq_log2: 4,
        eventq_log2: 6,
        cr2: if flags & 4 != 0 { 2 } else { 0 },
    };
    let mut driver = Driver::bring_up(&unit, mem, &mut alloc, &dcfg).expect("bring-up through the driver");
    let smmuen = flags & 8 == 0;
    if !smmuen {
        driver.set_cr0(0xC).expect("SMMUEN off");
    }
    if flags & 0x10 != 0 {
        unit.write(o::GBPA, Width::W32, 1 << 31 | 1 << 20).expect("GBPA");
    }
    assert_eq!(driver.drain_events(mem).expect("event queue"), [], "events before any transaction");

    let mut rec = Input::new(records);
    let mut buf = vec![0u8; PAGE as usize + 1];
    for _ in 0..n {
        let sid = rec.u16() as u32;
        let sid = StreamId(if flags & 0x40 != 0 { sid } else { sid % 64 });
        let ssid = rec.u32();
        let ssid = (ssid >> 31 != 0).then(|| SubstreamId::try_new(ssid & 0xF_FFFF).unwrap_or_default());
        let raw = rec.u64();
        let acc = access(rec.u8());
        let mode = rec.u8();
        let addr = match mode >> 6 {
            0 => raw,
            1 => raw & 0xFFFF_FFFF,
            2 => raw % size,
            _ => (((raw << 16) as i64) >> 16) as u64,
        };
        let req = Request { sid, ssid, addr, access: acc };
        let first = unit.translate(&req);
        match &first {
            Ok(t) => {
                let bypass = !smmuen && t.pa == addr;
                assert!(t.pa < size || bypass, "{req:?} translated outside memory (2^{oas}): {t:?}");
                assert_eq!(t.pa & 0xFFF, addr & 0xFFF, "{req:?}: page offset not kept: {t:?}");
            }
            Err(t) => {
                let events = driver.drain_events(mem).expect("event queue");
                let want = usize::from(t.recorded);
                assert_eq!(events.len(), want, "{req:?} -> {t:?}: records {events:?}");
                if let (Some(e), Some(got)) = (t.event, events.first()) {
                    assert_eq!((got.id, got.sid), (e.id, sid), "{req:?}: recorded event differs");
                }
            }
        }
        if mode & 1 != 0 {
            let second = unit.translate(&req);
            if let Ok(t1) = first {
                let t2 = second.unwrap_or_else(|e| panic!("{req:?}: {t1:?}, then {e:?}"));
                assert_eq!(t2.pa, t1.pa, "{req:?}: translated twice to different outputs");
            }
        }
        if mode & 2 != 0 {
            let r = if mode & 4 != 0 {
                unit.dma_write(sid, ssid, addr, &buf)
            } else {
                unit.dma_read(sid, ssid, addr, &mut buf)
            };
            let _ = std::hint::black_box(r);
        }
        for e in driver.drain_records(mem).expect("event queue") {
            let d = e.decode().unwrap_or_else(|| panic!("{req:?}: undecodable event record {e:?}"));
            assert_eq!(d.sid, sid, "{req:?}: event for another stream {d:?}");
        }
    }
});
