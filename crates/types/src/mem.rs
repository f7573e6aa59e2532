//! The memory port through which models read tables and perform DMA, and
//! [`PagedMemory`], a lock-free reference implementation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::Hpa;

/// A memory access could not be performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum MemError {
    /// No memory backs the address (a master abort on real hardware).
    #[error("no memory at {0}")]
    Unbacked(Hpa),
    /// An 8-byte atomic access at an address that is not 8-byte aligned.
    #[error("misaligned 8-byte access at {0}")]
    Misaligned(Hpa),
}

/// Physical memory as an IOMMU (or a driver building tables) sees it.
///
/// All methods take `&self`: an implementation is shared by the translating
/// threads of a multi-threaded VMM, so writes use interior mutability.
/// Implementations must make [`PhysMem::compare_exchange_u64`] atomic with
/// respect to the other methods, because page walkers use it for the
/// Accessed/Dirty updates that the architectures require to be atomic.
pub trait PhysMem {
    /// Reads `buf.len()` bytes starting at `addr`.
    ///
    /// # Errors
    /// [`MemError::Unbacked`] if any byte is not backed; `buf` may then be
    /// partly written.
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemError>;

    /// Writes `data` starting at `addr`.
    ///
    /// # Errors
    /// [`MemError::Unbacked`] if any byte is not backed; nothing is written then.
    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), MemError>;

    /// Reads a little-endian u64.
    ///
    /// # Errors
    /// As [`PhysMem::read`].
    fn read_u64(&self, addr: Hpa) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian u64.
    ///
    /// # Errors
    /// As [`PhysMem::write`].
    fn write_u64(&self, addr: Hpa, value: u64) -> Result<(), MemError> {
        self.write(addr, &value.to_le_bytes())
    }

    /// Atomically replaces the aligned u64 at `addr` with `new` if it equals
    /// `current`. Returns `Ok(Ok(current))` on success and `Ok(Err(actual))`
    /// when the value had changed.
    ///
    /// # Errors
    /// [`MemError::Misaligned`] or [`MemError::Unbacked`].
    fn compare_exchange_u64(&self, addr: Hpa, current: u64, new: u64) -> Result<Result<u64, u64>, MemError>;
}

impl<M: PhysMem + ?Sized> PhysMem for &M {
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read(addr, buf)
    }
    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), MemError> {
        (**self).write(addr, data)
    }
    fn read_u64(&self, addr: Hpa) -> Result<u64, MemError> {
        (**self).read_u64(addr)
    }
    fn write_u64(&self, addr: Hpa, value: u64) -> Result<(), MemError> {
        (**self).write_u64(addr, value)
    }
    fn compare_exchange_u64(&self, addr: Hpa, current: u64, new: u64) -> Result<Result<u64, u64>, MemError> {
        (**self).compare_exchange_u64(addr, current, new)
    }
}

impl<M: PhysMem + ?Sized> PhysMem for std::sync::Arc<M> {
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemError> {
        (**self).read(addr, buf)
    }
    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), MemError> {
        (**self).write(addr, data)
    }
    fn read_u64(&self, addr: Hpa) -> Result<u64, MemError> {
        (**self).read_u64(addr)
    }
    fn write_u64(&self, addr: Hpa, value: u64) -> Result<(), MemError> {
        (**self).write_u64(addr, value)
    }
    fn compare_exchange_u64(&self, addr: Hpa, current: u64, new: u64) -> Result<Result<u64, u64>, MemError> {
        (**self).compare_exchange_u64(addr, current, new)
    }
}

/// A read-only view of `M`: reads pass through, writes and successful
/// compare-exchanges change nothing (they still fail where `M` is
/// unbacked). For looking at tables without side effects: a walk through
/// it does not set accessed or dirty bits.
#[derive(Debug, Clone, Copy)]
pub struct ReadOnly<M>(pub M);

