//! Physical page frames for the OS's own tables (root, context, PASID
//! directory and tables, queues, I/O page tables), with failure injection
//! for the fail_nth sweep (semantics §5.8).

use iommu_types::{Hpa, PhysMem};

use crate::Errno;

/// Where the OS gets zeroed 4 KiB frames.
pub trait FrameAllocator {
    /// A zeroed frame.
    ///
    /// # Errors
    /// [`Errno::NoMem`] when none is left (or a failure is injected).
    fn alloc_frame(&mut self, mem: &dyn PhysMem) -> Result<Hpa, Errno>;

    /// `pages` physically contiguous zeroed frames (one allocation for
    /// failure injection); each is later returned with
    /// [`FrameAllocator::free_frame`].
    ///
    /// # Errors
    /// [`Errno::NoMem`].
    fn alloc_contiguous(&mut self, mem: &dyn PhysMem, pages: u64) -> Result<Hpa, Errno>;

    /// Returns a frame.
    fn free_frame(&mut self, frame: Hpa);

    /// Frames currently allocated.
    fn in_use(&self) -> usize;
}

/// Frames from a fixed physical range, recycled through a free list; the
/// N-th allocation can be made to fail (`fail_nth`).
#[derive(Debug, Clone)]
pub struct RangeFrames {
    next: u64,
    end: u64,
    free: Vec<Hpa>,
    in_use: usize,
    allocations: u64,
    fail_at: Option<u64>,
}

impl RangeFrames {
    /// Frames in `[start, end)` (4 KiB aligned).
    pub fn new(start: Hpa, end: Hpa) -> Self {
        Self { next: start.raw(), end: end.raw(), free: Vec::new(), in_use: 0, allocations: 0, fail_at: None }
    }

    /// Allocations attempted so far (for sizing fault-injection sweeps).
    pub fn allocations(&self) -> u64 {
        self.allocations
    }

    /// Makes the `n`-th allocation from now fail (1 = the next one); `None`
    /// disables injection.
    pub fn fail_nth(&mut self, n: Option<u64>) {
        self.fail_at = n.map(|n| self.allocations + n);
    }
}

impl FrameAllocator for RangeFrames {
    fn alloc_frame(&mut self, mem: &dyn PhysMem) -> Result<Hpa, Errno> {
        self.allocations += 1;
        if self.fail_at == Some(self.allocations) {
            return Err(Errno::NoMem);
        }
        let frame = match self.free.pop() {
            Some(f) => f,
            None if self.next < self.end => {
                let f = Hpa::new(self.next);
                self.next += 0x1000;
                f
            }
            None => return Err(Errno::NoMem),
        };
        if mem.write(frame, &[0u8; 4096]).is_err() {
            self.free.push(frame);
            return Err(Errno::NoMem);
        }
        self.in_use += 1;
        Ok(frame)
    }

    fn alloc_contiguous(&mut self, mem: &dyn PhysMem, pages: u64) -> Result<Hpa, Errno> {
        if pages <= 1 {
            return self.alloc_frame(mem);
        }
        self.allocations += 1;
        if self.fail_at == Some(self.allocations) {
            return Err(Errno::NoMem);
        }
        // Runs come from the never-used part of the range (the free list
        // holds single frames in no particular order).
        let bytes = pages.checked_mul(0x1000).ok_or(Errno::NoMem)?;
        let end = self.next.checked_add(bytes).ok_or(Errno::NoMem)?;
        if end > self.end {
            return Err(Errno::NoMem);
        }
        let first = Hpa::new(self.next);
        for i in 0..pages {
            if mem.write(Hpa::new(first.raw() + i * 0x1000), &[0u8; 4096]).is_err() {
                return Err(Errno::NoMem);
            }
        }
        self.next = end;
        self.in_use += pages as usize;
        Ok(first)
    }

    fn free_frame(&mut self, frame: Hpa) {
        self.in_use = self.in_use.saturating_sub(1);
        self.free.push(frame);
    }

    fn in_use(&self) -> usize {
        self.in_use
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_types::PagedMemory;

    #[test]
    fn frames_are_zeroed_and_recycled() {
        let mem = PagedMemory::new(1 << 20);
        let mut f = RangeFrames::new(Hpa::new(0x1000), Hpa::new(0x3000));
        let a = f.alloc_frame(&mem).unwrap();
        mem.write_u64(a, 7).unwrap();
        f.free_frame(a);
        let b = f.alloc_frame(&mem).unwrap();
        assert_eq!((b, mem.read_u64(b).unwrap(), f.in_use()), (a, 0, 1));
    }

    #[test]
    fn exhausted_range_is_enomem() {
        let mem = PagedMemory::new(1 << 20);
        let mut f = RangeFrames::new(Hpa::new(0x1000), Hpa::new(0x2000));
        f.alloc_frame(&mem).unwrap();
        assert_eq!(f.alloc_frame(&mem), Err(Errno::NoMem));
    }

    #[test]
    fn fail_nth_fails_exactly_that_allocation() {
        let mem = PagedMemory::new(1 << 20);
        let mut f = RangeFrames::new(Hpa::new(0x1000), Hpa::new(0x9000));
        f.fail_nth(Some(2));
        assert!(f.alloc_frame(&mem).is_ok());
        assert_eq!(f.alloc_frame(&mem), Err(Errno::NoMem));
        assert!(f.alloc_frame(&mem).is_ok());
    }
}
