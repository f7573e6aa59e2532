//! Process address spaces as a kernel keeps them: VMAs plus 4-level CPU
//! page tables in simulated memory, in one of two formats:
//!
//! * x86-64 4-level paging (Intel SDM Vol 3 §4.5), the default
//!   ([`Mm::new`]). It is the VT-d first-stage format (VT-d §9.7), so SVA
//!   points a PASID entry's first-stage pointer at [`Mm::cr3`] and the
//!   IOMMU walks the very tables the CPU uses. Leaves are user pages
//!   (U/S=1), R/W from the VMA's write right, XD unless the VMA allows
//!   execute.
//! * AArch64 VMSAv8-64 stage 1 with the 4 KiB granule and a 48-bit TTBR0
//!   range (Arm ARM D8; [`Mm::with_format`] with
//!   [`PtFormat::ArmS1`]). It is what an SMMUv3 walks for a CD (SMMUv3
//!   §3.4), so SVA points CD.TTB0 at [`Mm::cr3`] (here the TTBR0 table
//!   base). Leaves are EL0 pages (AP[1]=1), read-only (AP[2]=1) unless the
//!   VMA allows write, UXN unless the VMA allows execute, always PXN.
//!
//! Memory is anonymous and populated lazily: [`Mm::mmap`] only records a
//! VMA; a page gets a zeroed frame on its first fault ([`Mm::handle_fault`],
//! from a CPU access or from an IOMMU page request).
//!
//! Conventions: ranges are half-open; addresses are user virtual addresses
//! in `[0, 2^47)`, the lower canonical half of x86-64 4-level paging (for
//! an Arm mm, the lower half of its 48-bit TTBR0 range: the same user
//! space for both formats).
//!
//! # Unmap protocol (mmu notifier)
//!
//! 1. [`Mm::munmap`] (or [`Mm::exit`]) removes the VMAs and the PTEs and
//!    returns an [`MmUnmap`];
//! 2. the caller runs the mmu notifier for [`MmUnmap::start`]..
//!    [`MmUnmap::end`]: every IOMMU bound to this mm invalidates its IOTLB
//!    and device TLBs for the range (semantics §4.6); at exit, the release
//!    notifier makes the PASID entries non-translating instead (§4.5);
//! 3. [`MmUnmap::complete`] then frees the data frames and table pages, so
//!    no device can reach a reused page.

use std::collections::BTreeMap;

use iommu_types::{Access, Hpa, Iova, PageSize, Perm, PhysMem};

use crate::frames::FrameAllocator;
use crate::pgtable::{IoPageTable, IotlbGather, PtFormat};
use crate::Errno;

const PAGE: u64 = 4096;

/// A virtual memory area: `[start, end)` with the rights the process asked
/// for (page aligned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vma {
    /// First byte.
    pub start: u64,
    /// Exclusive end.
    pub end: u64,
    /// Rights (`PROT_READ`/`PROT_WRITE`/`PROT_EXEC`).
    pub perm: Perm,
}

impl Vma {
    /// Whether `addr` is inside.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// Whether the VMA allows `access`, with x86-64 semantics: a write
    /// needs write, an instruction fetch needs execute, and a read is
    /// allowed by any right (a present x86-64 page is always readable,
    /// Intel SDM Vol 3 §4.6). The same holds for an AArch64 stage-1 page,
    /// which has no read-permission bit either (Arm ARM D8.4). The
    /// privilege level is not checked here.
    pub const fn allows(&self, access: Access) -> bool {
        let any = self.perm.read || self.perm.write || self.perm.exec;
        any && (!access.write || self.perm.write) && (!access.exec || self.perm.exec)
    }

    /// What a leaf mapping a page of this VMA grants.
    const fn pte_perm(&self) -> Perm {
        Perm { read: true, write: self.perm.write, exec: self.perm.exec }
    }
}

/// One process's address space.
#[derive(Debug)]
pub struct Mm {
    pt: IoPageTable,
    /// VMAs by start address; never overlapping.
    vmas: BTreeMap<u64, Vma>,
    /// Resident pages: virtual page → data frame.
    pages: BTreeMap<u64, Hpa>,
    dead: bool,
}

