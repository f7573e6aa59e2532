use super::*;
use proptest::prelude::*;

const DEV_A: DeviceId = DeviceId(1);
const DEV_B: DeviceId = DeviceId(2);
const FULL: u32 = PASID_SPACE;

#[test]
fn global_allocation_starts_at_1_and_never_hands_out_0() {
    let mut g = GlobalPasids::new();
    assert_eq!(g.alloc(FULL), Ok(Pasid::new(1)));
    assert_eq!(g.alloc(FULL), Ok(Pasid::new(2)));
}

/// Semantics §5.1 #7: a device without PASID support (max_pasids 0) → ENOSPC.
#[test]
fn spec_7_device_without_pasids_gets_enospc() {
    let mut g = GlobalPasids::new();
    assert_eq!(Errno::from(g.alloc(0).unwrap_err()), Errno::NoSpc);
    assert_eq!(g.in_use(), 0);
}

/// Semantics §5.1 #7: exhausting the space below max_pasids → ENOSPC.
#[test]
fn spec_7_exhausted_range_gets_enospc() {
    let mut g = GlobalPasids::new();
    for _ in 1..4 {
        g.alloc(4).unwrap();
    }
    assert_eq!(g.alloc(4), Err(PasidError::NoSpace { max_pasids: 4 }));
    assert_eq!(g.alloc(5), Ok(Pasid::new(4)));
}

#[test]
fn freed_pasid_is_reused_lowest_first() {
    let mut g = GlobalPasids::new();
    let a = g.alloc(FULL).unwrap();
    g.alloc(FULL).unwrap();
    g.free(a).unwrap();
    assert_eq!(g.alloc(FULL), Ok(a));
}

#[test]
fn double_free_is_refused() {
    let mut g = GlobalPasids::new();
    let a = g.alloc(FULL).unwrap();
    g.free(a).unwrap();
    assert_eq!(g.free(a), Err(PasidError::NotAllocated(a.raw())));
}

#[test]
fn allocation_crosses_bitmap_words() {
    let mut g = GlobalPasids::new();
    for _ in 1..200 {
        g.alloc(FULL).unwrap();
    }
    assert_eq!(g.alloc(FULL), Ok(Pasid::new(200)));
}

/// Semantics §5.1 #6: the mm already owns PASID P and the device's
/// max_pasids ≤ P → EOVERFLOW, nothing changes.
#[test]
fn spec_6_existing_global_pasid_beyond_device_range_is_eoverflow() {
    let mut g = GlobalPasids::new();
    let mut mm = MmPasids::default();
    for _ in 0..9 {
        g.alloc(FULL).unwrap();
    }
    let p = mm.acquire_global(&mut g, FULL, LocalPolicy::V2).unwrap();
    assert_eq!(p, Pasid::new(10));
    let before = (mm.clone(), g.in_use());
    let e = mm.acquire_global(&mut g, 10, LocalPolicy::V2).unwrap_err();
    assert_eq!(Errno::from(e), Errno::Overflow);
    assert_eq!((mm, g.in_use()), before);
}

/// Semantics §5.1 #9 / L4: the mm keeps its PASID across binds; it returns
/// to the allocator only when the mm is dropped.
#[test]
fn spec_9_pasid_is_kept_by_the_mm_until_it_is_dropped() {
    let mut g = GlobalPasids::new();
    let mut mm = MmPasids::default();
    let p = mm.acquire_global(&mut g, FULL, LocalPolicy::V2).unwrap();
    assert_eq!(mm.acquire_global(&mut g, FULL, LocalPolicy::V2), Ok(p));
    assert!(g.is_allocated(p));
    mm.drop_mm(&mut g);
    assert!(!g.is_allocated(p));
}

/// Seed 002 (issue 3 acceptance): a device with 3 usable PASIDs
/// (max_pasids 4) cannot get one from the global space once others hold
/// 1–3, and can from its own space.
#[test]
fn seed_002_small_device_fails_globally_and_succeeds_with_its_own_space() {
    let mut g = GlobalPasids::new();
    for _ in 0..3 {
        g.alloc(FULL).unwrap();
    }
    assert_eq!(Errno::from(g.alloc(4).unwrap_err()), Errno::NoSpc);
    let mut own = DevicePasids::new(4);
    assert_eq!(own.alloc(), Ok(Pasid::new(1)));
}

/// Semantics §5.11 #70: a local bind on an mm with a global bond → EBUSY (v2).
#[test]
fn spec_70_local_bind_on_mm_with_global_pasid_is_ebusy_in_v2() {
    let mut g = GlobalPasids::new();
    let mut mm = MmPasids::default();
    mm.acquire_global(&mut g, FULL, LocalPolicy::V2).unwrap();
    let e = mm.acquire_local(DEV_A, Pasid::new(5), 16, LocalPolicy::V2).unwrap_err();
    assert_eq!(Errno::from(e), Errno::Busy);
}

/// Semantics §5.11 #70: a global bind on an mm in device-local mode → EBUSY (v2).
#[test]
fn spec_70_global_bind_on_mm_in_local_mode_is_ebusy_in_v2() {
    let mut g = GlobalPasids::new();
    let mut mm = MmPasids::default();
    mm.acquire_local(DEV_A, Pasid::new(5), 16, LocalPolicy::V2).unwrap();
    assert_eq!(Errno::from(mm.acquire_global(&mut g, FULL, LocalPolicy::V2).unwrap_err()), Errno::Busy);
    assert_eq!(g.in_use(), 0);
}

