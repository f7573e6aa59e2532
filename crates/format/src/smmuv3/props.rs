//! Shared helpers of the layout property tests (`ste.rs`, `cd.rs`): legal
//! field values, and checks that a write touched only its own field.

use proptest::prelude::*;
use proptest::sample::{select, Index};

use crate::bits::{defined_mask, Field};

/// The values of a field a test may write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Legal {
    /// Every value that fits the field.
    Any,
    /// `lo..=hi`.
    Range(u64, u64),
    /// One of these.
    OneOf(&'static [u64]),
}

/// The largest value `f` holds.
pub(crate) fn max_value(f: Field) -> u64 {
    u64::MAX >> (64 - f.width())
}

/// Picks a field of `table` and a legal value for it.
pub(crate) fn legal_value(table: &'static [(Field, Legal)]) -> impl Strategy<Value = (Field, u64)> {
    (select(table), any::<u64>(), any::<Index>()).prop_map(|((f, legal), v, i)| {
        let value = match legal {
            Legal::Any => v & max_value(f),
            Legal::Range(lo, hi) => lo + v % (hi - lo + 1),
            Legal::OneOf(set) => *i.get(set),
        };
        (f, value)
    })
}

/// Whether `a` and `b` differ only inside `f`'s bits.
pub(crate) fn same_outside<const N: usize>(a: [u64; N], b: [u64; N], f: Field) -> bool {
    let m = defined_mask::<N>(&[f]);
    (0..N).all(|i| (a[i] ^ b[i]) & !m[i] == 0)
}