/// Rounds `len` up to whole pages.
fn page_round_up(len: u64) -> Option<u64> {
    len.checked_add(PAGE - 1).map(|l| l & !(PAGE - 1))
}

impl Mm {
    /// Most VMAs an mm may have (Linux's `vm.max_map_count`, scaled down).
    pub const MAX_VMAS: usize = 1024;
    /// Exclusive end of user space: the lower canonical half of 4-level
    /// paging (Intel SDM Vol 3 §4.5). An Arm mm uses the same bound (the
    /// lower half of its 48-bit TTBR0 range) so both formats behave alike.
    pub const USER_END: u64 = 1 << 47;
    /// Where [`Mm::mmap`] without an address starts looking (bottom-up).
    pub const MMAP_BASE: u64 = 0x1000_0000;

    /// An empty x86-64 address space: one zeroed PML4 page.
    ///
    /// # Errors
    /// [`Errno::NoMem`]: no frame for the PML4.
    pub fn new(mem: &dyn PhysMem, frames: &mut dyn FrameAllocator) -> Result<Self, Errno> {
        Self::with_format(mem, frames, PtFormat::FirstStage { levels: 4 })
    }

    /// An empty address space whose CPU page tables are in `format`:
    /// [`PtFormat::FirstStage`] with 4 levels (x86-64, as [`Mm::new`]) or
    /// [`PtFormat::ArmS1`] with 4 levels (AArch64, 4 KiB granule, 48-bit
    /// TTBR0 range). One zeroed root page.
    ///
    /// # Errors
    /// * [`Errno::Inval`]: any other format or level count;
    /// * [`Errno::NoMem`]: no frame for the root.
    pub fn with_format(mem: &dyn PhysMem, frames: &mut dyn FrameAllocator, format: PtFormat) -> Result<Self, Errno> {
        if !matches!(format, PtFormat::FirstStage { levels: 4 } | PtFormat::ArmS1 { levels: 4 }) {
            return Err(Errno::Inval);
        }
        let mut pt = IoPageTable::new(mem, frames, format)?;
        pt.set_max_leaf(PageSize::Size4K);
        Ok(Self { pt, vmas: BTreeMap::new(), pages: BTreeMap::new(), dead: false })
    }

    /// The format of the CPU page tables.
    pub fn format(&self) -> PtFormat {
        self.pt.format()
    }

    /// The root table's physical address. x86-64: the PML4 (CR3's page-map
    /// base; under SVA, the PASID entry's first-stage pointer). Arm: the
    /// level-0 table (TTBR0's base address; under SVA, CD.TTB0).
    pub fn cr3(&self) -> Hpa {
        self.pt.root()
    }

    /// Creates a lazily populated anonymous mapping of `len` bytes (rounded
    /// up to 4 KiB) with `perm`. `addr`: `Some` = exactly there
    /// (`MAP_FIXED_NOREPLACE`); `None` = the lowest free range at or above
    /// [`Mm::MMAP_BASE`]. Returns the start address.
    ///
    /// # Errors
    /// * [`Errno::Fault`]: the mm is dead (after [`Mm::exit`]);
    /// * [`Errno::Inval`]: `len` 0; a fixed `addr` not 4 KiB aligned or the
    ///   range not below [`Mm::USER_END`];
    /// * [`Errno::Exist`]: a fixed range overlaps a VMA;
    /// * [`Errno::NoMem`]: [`Mm::MAX_VMAS`] reached, `len` larger than user
    ///   space, or no free range large enough (as Linux's `mmap`).
    pub fn mmap(&mut self, addr: Option<u64>, len: u64, perm: Perm) -> Result<u64, Errno> {
        if self.dead {
            return Err(Errno::Fault);
        }
        if len == 0 {
            return Err(Errno::Inval);
        }
        let len = page_round_up(len).filter(|l| *l <= Self::USER_END).ok_or(Errno::NoMem)?;
        if self.vmas.len() >= Self::MAX_VMAS {
            return Err(Errno::NoMem);
        }
        let start = match addr {
            Some(a) => {
                if a % PAGE != 0 {
                    return Err(Errno::Inval);
                }
                let end = a.checked_add(len).filter(|e| *e <= Self::USER_END).ok_or(Errno::Inval)?;
                if self.overlaps(a, end) {
                    return Err(Errno::Exist);
                }
                a
            }
            None => self.find_free(len).ok_or(Errno::NoMem)?,
        };
        self.vmas.insert(start, Vma { start, end: start + len, perm });
        Ok(start)
    }

