//! The allocator counts this thread's allocations and no other thread's.

use alloc_counter::{count_allocations, deallocations, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn allocation_and_reallocation_each_count_once() {
    let (v, n) = count_allocations(|| {
        let mut v: Vec<u64> = Vec::with_capacity(1);
        v.reserve(64);
        std::hint::black_box(v)
    });
    assert_eq!(n, 2);
    let before = deallocations();
    drop(v);
    assert_eq!(deallocations() - before, 1);
}

#[test]
fn allocations_of_other_threads_are_not_counted() {
    // Spawning allocates on this thread too; measure a spawn whose thread
    // allocates nothing first (it also absorbs any one-time initialisation).
    let spawn_only = count_allocations(|| std::thread::scope(|s| s.spawn(|| std::hint::black_box(0u8)).join())).1;
    let with_vecs = count_allocations(|| {
        std::thread::scope(|s| {
            s.spawn(|| (0..1000).map(|i| std::hint::black_box(vec![i as u8; 100]).len()).sum::<usize>()).join()
        })
    })
    .1;
    assert!(with_vecs <= spawn_only, "{with_vecs} allocations counted, spawning alone makes {spawn_only}");
}

#[test]
fn arithmetic_allocates_nothing() {
    let (_, n) = count_allocations(|| std::hint::black_box(3u64).wrapping_mul(7));
    assert_eq!(n, 0);
}
