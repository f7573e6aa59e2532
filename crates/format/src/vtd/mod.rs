//! Intel VT-d layouts (Intel Virtualization Technology for Directed I/O,
//! Architecture Specification; revision pinned in `docs/SPECS.md`).
//!
//! One file per structure family, named after the spec's chapter 9/10/11
//! figures: [`root`] and [`context`] (§9.1–§9.4), [`pasid`] (§9.5–§9.6),
//! [`pte`] (first-stage §9.7, second-stage §9.8), [`fault`] (§7.1.3 fault
//! reasons, §10.4.14 fault recording registers), [`inv_desc`] (§6.5.2
//! invalidation descriptors), [`page_req`] (§7.5 page requests and
//! responses) and [`regs`] (chapter 11, the register file).

pub mod context;
pub mod fault;
pub mod inv_desc;
pub mod page_req;
pub mod pasid;
pub mod pte;
pub mod regs;
pub mod root;

/// Checks every VT-d field table (no overlaps, no word-straddling fields).
#[cfg(test)]
mod table_checks {
    use crate::bits::check_table;

    #[test]
    fn every_vtd_field_table_is_well_formed() {
        use super::*;
        let tables: &[(&str, usize, &[crate::bits::Field])] = &[
            ("RootEntry", 2, root::RootEntry::FIELDS),
            ("ScalableRootEntry", 2, root::ScalableRootEntry::FIELDS),
            ("ContextEntry", 2, context::ContextEntry::FIELDS),
            ("ScalableContextEntry", 4, context::ScalableContextEntry::FIELDS),
            ("PasidDirEntry", 1, pasid::PasidDirEntry::FIELDS),
            ("PasidEntry", 8, pasid::PasidEntry::FIELDS),
            ("FsPte", 1, pte::FsPte::FIELDS),
            ("SsPte", 1, pte::SsPte::FIELDS),
            ("FaultRecord", 2, fault::FaultRecord::FIELDS),
            ("InvDesc", 4, inv_desc::InvDesc::FIELDS),
            ("PageRequestDesc", 4, page_req::PageRequestDesc::FIELDS),
        ];
        for (name, n, fields) in tables {
            check_table(*n, fields).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