    /// Whether any VMA intersects `[start, end)`.
    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.vmas.range(..end).next_back().is_some_and(|(_, v)| v.end > start)
    }

    /// The lowest gap of `len` bytes at or above [`Mm::MMAP_BASE`].
    fn find_free(&self, len: u64) -> Option<u64> {
        let mut cand = Self::MMAP_BASE;
        for v in self.vmas.values() {
            if v.end <= cand {
                continue;
            }
            if v.start >= cand.checked_add(len)? {
                return Some(cand);
            }
            cand = v.end;
        }
        (Self::USER_END.checked_sub(cand)? >= len).then_some(cand)
    }

    fn vma_at(&self, addr: u64) -> Option<&Vma> {
        self.vmas.range(..=addr).next_back().map(|(_, v)| v).filter(|v| v.contains(addr))
    }

    /// A page fault at `addr` for `access`, from the CPU or from an IOMMU
    /// page request the SVA handler resolves: populates the page with a
    /// zeroed frame if it is not present. A present page that already
    /// allows the access is left alone (idempotent).
    ///
    /// # Errors
    /// * [`Errno::Fault`]: the mm is dead, no VMA covers `addr`, or the VMA
    ///   forbids the access (see [`Vma::allows`]) — the page request is
    ///   answered INVALID;
    /// * [`Errno::NoMem`]: no frame for the page or a page table (nothing
    ///   changed, no frame leaked).
    pub fn handle_fault(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        addr: u64,
        access: Access,
    ) -> Result<(), Errno> {
        if self.dead {
            return Err(Errno::Fault);
        }
        let vma = *self.vma_at(addr).ok_or(Errno::Fault)?;
        if !vma.allows(access) {
            return Err(Errno::Fault);
        }
        let page = addr & !(PAGE - 1);
        if let Some((_, _, perm)) = self.pt.lookup(mem, Iova::new(page)) {
            // Leaves carry the VMA's rights, so a VMA that allows the
            // access has a leaf that allows it.
            return if perm.allows(access) { Ok(()) } else { Err(Errno::Fault) };
        }
        let frame = frames.alloc_frame(mem)?;
        if let Err(e) = self.pt.map(mem, frames, Iova::new(page), frame, PageSize::Size4K, vma.pte_perm(), true) {
            frames.free_frame(frame);
            return Err(e);
        }
        self.pages.insert(page, frame);
        Ok(())
    }

    /// The physical address of `addr` for `access`, faulting the page in
    /// if needed.
    fn resolve(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        addr: u64,
        access: Access,
    ) -> Result<Hpa, Errno> {
        if let Some((pa, _, perm)) = self.pt.lookup(mem, Iova::new(addr)) {
            if perm.allows(access) && !self.dead {
                return Ok(pa);
            }
        }
        self.handle_fault(mem, frames, addr, access)?;
        self.pt.lookup(mem, Iova::new(addr)).map(|(pa, _, _)| pa).ok_or(Errno::Fault)
    }

    /// A CPU store of `data` at `addr` (user mode), faulting pages in as
    /// needed; may cross pages.
    ///
    /// # Errors
    /// [`Errno::Fault`] as [`Mm::handle_fault`], or on a range overflowing
    /// 64 bits; [`Errno::NoMem`]. The bytes before the failing page have
    /// been written (like a partial `copy_to_user`).
    pub fn write(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        addr: u64,
        data: &[u8],
    ) -> Result<(), Errno> {
        let mut done = 0usize;
        while done < data.len() {
            let (va, chunk) = Self::chunk(addr, done, data.len())?;
            let pa = self.resolve(mem, frames, va, Access::WRITE)?;
            let bytes = data.get(done..done + chunk).ok_or(Errno::Fault)?;
            mem.write(pa, bytes).map_err(|_| Errno::Fault)?;
            done += chunk;
        }
        Ok(())
    }

    /// A CPU load into `buf` from `addr` (user mode), faulting pages in as
    /// needed; may cross pages.
    ///
    /// # Errors
    /// As [`Mm::write`].
    pub fn read(
        &mut self,
        mem: &dyn PhysMem,
        frames: &mut dyn FrameAllocator,
        addr: u64,
        buf: &mut [u8],
    ) -> Result<(), Errno> {
        let mut done = 0usize;
        while done < buf.len() {
            let (va, chunk) = Self::chunk(addr, done, buf.len())?;
            let pa = self.resolve(mem, frames, va, Access::READ)?;
            let bytes = buf.get_mut(done..done + chunk).ok_or(Errno::Fault)?;
            mem.read(pa, bytes).map_err(|_| Errno::Fault)?;
            done += chunk;
        }
        Ok(())
    }

    /// The address `done` bytes into an access at `addr` of `total` bytes,
    /// and how many bytes of it lie in that page.
    fn chunk(addr: u64, done: usize, total: usize) -> Result<(u64, usize), Errno> {
        let va = u64::try_from(done).ok().and_then(|d| addr.checked_add(d)).ok_or(Errno::Fault)?;
        let in_page = usize::try_from(PAGE - (va & (PAGE - 1))).map_err(|_| Errno::Fault)?;
        Ok((va, in_page.min(total - done)))
    }

    /// The physical address backing `addr`, if its page is resident.
    pub fn translate(&self, mem: &dyn PhysMem, addr: u64) -> Option<Hpa> {
        if self.dead {
            return None;
        }
        self.pt.lookup(mem, Iova::new(addr)).map(|(pa, _, _)| pa)
    }

    /// `munmap`: removes `[addr, addr+len)` (`len` rounded up to 4 KiB) from
    /// the VMAs, splitting those partly covered, and clears its PTEs. The
    /// frames are released only by [`MmUnmap::complete`].
    ///
    /// # Errors
    /// * [`Errno::Fault`]: the mm is dead, or a page-table entry could not
    ///   be read (nothing changed) or written;
    /// * [`Errno::Inval`]: `addr` not 4 KiB aligned, `len` 0, or the range
    ///   not below [`Mm::USER_END`];
    /// * [`Errno::NoMem`]: splitting a VMA would exceed [`Mm::MAX_VMAS`]
    ///   (nothing changed).
    pub fn munmap(&mut self, mem: &dyn PhysMem, addr: u64, len: u64) -> Result<MmUnmap, Errno> {
        if self.dead {
            return Err(Errno::Fault);
        }
        if addr % PAGE != 0 || len == 0 {
            return Err(Errno::Inval);
        }
        let end = page_round_up(len)
            .and_then(|l| addr.checked_add(l))
            .filter(|e| *e <= Self::USER_END)
            .ok_or(Errno::Inval)?;
        let hit: Vec<Vma> = self.vmas.range(..end).rev().map(|(_, v)| *v).take_while(|v| v.end > addr).collect();
        let pieces = hit.iter().map(|v| usize::from(v.start < addr) + usize::from(v.end > end)).sum::<usize>();
        if (self.vmas.len() - hit.len()).saturating_add(pieces) > Self::MAX_VMAS {
            return Err(Errno::NoMem);
        }
        let gather = self.pt.unmap(mem, Iova::new(addr), end - addr)?;
        for v in hit {
            self.vmas.remove(&v.start);
            if v.start < addr {
                self.vmas.insert(v.start, Vma { end: addr, ..v });
            }
            if v.end > end {
                self.vmas.insert(end, Vma { start: end, ..v });
            }
        }
        let frames: Vec<Hpa> = self.pages.range(addr..end).map(|(_, f)| *f).collect();
        self.pages.retain(|va, _| *va < addr || *va >= end);
        Ok(MmUnmap { start: addr, end, gather, frames })
    }

    /// Process exit: the address space is torn down (every VMA and PTE) and
    /// the mm is dead: [`Mm::mmap`], [`Mm::munmap`] and
    /// [`Mm::handle_fault`] then fail with [`Errno::Fault`]. The obligation
    /// covers all of user space; the caller runs the mm release notifier
    /// before completing it. A second call returns an empty obligation.
    pub fn exit(&mut self, mem: &dyn PhysMem) -> MmUnmap {
        if self.dead {
            return MmUnmap { start: 0, end: 0, gather: IotlbGather::empty(Iova::ZERO), frames: Vec::new() };
        }
        self.dead = true;
        // A page-table memory error leaves some PTEs behind; the release
        // notifier makes the tables unreachable anyway, and what stays
        // linked is freed by `destroy`.
        let gather = self.pt.unmap(mem, Iova::ZERO, Self::USER_END).unwrap_or_else(|_| IotlbGather::empty(Iova::ZERO));
        self.vmas.clear();
        let frames = std::mem::take(&mut self.pages).into_values().collect();
        MmUnmap { start: 0, end: Self::USER_END, gather, frames }
    }

    /// Whether the mm has exited.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// The VMAs, in address order.
    pub fn vmas(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }

    /// The frame the mm's own records say backs the page of `addr` (not
    /// read from the page table: a reference for checkers).
    pub fn resident_frame(&self, addr: u64) -> Option<Hpa> {
        if self.dead {
            return None;
        }
        self.pages.get(&(addr & !(PAGE - 1))).copied()
    }

    /// Address of the leaf PTE (Arm: page descriptor) mapping `addr`, if
    /// one is present.
    pub fn leaf_entry(&self, mem: &dyn PhysMem, addr: u64) -> Option<Hpa> {
        if self.dead {
            return None;
        }
        self.pt.leaf_entry(mem, Iova::new(addr))
    }

    /// Pages with a frame.
    pub fn resident_pages(&self) -> usize {
        self.pages.len()
    }

    /// Final drop: frees the page tables and any frame still resident (the
    /// caller has already made the tables unreachable and flushed).
    pub fn destroy(self, mem: &dyn PhysMem, frames: &mut dyn FrameAllocator) {
        for f in self.pages.into_values() {
            frames.free_frame(f);
        }
        self.pt.destroy(mem, frames);
    }
}

