//! The one mapping from a vendor-neutral [`WalkFault`] to a VT-d fault
//! reason (VT-d §7.1.3).

use iommu_format::vtd::fault::FaultReason as R;
use iommu_types::Access;

use crate::{PermFault, Stage, WalkFault};

/// The VT-d fault reason for a walk fault, in legacy or scalable mode.
///
/// Second stage: an unreadable root is 0x3 (legacy "invalid context") /
/// 0x7B; an unreadable entry 0x7 / 0x78; reserved bits 0xC / 0x7A; an input
/// beyond the width 0x4 / 0x83; a not-present entry or a missing permission
/// is the access's own code, write 0x5 / 0x85, read 0x6 / 0x86.
///
/// First stage (scalable mode only): unreadable root 0x73, entry 0x70;
/// not present 0x71; reserved 0x72; non-canonical 0x80; user 0x81; execute
/// 0x82; write 0x85; failed A/D update 0x90.
pub fn walk_fault_reason(f: &WalkFault, scalable: bool, access: Access) -> R {
    let pick = |legacy: R, sm: R| if scalable { sm } else { legacy };
    let by_access =
        |write: bool| if write { pick(R::WriteDenied, R::SmWriteDenied) } else { pick(R::ReadDenied, R::SmReadDenied) };
    match *f {
        WalkFault::TableFetch { stage: Stage::Second, root: true, .. } => pick(R::ContextInvalid, R::SsRootFetch),
        WalkFault::TableFetch { stage: Stage::Second, .. } => pick(R::SsEntryFetch, R::SmSsEntryFetch),
        WalkFault::Reserved { stage: Stage::Second, .. } => pick(R::SsEntryReserved, R::SmSsEntryReserved),
        WalkFault::AddressBeyond { .. } => pick(R::AddressBeyondAgaw, R::SmAddressBeyondAgaw),
        WalkFault::NotPresent { stage: Stage::Second, .. } => by_access(access.write),
        WalkFault::Permission { stage: Stage::Second, lacking, .. } => by_access(lacking == PermFault::Write),
        WalkFault::TableFetch { stage: Stage::First, root: true, .. } => R::FsRootFetch,
        WalkFault::TableFetch { stage: Stage::First, .. } => R::FsEntryFetch,
        WalkFault::NotPresent { stage: Stage::First, .. } => R::FsEntryNotPresent,
        WalkFault::Reserved { stage: Stage::First, .. } => R::FsEntryReserved,
        WalkFault::NonCanonical => R::FsNonCanonical,
        WalkFault::Permission { stage: Stage::First, lacking, .. } => match lacking {
            PermFault::User => R::FsUserDenied,
            PermFault::Exec => R::ExecuteDenied,
            PermFault::Write => R::SmWriteDenied,
            PermFault::Read => R::SmReadDenied,
        },
        WalkFault::AdUpdate { stage: Stage::First, .. } => R::FsAdUpdate,
        WalkFault::AdUpdate { stage: Stage::Second, .. } => R::SmSsEntryFetch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_stage_not_present_on_write_is_write_denied_in_both_modes() {
        let f = WalkFault::NotPresent { stage: Stage::Second, level: 2 };
        assert_eq!(walk_fault_reason(&f, false, Access::WRITE), R::WriteDenied);
        assert_eq!(walk_fault_reason(&f, true, Access::WRITE), R::SmWriteDenied);
    }

    #[test]
    fn second_stage_root_fetch_is_invalid_context_in_legacy_and_0x7b_in_scalable() {
        let f = WalkFault::TableFetch { stage: Stage::Second, level: 4, root: true, addr: iommu_types::Hpa::ZERO };
        assert_eq!(walk_fault_reason(&f, false, Access::READ), R::ContextInvalid);
        assert_eq!(walk_fault_reason(&f, true, Access::READ), R::SsRootFetch);
    }

    #[test]
    fn first_stage_user_fault_is_0x81() {
        let f = WalkFault::Permission { stage: Stage::First, level: 1, lacking: PermFault::User };
        assert_eq!(u8::from(walk_fault_reason(&f, true, Access::READ)), 0x81);
    }
}
