//! Anonymous memory files (`memfd_create`): physically contiguous host
//! memory a VMM backs guest RAM with and maps into an IOAS
//! (`IOMMU_IOAS_MAP_FILE`). A file is freed when it is closed and no IOAS
//! area pins it any more.

use iommu_types::{Hpa, PhysMem};

use super::Kernel;
use crate::driver::IommuDriver;
use crate::frames::FrameAllocator;
use crate::Errno;

/// A memory file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemfdId(pub u32);

/// Pages one memory file holds at most (1 GiB).
pub const MAX_MEMFD_PAGES: u64 = 1 << 18;

/// Memory files the kernel holds at most.
pub const MAX_MEMFDS: usize = 1024;

#[derive(Debug)]
pub(super) struct Memfd {
    pub(super) base: Hpa,
    pub(super) pages: u64,
    pub(super) pins: u32,
    pub(super) closed: bool,
}

impl<D: IommuDriver, M: PhysMem, F: FrameAllocator> Kernel<D, M, F> {
    /// A zero-filled memory file of `pages` 4 KiB pages.
    ///
    /// # Errors
    /// [`Errno::Inval`] for 0 or more than [`MAX_MEMFD_PAGES`] pages;
    /// [`Errno::NoSpc`] beyond [`MAX_MEMFDS`]; [`Errno::NoMem`].
    pub fn memfd_create(&mut self, pages: u64) -> Result<MemfdId, Errno> {
        if pages == 0 || pages > MAX_MEMFD_PAGES {
            return Err(Errno::Inval);
        }
        if self.memfds.len() >= MAX_MEMFDS {
            return Err(Errno::NoSpc);
        }
        let (mem, frames) = self.iommu.mem_frames();
        let base = frames.alloc_contiguous(mem, pages)?;
        let id = MemfdId(self.next_memfd);
        self.next_memfd = self.next_memfd.wrapping_add(1).max(1);
        self.memfds.insert(id.0, Memfd { base, pages, pins: 0, closed: false });
        Ok(id)
    }

    /// The host-physical base and page count of an open memory file.
    ///
    /// # Errors
    /// [`Errno::NoEnt`] for an unknown or closed file.
    pub fn memfd_range(&self, id: MemfdId) -> Result<(Hpa, u64), Errno> {
        match self.memfds.get(&id.0) {
            Some(f) if !f.closed => Ok((f.base, f.pages)),
            _ => Err(Errno::NoEnt),
        }
    }

    /// Closes a memory file; its pages go back once no IOAS pins them.
    ///
    /// # Errors
    /// [`Errno::NoEnt`].
    pub fn memfd_close(&mut self, id: MemfdId) -> Result<(), Errno> {
        let f = self.memfds.get_mut(&id.0).filter(|f| !f.closed).ok_or(Errno::NoEnt)?;
        f.closed = true;
        self.memfd_release_if_unused(id);
        Ok(())
    }

    /// Memory files alive (open or still pinned).
    pub fn memfd_count(&self) -> usize {
        self.memfds.len()
    }

    /// The base of a file, open or closed but still pinned (an IOAS area
    /// keeps using it).
    pub(super) fn memfd_base(&self, id: MemfdId) -> Result<Hpa, Errno> {
        self.memfds.get(&id.0).map(|f| f.base).ok_or(Errno::NoEnt)
    }

    pub(super) fn memfd_pin(&mut self, id: MemfdId) {
        if let Some(f) = self.memfds.get_mut(&id.0) {
            f.pins += 1;
        }
    }

    pub(super) fn memfd_unpin(&mut self, id: MemfdId) {
        if let Some(f) = self.memfds.get_mut(&id.0) {
            f.pins = f.pins.saturating_sub(1);
        }
        self.memfd_release_if_unused(id);
    }

    fn memfd_release_if_unused(&mut self, id: MemfdId) {
        if !matches!(self.memfds.get(&id.0), Some(f) if f.closed && f.pins == 0) {
            return;
        }
        if let Some(f) = self.memfds.remove(&id.0) {
            let frames = self.iommu.frames_mut();
            for i in 0..f.pages {
                frames.free_frame(Hpa::new(f.base.raw() + (i << 12)));
            }
        }
    }
}
