//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Inputs are parsed by hand with [`Input`] (not `arbitrary`) so that the
//! seed files in `seeds/` can be written byte by byte; every format is
//! documented at the top of its target. Reading past the end yields zeros,
//! so every byte string is a valid input.

use std::sync::atomic::{AtomicU64, Ordering};

use iommu_format::vtd::page_req::PageRequest;
use iommu_hw::vtd::VtdConfig;
use iommu_types::{Access, Hpa, Iova, MemError, PagedMemory, Pasid, PhysMem, SourceId};

/// The interrupt address range, VT-d §3.15: no translation may land in it.
pub const INTR: core::ops::Range<u64> = 0xFEE0_0000..0xFEF0_0000;

/// A little-endian reader over the fuzz input that pads with zeros.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Wraps the fuzz input.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes left.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Takes up to `n` bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        head
    }

    /// Takes everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.data)
    }

    fn fixed<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let src = self.bytes(N);
        b[..src.len()].copy_from_slice(src);
        b
    }

    /// One byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        self.fixed::<1>()[0]
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.fixed())
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.fixed())
    }

    /// A little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.fixed())
    }
}

/// The input split into little-endian u64 words (the last one zero-padded).
pub fn words(data: &[u8]) -> Vec<u64> {
    data.chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect()
}

/// Access bits: 0 read, 1 write, 2 exec, 3 privileged.
pub fn access(bits: u8) -> Access {
    Access { read: bits & 1 != 0, write: bits & 2 != 0, exec: bits & 4 != 0, privileged: bits & 8 != 0 }
}

/// A PASID field: bit 31 = present, bits 19:0 = value.
pub fn pasid(v: u32) -> Option<Pasid> {
    (v >> 31 != 0).then(|| Pasid::new_truncate(v as u64))
}

/// A request's (sid, pasid, addr) from 14 bytes.
pub fn request_ids(inp: &mut Input<'_>) -> (SourceId, Option<Pasid>, Iova) {
    (SourceId::new(inp.u16()), pasid(inp.u32()), Iova::new(inp.u64()))
}

/// A page request's flags and group index from 3 bytes (bits: r, w, x,
/// priv, last; PRGI 9 bits), for `rid`/`pasid` at the page of `addr`.
pub fn page_request(inp: &mut Input<'_>, rid: SourceId, pasid: Option<Pasid>, addr: Iova) -> PageRequest {
    let bits = inp.u8();
    let prgi = inp.u16() & 0x1FF;
    PageRequest {
        rid,
        pasid,
        addr: Iova::new(addr.raw() & !0xFFF),
        read: bits & 1 != 0,
        write: bits & 2 != 0,
        exec: bits & 4 != 0,
        privileged: bits & 8 != 0,
        lpig: bits & 16 != 0,
        prgi,
        private: [0, 0],
    }
}

/// Unit configurations a target may pick from with three bits: bits 1:0
/// choose the full-featured profile or one of three QEMU 10.0.2 profiles
/// (legacy; scalable with second-stage tables and PASIDs; scalable with
/// first-stage tables and a 39-bit address width); bit 2 sets CAP.CM
/// (caching mode).
pub fn config(sel: u8) -> VtdConfig {
    let cfg = match sel & 3 {
        0 => VtdConfig::full_featured(),
        1 => VtdConfig::qemu(false, false, 48, false),
        2 => VtdConfig::qemu(true, false, 48, true),
        _ => VtdConfig::qemu(true, true, 39, true),
    };
    cfg.caching_mode(sel & 4 != 0)
}

const PAGE: u64 = 4096;

/// Memory of `size` bytes whose first `tile_len` bytes hold `tile` repeated
/// (byte `a` reads `tile[a % tile.len()]`) and whose rest is zero.
///
/// It behaves exactly like a [`PagedMemory`] filled that way up front, but
/// is filled lazily: a page is copied from the tile into the backing
/// `PagedMemory` on its first write (or compare-exchange), so a fuzz
/// iteration pays only for the pages the model writes. Page materialisation
/// is not synchronised: use from one thread.
#[derive(Debug)]
pub struct TiledMemory<'a> {
    tile: &'a [u8],
    tile_len: u64,
    backing: PagedMemory,
    /// One bit per page: the page lives in `backing`.
    dirty: Vec<AtomicU64>,
}

impl<'a> TiledMemory<'a> {
    /// `size` bytes (a multiple of 4 KiB); the tiled prefix is `tile_len`
    /// bytes (rounded down to whole pages; nothing is tiled when `tile` is
    /// empty).
    pub fn new(size: u64, tile: &'a [u8], tile_len: u64) -> Self {
        let backing = PagedMemory::new(size);
        let pages = backing.size() / PAGE;
        let tile_len = if tile.is_empty() { 0 } else { tile_len.min(backing.size()) & !(PAGE - 1) };
        Self { tile, tile_len, backing, dirty: (0..pages.div_ceil(64)).map(|_| AtomicU64::new(0)).collect() }
    }

    fn is_dirty(&self, page: u64) -> bool {
        self.dirty[(page / 64) as usize].load(Ordering::Relaxed) >> (page % 64) & 1 != 0
    }

    /// Copies tiled pages overlapping `[addr, addr + len)` into the backing memory.
    fn materialise(&self, addr: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = addr / PAGE;
        let last = (addr + len - 1) / PAGE;
        for page in first..=last {
            if page * PAGE >= self.tile_len || self.is_dirty(page) {
                continue;
            }
            let mut buf = [0u8; PAGE as usize];
            self.tile_bytes(page * PAGE, &mut buf);
            let _ = self.backing.write(Hpa::new(page * PAGE), &buf);
            self.dirty[(page / 64) as usize].fetch_or(1 << (page % 64), Ordering::Relaxed);
        }
    }

    fn tile_bytes(&self, addr: u64, out: &mut [u8]) {
        let n = self.tile.len();
        let mut from = (addr % n as u64) as usize;
        let mut done = 0;
        while done < out.len() {
            let k = (n - from).min(out.len() - done);
            out[done..done + k].copy_from_slice(&self.tile[from..from + k]);
            done += k;
            from = 0;
        }
    }

    fn check(&self, addr: Hpa, len: usize) -> Result<(), MemError> {
        match addr.raw().checked_add(len as u64) {
            Some(end) if end <= self.backing.size() => Ok(()),
            _ => Err(MemError::Unbacked(addr)),
        }
    }
}

impl PhysMem for TiledMemory<'_> {
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(addr, buf.len())?;
        let mut a = addr.raw();
        let mut done = 0;
        while done < buf.len() {
            let page = a / PAGE;
            let n = ((PAGE - a % PAGE) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            if a < self.tile_len && !self.is_dirty(page) {
                self.tile_bytes(a, out);
            } else {
                self.backing.read(Hpa::new(a), out)?;
            }
            done += n;
            a += n as u64;
        }
        Ok(())
    }

    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), MemError> {
        self.check(addr, data.len())?;
        self.materialise(addr.raw(), data.len() as u64);
        self.backing.write(addr, data)
    }

    fn compare_exchange_u64(&self, addr: Hpa, current: u64, new: u64) -> Result<Result<u64, u64>, MemError> {
        if addr.raw() & 7 != 0 {
            return Err(MemError::Misaligned(addr));
        }
        self.check(addr, 8)?;
        self.materialise(addr.raw(), 8);
        self.backing.compare_exchange_u64(addr, current, new)
    }
}