/// Semantics §5.11 #70: a second, different local PASID for the mm → ENOSPC (v2).
#[test]
fn spec_70_second_distinct_local_pasid_is_enospc_in_v2() {
    let mut mm = MmPasids::default();
    mm.acquire_local(DEV_A, Pasid::new(5), 16, LocalPolicy::V2).unwrap();
    let e = mm.acquire_local(DEV_B, Pasid::new(6), 16, LocalPolicy::V2).unwrap_err();
    assert_eq!(Errno::from(e), Errno::NoSpc);
}

/// Semantics §5.11 #70: a local PASID ≥ max_pasids → EOVERFLOW.
#[test]
fn spec_70_local_pasid_beyond_device_range_is_eoverflow() {
    let mut mm = MmPasids::default();
    let e = mm.acquire_local(DEV_A, Pasid::new(16), 16, LocalPolicy::V2).unwrap_err();
    assert_eq!(Errno::from(e), Errno::Overflow);
}

/// Semantics §5.11 #70: the same (device, mm, PASID) twice is accepted (the
/// bond is shared and counted at the bind layer).
#[test]
fn spec_70_same_local_pair_twice_is_accepted() {
    let mut mm = MmPasids::default();
    mm.acquire_local(DEV_A, Pasid::new(5), 16, LocalPolicy::V2).unwrap();
    assert_eq!(mm.acquire_local(DEV_A, Pasid::new(5), 16, LocalPolicy::V2), Ok(()));
    assert_eq!(mm.local().count(), 1);
}

/// v2 changelog: after the device-local bond is gone the mm may take another value.
#[test]
fn released_local_pasid_lets_the_mm_take_another_in_v2() {
    let mut mm = MmPasids::default();
    mm.acquire_local(DEV_A, Pasid::new(5), 16, LocalPolicy::V2).unwrap();
    mm.release_local(DEV_A, Pasid::new(5));
    assert_eq!(mm.acquire_local(DEV_B, Pasid::new(6), 16, LocalPolicy::V2), Ok(()));
}

/// Semantics §6 Q12 (v3): one global PASID plus several (device, PASID) pairs.
#[test]
fn v3_allows_global_plus_several_local_pairs() {
    let mut g = GlobalPasids::new();
    let mut mm = MmPasids::default();
    mm.acquire_local(DEV_A, Pasid::new(5), 16, LocalPolicy::V3).unwrap();
    mm.acquire_local(DEV_B, Pasid::new(2), 16, LocalPolicy::V3).unwrap();
    assert!(mm.acquire_global(&mut g, FULL, LocalPolicy::V3).is_ok());
    assert_eq!(mm.local().count(), 2);
}

#[test]
fn local_pasid_0_is_invalid() {
    let mut mm = MmPasids::default();
    assert_eq!(Errno::from(mm.acquire_local(DEV_A, Pasid::ZERO, 16, LocalPolicy::V3).unwrap_err()), Errno::Inval);
}

#[test]
fn device_space_claims_are_exclusive() {
    let mut s = DevicePasids::new(8);
    s.claim(Pasid::new(3)).unwrap();
    assert_eq!(s.claim(Pasid::new(3)), Err(PasidError::InUse(3)));
    assert_eq!(Errno::from(s.claim(Pasid::new(8)).unwrap_err()), Errno::Overflow);
    assert_eq!(s.alloc(), Ok(Pasid::new(1)));
}

/// Semantics §5.11 #71: an mm with a global PASID gets IA32_PASID loaded
/// (PASID | valid) once and the ENQCMD retried.
#[test]
fn spec_71_enqcmd_fixup_loads_the_global_pasid_once() {
    let mut g = GlobalPasids::new();
    let mut mm = MmPasids::default();
    let p = mm.acquire_global(&mut g, FULL, LocalPolicy::V3).unwrap();
    let mut msr = Ia32Pasid::default();
    assert!(enqcmd_gp_fixup(&mut msr, &mm));
    assert_eq!(msr.0, Ia32Pasid::VALID | p.raw() as u64);
    assert!(!enqcmd_gp_fixup(&mut msr, &mm));
}

/// Semantics §5.11 #71: an mm with only a device-local PASID is not fixed up.
#[test]
fn spec_71_enqcmd_fixup_ignores_device_local_pasids() {
    let mut mm = MmPasids::default();
    mm.acquire_local(DEV_A, Pasid::new(5), 16, LocalPolicy::V2).unwrap();
    let mut msr = Ia32Pasid::default();
    assert!(!enqcmd_gp_fixup(&mut msr, &mm));
    assert_eq!(msr, Ia32Pasid::default());
}

proptest! {
    /// The allocator agrees with a simple set model: allocations are the
    /// lowest free value in [1, bound), frees return values.
    #[test]
    fn global_allocator_matches_a_set_model(ops in proptest::collection::vec((any::<bool>(), 1u32..300), 1..300)) {
        let mut g = GlobalPasids::new();
        let mut model = std::collections::BTreeSet::new();
        for (alloc, n) in ops {
            if alloc {
                let want = (1..n).find(|v| !model.contains(v));
                let got = g.alloc(n).ok().map(|p| p.raw());
                prop_assert_eq!(got, want);
                if let Some(v) = want { model.insert(v); }
            } else if let Some(&v) = model.iter().nth(n as usize % model.len().max(1)) {
                g.free(Pasid::new(v)).unwrap();
                model.remove(&v);
            }
            prop_assert_eq!(g.in_use() as usize, model.len());
        }
    }
}