impl<M: PhysMem> PhysMem for ReadOnly<M> {
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.read(addr, buf)
    }

    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), MemError> {
        // Probe that the range is backed, in stack-sized pieces.
        let mut scratch = [0u8; 64];
        let mut done = 0usize;
        while done < data.len() {
            let n = (data.len() - done).min(scratch.len());
            let at = addr.raw().checked_add(done as u64).ok_or(MemError::Unbacked(addr))?;
            self.0.read(Hpa::new(at), &mut scratch[..n])?;
            done += n;
        }
        Ok(())
    }

    fn compare_exchange_u64(&self, addr: Hpa, current: u64, _new: u64) -> Result<Result<u64, u64>, MemError> {
        if addr.raw() % 8 != 0 {
            return Err(MemError::Misaligned(addr));
        }
        let now = self.0.read_u64(addr)?;
        Ok(if now == current { Ok(current) } else { Err(now) })
    }
}

const PAGE_SHIFT: u32 = 12;
const WORDS_PER_PAGE: usize = 512;

type Page = [AtomicU64; WORDS_PER_PAGE];

/// Zero-initialised physical memory `[0, size)`, allocated a 4 KiB page at a
/// time on first write and readable and writable from many threads without a
/// lock (each page is an array of atomics; pages are published once through
/// a [`OnceLock`]). Addresses at or above `size` are unbacked.
///
/// Reads of never-written pages allocate nothing. Multi-byte accesses are
/// atomic per naturally aligned 8-byte word, not as a whole, which is what a
/// memory system guarantees to DMA as well.
pub struct PagedMemory {
    size: u64,
    pages: Box<[OnceLock<Box<Page>>]>,
}

impl core::fmt::Debug for PagedMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let touched = self.pages.iter().filter(|p| p.get().is_some()).count();
        f.debug_struct("PagedMemory").field("size", &self.size).field("pages_touched", &touched).finish()
    }
}

impl PagedMemory {
    /// The largest memory this type will model (64 GiB): the page directory
    /// is allocated eagerly, 16 bytes per 4 KiB page.
    pub const MAX_SIZE: u64 = 64 << 30;

    /// Memory of `size` bytes (rounded up to 4 KiB), all zero.
    ///
    /// # Panics
    /// Panics if `size` exceeds [`PagedMemory::MAX_SIZE`].
    pub fn new(size: u64) -> Self {
        assert!(size <= Self::MAX_SIZE, "PagedMemory larger than MAX_SIZE");
        let n = size.div_ceil(1 << PAGE_SHIFT) as usize;
        Self { size: (n as u64) << PAGE_SHIFT, pages: (0..n).map(|_| OnceLock::new()).collect() }
    }

    /// Size of the backed range in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of pages that have been written at least once.
    pub fn pages_touched(&self) -> usize {
        self.pages.iter().filter(|p| p.get().is_some()).count()
    }

    fn check_range(&self, addr: Hpa, len: usize) -> Result<(), MemError> {
        match addr.raw().checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(MemError::Unbacked(addr)),
        }
    }

    fn page(&self, index: usize) -> Option<&Page> {
        self.pages[index].get().map(|b| &**b)
    }

    fn page_mut(&self, index: usize) -> &Page {
        self.pages[index].get_or_init(|| Box::new(core::array::from_fn(|_| AtomicU64::new(0))))
    }

    fn word(&self, addr: u64) -> Option<&AtomicU64> {
        self.page((addr >> PAGE_SHIFT) as usize).map(|p| &p[((addr >> 3) as usize) % WORDS_PER_PAGE])
    }

    fn word_mut(&self, addr: u64) -> &AtomicU64 {
        &self.page_mut((addr >> PAGE_SHIFT) as usize)[((addr >> 3) as usize) % WORDS_PER_PAGE]
    }
}

