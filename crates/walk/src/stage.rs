//! Vendor-neutral walk outcomes.

use iommu_types::{Hpa, PageSize, Perm};

/// Which stage of a (possibly nested) translation a fault was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// First stage (VT-d first-stage, SMMUv3 stage 1).
    First,
    /// Second stage (VT-d second-stage, SMMUv3 stage 2).
    Second,
}

/// The permission a request lacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PermFault {
    /// Read not allowed (or the entry is not present in a format without a
    /// present bit and the request reads).
    Read,
    /// Write not allowed.
    Write,
    /// User request to a supervisor-only page.
    User,
    /// Instruction fetch from an execute-disabled page.
    Exec,
}

/// Why a walk stopped. Each vendor maps these, plus its own context, to an
/// architectural code in exactly one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalkFault {
    /// Reading a paging entry failed (unbacked memory). `root` is set when
    /// the entry was in the top-level table, i.e. the root pointer itself is bad.
    TableFetch {
        /// Stage of the table.
        stage: Stage,
        /// Level of the entry being read (the top level is the number of levels).
        level: u8,
        /// Whether the table was the root table.
        root: bool,
        /// Address of the entry.
        addr: Hpa,
    },
    /// The entry is not present (first stage: P=0).
    NotPresent {
        /// Stage.
        stage: Stage,
        /// Level.
        level: u8,
    },
    /// A reserved bit is set in a present entry.
    Reserved {
        /// Stage.
        stage: Stage,
        /// Level.
        level: u8,
    },
    /// The entry does not grant the access.
    Permission {
        /// Stage.
        stage: Stage,
        /// Level.
        level: u8,
        /// What was lacking.
        lacking: PermFault,
    },
    /// The input address is not canonical for the first-stage paging mode.
    NonCanonical,
    /// The input address is beyond the stage's address width.
    AddressBeyond {
        /// Stage.
        stage: Stage,
    },
    /// An Accessed/Dirty update could not be written.
    AdUpdate {
        /// Stage.
        stage: Stage,
        /// Level.
        level: u8,
    },
}

impl WalkFault {
    /// The stage the fault belongs to (`First` for a non-canonical input).
    pub const fn stage(&self) -> Stage {
        match *self {
            WalkFault::TableFetch { stage, .. }
            | WalkFault::NotPresent { stage, .. }
            | WalkFault::Reserved { stage, .. }
            | WalkFault::Permission { stage, .. }
            | WalkFault::AddressBeyond { stage }
            | WalkFault::AdUpdate { stage, .. } => stage,
            WalkFault::NonCanonical => Stage::First,
        }
    }
}

/// A successful translation of one page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Translation {
    /// Output frame: the base of the page the input address falls in.
    pub frame: Hpa,
    /// Size of that page (for nested, the smaller of the two stages' pages).
    pub size: PageSize,
    /// Effective permissions (the AND over every level and stage).
    pub perm: Perm,
    /// User requests allowed (first stage U/S over every level; true otherwise).
    pub user: bool,
    /// The first-stage leaf's Dirty bit is set (always true where the stage
    /// has no dirty tracking): a cached translation without it must be
    /// re-walked on a write so that the walker sets D.
    pub dirty: bool,
    /// Paging-entry reads the walk made.
    pub mem_refs: u32,
}

impl Translation {
    /// The output address for an input address inside the page.
    pub const fn output(&self, input: u64) -> Hpa {
        Hpa::new(self.frame.raw() | (input & (self.size.bytes() - 1)))
    }
}
