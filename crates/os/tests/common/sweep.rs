//! The fault-injection sweep (semantics §5.8 spec 52, the iommufd
//! `fail_nth` idea), shared by the VT-d and SMMUv3 sweeps: an operation is
//! re-run with its N-th frame allocation, and separately its N-th hardware
//! submission, failing, for every N the clean run used. Every failed run
//! must return an error, leave what the machine observes unchanged, and
//! succeed when retried without injection.

use std::fmt::Debug;

use iommu_os::Errno;

/// What fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// The N-th frame allocation fails (ENOMEM).
    Alloc,
    /// The N-th hardware submission (invalidation or command queue) fails
    /// (a time-out).
    Step,
}

/// A machine the sweep can build afresh, observe and inject into.
pub trait Swept: Sized {
    /// What a failed run must leave as it was.
    type Observed: PartialEq + Debug;
    /// A fresh machine.
    fn machine() -> Self;
    /// Its observable state.
    fn observe(&self) -> Self::Observed;
    /// Makes the `n`-th next step of `kind` fail (`None`: stop injecting).
    fn inject(&mut self, kind: Inject, n: Option<u64>);
    /// Steps of `kind` taken so far.
    fn steps(&self, kind: Inject) -> u64;
}

/// Runs the sweep for `op` after `prepare`: a clean run counts the
/// allocations and submissions the operation takes, then each of them is
/// made to fail in turn. Returns how many runs failed per kind.
pub fn sweep<C: Swept>(name: &str, prepare: fn(&mut C), op: fn(&mut C) -> Result<(), Errno>) -> [u64; 2] {
    sweep_retaining(name, prepare, op, |_, _| {})
}

/// [`sweep`], where `retained(before, after)` first adds to `before` what
/// a failed run leaves behind by design.
pub fn sweep_retaining<C: Swept>(
    name: &str,
    prepare: fn(&mut C),
    op: fn(&mut C) -> Result<(), Errno>,
    retained: fn(&mut C::Observed, &C::Observed),
) -> [u64; 2] {
    let mut failures = [0; 2];
    for (k, kind) in [Inject::Alloc, Inject::Step].into_iter().enumerate() {
        let mut clean = C::machine();
        prepare(&mut clean);
        let start = clean.steps(kind);
        assert_eq!(op(&mut clean), Ok(()), "{name}: clean run failed");
        let total = clean.steps(kind) - start;
        for n in 1..=total {
            let mut c = C::machine();
            prepare(&mut c);
            let mut before = c.observe();
            c.inject(kind, Some(n));
            let result = op(&mut c);
            c.inject(kind, None);
            if let Err(e) = result {
                failures[k] += 1;
                let after = c.observe();
                retained(&mut before, &after);
                assert_eq!(after, before, "{name}: {kind:?} n={n} failed with {e:?} but changed state");
                assert_eq!(op(&mut c), Ok(()), "{name}: {kind:?} n={n}: retry without injection failed");
            }
        }
    }
    failures
}

/// Implements [`Swept`] for a context type with a kernel in field `os`
/// whose driver has `fail_nth_submit` and `submissions` (both drivers do),
/// given the file's `machine()` and `observe()`.
macro_rules! swept_kernel {
    ($ctx:ty, $observed:ty) => {
        impl sweep::Swept for $ctx {
            type Observed = $observed;

            fn machine() -> Self {
                machine()
            }

            fn observe(&self) -> $observed {
                observe(self)
            }

            fn inject(&mut self, kind: sweep::Inject, n: Option<u64>) {
                match kind {
                    sweep::Inject::Alloc => self.os.iommu_mut().frames_mut().fail_nth(n),
                    sweep::Inject::Step => self.os.iommu_mut().driver_mut().fail_nth_submit(n),
                }
            }

            fn steps(&self, kind: sweep::Inject) -> u64 {
                match kind {
                    sweep::Inject::Alloc => self.os.iommu().frames().allocations(),
                    sweep::Inject::Step => self.os.iommu().driver().submissions(),
                }
            }
        }
    };
}
pub(crate) use swept_kernel;
