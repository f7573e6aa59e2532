//! Arm SMMUv3 layouts (Arm System Memory Management Unit Architecture
//! Specification, SMMU architecture version 3, IHI 0070; revision pinned in
//! `docs/SPECS.md`).
//!
//! One file per structure family, named after the spec's chapters:
//! [`ste`] (§5.2 stream table entries and §5.1 level-1 stream table
//! descriptors), [`cd`] (§5.4 context descriptors and §5.3 level-1 CD
//! descriptors), [`desc`] (VMSAv8-64 stage-1 and stage-2 translation table
//! descriptors, Arm ARM D8.3), [`cmd`] (§4 commands), [`event`] (§7.3 event
//! records), [`pri`] (§8 PRI queue entries) and [`regs`] (§6 the register
//! map).

pub mod cd;
pub mod cmd;
pub mod desc;
pub mod event;
pub mod pri;
#[cfg(test)]
mod props;
pub mod regs;
pub mod ste;
