//! A counting global allocator for tests that assert a code path allocates
//! nothing.
//!
//! Install it in a test binary and read [`allocations`] around the code under
//! test:
//!
//! ```
//! #[global_allocator]
//! static ALLOC: alloc_counter::CountingAlloc = alloc_counter::CountingAlloc;
//!
//! fn code_under_test() -> u64 {
//!     (1..=10).sum()
//! }
//!
//! fn main() {
//!     let before = alloc_counter::allocations();
//!     assert_eq!(code_under_test(), 55);
//!     assert_eq!(alloc_counter::allocations() - before, 0);
//!     let v = vec![1u8; 16];
//!     assert_eq!(alloc_counter::allocations() - before, 1);
//!     drop(v);
//! }
//! ```
//!
//! Counts are kept per thread, so allocations made meanwhile by other
//! threads (the test harness, tests running in parallel) do not disturb a
//! measurement. Allocation, zeroed allocation and reallocation each count
//! as one allocation; deallocation is counted separately.
#![deny(unsafe_op_in_unsafe_fn)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// A global allocator that delegates to [`System`] and counts, per thread,
/// the calls that allocate.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

thread_local! {
    // Const-initialised and without a destructor: accessing these never
    // allocates and never registers a thread-exit hook, so the allocator can
    // use them without recursing into itself.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static DEALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn bump(counter: &'static std::thread::LocalKey<Cell<u64>>) {
    // `try_with` rather than `with`: an allocation during thread teardown
    // must not panic inside the allocator.
    let _ = counter.try_with(|c| c.set(c.get().wrapping_add(1)));
}

/// Allocations (alloc, alloc_zeroed and realloc calls) made by the current
/// thread so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Deallocations made by the current thread so far.
pub fn deallocations() -> u64 {
    DEALLOCATIONS.with(Cell::get)
}

/// Runs `f` and returns its result with the number of allocations the
/// current thread made while it ran.
pub fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = allocations();
    let r = f();
    let after = allocations();
    (r, after.wrapping_sub(before))
}

// SAFETY: every method delegates to `System` with the arguments it was given,
// so the `GlobalAlloc` contract holds exactly as it does for `System`; the
// counting touches only a thread-local `Cell` and never allocates or unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump(&ALLOCATIONS);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract
        // (non-zero-sized `layout`), which is the one `System.alloc` needs.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump(&ALLOCATIONS);
        // SAFETY: as for `alloc`: the caller's contract is `System`'s.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        bump(&DEALLOCATIONS);
        // SAFETY: the caller guarantees `ptr` was allocated by this allocator
        // with `layout`; every such block came from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(&ALLOCATIONS);
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence
        // from `System`) with `layout`, and that `new_size` is valid for it.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
