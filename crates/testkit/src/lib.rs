//! Builders for tests: page tables in simulated memory, in the VT-d
//! first-stage and second-stage formats, and VT-d ([`vtd`]) and SMMUv3
//! ([`smmuv3`]) programming through memory and registers. Depends only on
//! `types` and `format`, so every layer can use it as a dev-dependency.
#![forbid(unsafe_code)]

pub mod smmuv3;
pub mod vtd;

use std::collections::HashMap;

use iommu_format::vtd::pte::{FsPte, PteRepr, SsPte};
use iommu_types::{Hpa, PageSize, PagedMemory, Perm, PhysMem};

/// Which entry format a [`PageTable`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// VT-d first-stage (x86-64): P, R/W, U/S (always set), XD.
    FirstStage,
    /// VT-d second-stage: R, W, X.
    SecondStage,
}

/// A bump allocator of zeroed 4 KiB pages in `[next, end)`.
#[derive(Debug, Clone)]
pub struct PageAlloc {
    next: u64,
    end: u64,
}

impl PageAlloc {
    /// Allocates from `[start, end)` (both 4 KiB aligned).
    pub fn new(start: u64, end: u64) -> Self {
        Self { next: start, end }
    }

    /// One page.
    ///
    /// # Panics
    /// When the range is exhausted (a test sizing error).
    pub fn page(&mut self) -> Hpa {
        assert!(self.next < self.end, "PageAlloc exhausted");
        let p = self.next;
        self.next += 0x1000;
        Hpa::new(p)
    }
}

/// A multi-level page table being built in memory.
///
/// `table_addr` maps a table's address as the walker sees it (for nested
/// first-stage tables, an intermediate address) to where it is written; by
/// default the two are the same.
#[derive(Debug)]
pub struct PageTable {
    /// Entry format.
    pub format: Format,
    /// Number of levels.
    pub levels: u8,
    /// Root table address.
    pub root: Hpa,
    tables: HashMap<(u8, u64), Hpa>,
}

impl PageTable {
    /// An empty table with a fresh root page.
    pub fn new(format: Format, levels: u8, alloc: &mut PageAlloc) -> Self {
        Self { format, levels, root: alloc.page(), tables: HashMap::new() }
    }

    fn encode(&self, r: &PteRepr) -> u64 {
        match self.format {
            Format::FirstStage => FsPte::encode(r).0[0],
            Format::SecondStage => SsPte::encode(r).0[0],
        }
    }

    /// Maps `input` (aligned to `size`) to `output` with `perm`. Intermediate
    /// tables are allocated from `alloc` and written with full permissions.
    ///
    /// # Panics
    /// On a memory write error (a test sizing error).
    pub fn map(
        &mut self,
        mem: &PagedMemory,
        alloc: &mut PageAlloc,
        input: u64,
        output: u64,
        size: PageSize,
        perm: Perm,
    ) {
        let leaf_level = size.level();
        let mut table = self.root;
        for level in (leaf_level..=self.levels).rev() {
            let idx = (input >> (12 + 9 * (level as u32 - 1))) & 0x1FF;
            let ea = Hpa::new(table.raw() + 8 * idx);
            if level == leaf_level {
                let e = self.encode(&PteRepr::Leaf { frame: output, size, perm, user: true });
                mem.write_u64(ea, e).expect("leaf write");
                return;
            }
            let key = (level, input >> (12 + 9 * (level as u32 - 1)));
            let next = match self.tables.get(&key) {
                Some(t) => *t,
                None => {
                    let t = alloc.page();
                    self.tables.insert(key, t);
                    let e = self.encode(&PteRepr::Table { next: t.raw(), perm: Perm::ALL, user: true });
                    mem.write_u64(ea, e).expect("table write");
                    t
                }
            };
            table = next;
        }
    }

    /// Address of the entry that maps `input` at `level` (for tests that
    /// corrupt or watch one entry). Returns `None` if the path is not built.
    pub fn entry_addr(&self, input: u64, level: u8) -> Option<Hpa> {
        let mut table = self.root;
        for l in (level..=self.levels).rev() {
            let idx = (input >> (12 + 9 * (l as u32 - 1))) & 0x1FF;
            if l == level {
                return Some(Hpa::new(table.raw() + 8 * idx));
            }
            table = *self.tables.get(&(l, input >> (12 + 9 * (l as u32 - 1))))?;
        }
        None
    }
}