/// What an unmap of an mm obliges its caller to do: invalidate
/// [`MmUnmap::start`]..[`MmUnmap::end`] in every IOMMU bound to the mm
/// (the mmu notifier), then [`MmUnmap::complete`].
///
/// Dropping it without completing leaks the frames (safe, never a reuse
/// while a device may still reach them).
#[must_use = "frames are released only by complete(), after the mmu notifier invalidated the range"]
#[derive(Debug)]
pub struct MmUnmap {
    start: u64,
    end: u64,
    gather: IotlbGather,
    frames: Vec<Hpa>,
}

impl MmUnmap {
    /// First byte of the range to invalidate.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Exclusive end of the range to invalidate.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Resident pages removed (data frames released by `complete`).
    pub fn pages(&self) -> usize {
        self.frames.len()
    }

    /// Page-table pages unlinked (released by `complete`).
    pub fn freed_tables(&self) -> usize {
        self.gather.freed_tables()
    }

    /// Nothing was resident in the range: no IOMMU can hold a translation
    /// of it, so no invalidation is needed.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.gather.is_empty()
    }

    /// The notifier's invalidation has completed: frees the data frames
    /// and the page-table pages.
    pub fn complete(self, frames: &mut dyn FrameAllocator) {
        for f in self.frames {
            frames.free_frame(f);
        }
        self.gather.complete(frames);
    }
}

#[cfg(test)]
mod tests;