impl PhysMem for PagedMemory {
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemError> {
        self.check_range(addr, buf.len())?;
        let mut a = addr.raw();
        let mut done = 0;
        while done < buf.len() {
            let in_word = (a & 7) as usize;
            let n = (8 - in_word).min(buf.len() - done);
            let w = self.word(a & !7).map_or(0, |w| w.load(Ordering::Acquire)).to_le_bytes();
            buf[done..done + n].copy_from_slice(&w[in_word..in_word + n]);
            done += n;
            a += n as u64;
        }
        Ok(())
    }

    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), MemError> {
        self.check_range(addr, data.len())?;
        let mut a = addr.raw();
        let mut done = 0;
        while done < data.len() {
            let in_word = (a & 7) as usize;
            let n = (8 - in_word).min(data.len() - done);
            let word = self.word_mut(a & !7);
            if n == 8 {
                let v = u64::from_le_bytes(data[done..done + 8].try_into().unwrap_or([0; 8]));
                word.store(v, Ordering::Release);
            } else {
                let mut mask = 0u64;
                let mut bits = 0u64;
                for i in 0..n {
                    let shift = 8 * (in_word + i) as u64;
                    mask |= 0xFF << shift;
                    bits |= (data[done + i] as u64) << shift;
                }
                let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| Some((old & !mask) | bits));
            }
            done += n;
            a += n as u64;
        }
        Ok(())
    }

    fn read_u64(&self, addr: Hpa) -> Result<u64, MemError> {
        if addr.raw() & 7 != 0 {
            let mut b = [0u8; 8];
            self.read(addr, &mut b)?;
            return Ok(u64::from_le_bytes(b));
        }
        self.check_range(addr, 8)?;
        Ok(self.word(addr.raw()).map_or(0, |w| w.load(Ordering::Acquire)))
    }

    fn compare_exchange_u64(&self, addr: Hpa, current: u64, new: u64) -> Result<Result<u64, u64>, MemError> {
        if addr.raw() & 7 != 0 {
            return Err(MemError::Misaligned(addr));
        }
        self.check_range(addr, 8)?;
        Ok(self.word_mut(addr.raw()).compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_memory_reads_zero_without_allocating() {
        let m = PagedMemory::new(1 << 20);
        assert_eq!(m.read_u64(Hpa::new(0x8000)), Ok(0));
        assert_eq!(m.pages_touched(), 0);
    }

    #[test]
    fn unaligned_write_spanning_words_reads_back() {
        let m = PagedMemory::new(1 << 20);
        m.write(Hpa::new(0xFFD), &[1, 2, 3, 4, 5, 6]).unwrap();
        let mut b = [0u8; 8];
        m.read(Hpa::new(0xFFC), &mut b).unwrap();
        assert_eq!(b, [0, 1, 2, 3, 4, 5, 6, 0]);
    }

    #[test]
    fn access_beyond_size_is_unbacked() {
        let m = PagedMemory::new(0x2000);
        assert_eq!(m.read_u64(Hpa::new(0x2000)), Err(MemError::Unbacked(Hpa::new(0x2000))));
        assert_eq!(m.write(Hpa::new(0x1FFC), &[0; 8]), Err(MemError::Unbacked(Hpa::new(0x1FFC))));
        assert_eq!(m.read_u64(Hpa::new(u64::MAX - 3)), Err(MemError::Unbacked(Hpa::new(u64::MAX - 3))));
    }

    #[test]
    fn compare_exchange_reports_changed_value() {
        let m = PagedMemory::new(0x2000);
        m.write_u64(Hpa::new(8), 5).unwrap();
        assert_eq!(m.compare_exchange_u64(Hpa::new(8), 4, 9), Ok(Err(5)));
        assert_eq!(m.compare_exchange_u64(Hpa::new(8), 5, 9), Ok(Ok(5)));
        assert_eq!(m.read_u64(Hpa::new(8)), Ok(9));
    }

    #[test]
    fn read_only_view_reads_through_and_changes_nothing() {
        let m = PagedMemory::new(0x2000);
        m.write_u64(Hpa::new(0x100), 7).unwrap();
        let ro = ReadOnly(&m);
        assert_eq!(ro.read_u64(Hpa::new(0x100)).unwrap(), 7);
        ro.write_u64(Hpa::new(0x100), 9).unwrap();
        assert_eq!(ro.compare_exchange_u64(Hpa::new(0x100), 7, 9).unwrap(), Ok(7));
        assert_eq!(m.read_u64(Hpa::new(0x100)).unwrap(), 7);
        assert!(ro.write(Hpa::new(0x1FFC), &[0; 8]).is_err(), "an unbacked write still fails");
    }
}
