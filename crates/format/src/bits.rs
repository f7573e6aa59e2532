//! Field tables that read like the spec's figures.
//!
//! [`layout!`](crate::layout) declares a structure as `N` little-endian
//! 64-bit words plus one row per field (mnemonic, absolute `hi`, `lo`), and
//! generates the raw view: associated [`Field`] constants, `get`/`with`/`set`,
//! byte conversion, the reserved mask (`!` the union of all fields), and a
//! `Display` that lists the non-zero fields.
//!
//! A field never straddles two 64-bit words; a unit test per structure checks
//! that and that no two fields overlap.

use core::fmt;

/// One field of a structure: its spec mnemonic and absolute inclusive bit range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Field {
    /// Spec mnemonic.
    pub name: &'static str,
    /// Highest bit, absolute within the structure.
    pub hi: u16,
    /// Lowest bit, absolute within the structure.
    pub lo: u16,
}

impl Field {
    /// Declares a field.
    pub const fn new(name: &'static str, hi: u16, lo: u16) -> Self {
        Self { name, hi, lo }
    }

    /// Index of the 64-bit word holding the field.
    pub const fn word(&self) -> usize {
        (self.lo / 64) as usize
    }

    /// Width in bits.
    pub const fn width(&self) -> u32 {
        (self.hi - self.lo + 1) as u32
    }

    /// Mask of the field within its word, at its own bit positions.
    pub const fn mask_in_word(&self) -> u64 {
        let w = self.width();
        let m = if w >= 64 { u64::MAX } else { (1u64 << w) - 1 };
        m << (self.lo % 64)
    }

    /// Reads the field from `words`, shifted down to bit 0. A field beyond the
    /// slice reads as zero (never panics).
    pub const fn get(&self, words: &[u64]) -> u64 {
        let i = self.word();
        if i >= words.len() {
            return 0;
        }
        (words[i] & self.mask_in_word()) >> (self.lo % 64)
    }

    /// Reads the field in place, without shifting (for address fields such
    /// as `63:12`, whose value is already an aligned address).
    pub const fn get_in_place(&self, words: &[u64]) -> u64 {
        let i = self.word();
        if i >= words.len() {
            return 0;
        }
        words[i] & self.mask_in_word()
    }

    /// Writes `value` (shifted down to bit 0) into the field, truncating it to
    /// the field's width. A field beyond the slice is ignored.
    pub fn set(&self, words: &mut [u64], value: u64) {
        let i = self.word();
        if let Some(w) = words.get_mut(i) {
            let m = self.mask_in_word();
            *w = (*w & !m) | ((value << (self.lo % 64)) & m);
        }
    }

    /// Writes an in-place value (an aligned address) into the field; bits of
    /// `value` outside the field are dropped.
    pub fn set_in_place(&self, words: &mut [u64], value: u64) {
        let i = self.word();
        if let Some(w) = words.get_mut(i) {
            let m = self.mask_in_word();
            *w = (*w & !m) | (value & m);
        }
    }
}

/// The union of `fields`, as a per-word mask.
pub const fn defined_mask<const N: usize>(fields: &[Field]) -> [u64; N] {
    let mut out = [0u64; N];
    let mut i = 0;
    while i < fields.len() {
        let f = fields[i];
        if f.word() < N {
            out[f.word()] |= f.mask_in_word();
        }
        i += 1;
    }
    out
}

/// Checks a field table: every field inside one word of an `n`-word
/// structure, `hi >= lo`, and no two fields overlapping. Returns a
/// description of the first problem.
pub fn check_table(n: usize, fields: &[Field]) -> Result<(), String> {
    for (i, f) in fields.iter().enumerate() {
        if f.hi < f.lo || f.hi / 64 != f.lo / 64 || f.word() >= n {
            return Err(format!("field {} [{}:{}] is malformed or straddles a word", f.name, f.hi, f.lo));
        }
        for g in &fields[..i] {
            if g.word() == f.word() && g.mask_in_word() & f.mask_in_word() != 0 {
                return Err(format!("fields {} and {} overlap", g.name, f.name));
            }
        }
    }
    Ok(())
}

/// Writes `name=value` for every non-zero field, then any reserved bits.
pub fn fmt_fields(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    words: &[u64],
    fields: &[Field],
    reserved: &[u64],
) -> fmt::Result {
    write!(f, "{name}")?;
    for fd in fields {
        let v = fd.get(words);
        if v != 0 {
            if fd.width() == 1 {
                write!(f, " {}", fd.name)?;
            } else if fd.lo % 64 >= 12 && fd.hi % 64 >= 40 {
                write!(f, " {}={:#x}", fd.name, fd.get_in_place(words))?;
            } else {
                write!(f, " {}={:#x}", fd.name, v)?;
            }
        }
    }
    for (i, (w, r)) in words.iter().zip(reserved).enumerate() {
        if w & r != 0 {
            write!(f, " RSVD[qw{i}]={:#x}", w & r)?;
        }
    }
    Ok(())
}

/// Declares a raw structure view: `N` little-endian u64 words and its field table.
///
/// ```
/// iommu_format::layout! {
///     /// A two-word example.
///     pub struct Example([u64; 2]);
///     /// Present.
///     P: 0, 0;
///     /// A pointer.
///     PTR: 63, 12;
///     /// Something in the second word.
///     TAG: 79, 64;
/// }
/// let e = Example::default().with(Example::P, 1).with(Example::TAG, 0xBEEF);
/// assert_eq!(e.words(), [1, 0xBEEF]);
/// assert!(!e.has_reserved_bits());
/// ```
#[macro_export]
macro_rules! layout {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident([u64; $n:literal]);
        $( $(#[$fmeta:meta])* $field:ident : $hi:literal, $lo:literal; )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[repr(transparent)]
        $vis struct $name(pub [u64; $n]);

        #[allow(dead_code)]
        impl $name {
            $( $(#[$fmeta])* #[doc = concat!("\n\nBits ", stringify!($hi), ":", stringify!($lo), ".")]
               pub const $field: $crate::bits::Field = $crate::bits::Field::new(stringify!($field), $hi, $lo); )*

            /// Every field, in spec order.
            pub const FIELDS: &'static [$crate::bits::Field] = &[$(Self::$field),*];
            /// Size of the structure in bytes.
            pub const SIZE: usize = $n * 8;
            /// Bits no field claims: reserved (must be zero).
            pub const RESERVED: [u64; $n] = {
                let d = $crate::bits::defined_mask::<$n>(Self::FIELDS);
                let mut r = [0u64; $n];
                let mut i = 0;
                while i < $n {
                    r[i] = !d[i];
                    i += 1;
                }
                r
            };

            /// Wraps raw words (spec word order).
            #[inline]
            pub const fn from_words(words: [u64; $n]) -> Self {
                Self(words)
            }

            /// The raw words.
            #[inline]
            pub const fn words(&self) -> [u64; $n] {
                self.0
            }

            /// Decodes from little-endian bytes (any bytes are accepted).
            pub fn from_bytes(bytes: &[u8; $n * 8]) -> Self {
                let mut w = [0u64; $n];
                for (i, chunk) in bytes.chunks_exact(8).enumerate() {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(chunk);
                    w[i] = u64::from_le_bytes(b);
                }
                Self(w)
            }

            /// Encodes to little-endian bytes.
            pub fn to_bytes(self) -> [u8; $n * 8] {
                let mut out = [0u8; $n * 8];
                for (i, w) in self.0.iter().enumerate() {
                    out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
                }
                out
            }

            /// Reads a field (shifted to bit 0).
            #[inline]
            pub const fn get(&self, f: $crate::bits::Field) -> u64 {
                f.get(&self.0)
            }

            /// Reads a field in place (address fields).
            #[inline]
            pub const fn get_in_place(&self, f: $crate::bits::Field) -> u64 {
                f.get_in_place(&self.0)
            }

            /// Returns a copy with field `f` set to `value` (truncated to the field).
            #[inline]
            #[must_use]
            pub fn with(mut self, f: $crate::bits::Field, value: u64) -> Self {
                f.set(&mut self.0, value);
                self
            }

            /// Returns a copy with the in-place (address) field `f` set to `value`.
            #[inline]
            #[must_use]
            pub fn with_in_place(mut self, f: $crate::bits::Field, value: u64) -> Self {
                f.set_in_place(&mut self.0, value);
                self
            }

            /// Sets field `f` to `value` (truncated to the field).
            #[inline]
            pub fn set(&mut self, f: $crate::bits::Field, value: u64) {
                f.set(&mut self.0, value);
            }

            /// The reserved bits that are set, per word.
            #[inline]
            pub const fn reserved_bits(&self) -> [u64; $n] {
                let mut r = [0u64; $n];
                let mut i = 0;
                while i < $n {
                    r[i] = self.0[i] & Self::RESERVED[i];
                    i += 1;
                }
                r
            }

            /// Whether any reserved bit is set.
            #[inline]
            pub const fn has_reserved_bits(&self) -> bool {
                let mut i = 0;
                while i < $n {
                    if self.0[i] & Self::RESERVED[i] != 0 {
                        return true;
                    }
                    i += 1;
                }
                false
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                $crate::bits::fmt_fields(f, stringify!($name), &self.0, Self::FIELDS, &Self::RESERVED)
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{}[", stringify!($name))?;
                for (i, w) in self.0.iter().enumerate() {
                    if i > 0 {
                        write!(f, " ")?;
                    }
                    write!(f, "{:#018x}", w)?;
                }
                write!(f, "] ({})", self)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::layout! {
        /// Test structure.
        struct T([u64; 2]);
        /// Flag.
        A: 0, 0;
        /// Multi-bit.
        B: 5, 4;
        /// Address.
        C: 63, 12;
        /// Second word.
        D: 83, 64;
    }

    #[test]
    fn table_is_well_formed() {
        check_table(2, T::FIELDS).unwrap();
    }

    #[test]
    fn overlapping_fields_are_detected() {
        let bad = [Field::new("X", 7, 0), Field::new("Y", 8, 7)];
        assert!(check_table(1, &bad).is_err());
    }

    #[test]
    fn straddling_field_is_detected() {
        assert!(check_table(2, &[Field::new("X", 70, 60)]).is_err());
    }

    #[test]
    fn with_truncates_to_field_width() {
        let t = T::default().with(T::B, 0xFF);
        assert_eq!(t.words(), [0x30, 0]);
    }

    #[test]
    fn reserved_mask_is_complement_of_fields() {
        assert_eq!(T::RESERVED, [!(0x1 | 0x30 | 0xFFFF_FFFF_FFFF_F000), !0xF_FFFF]);
    }

    #[test]
    fn display_lists_nonzero_fields_and_reserved_bits() {
        let t = T::from_words([0x1001 | 0x100, 0x5]);
        assert_eq!(t.to_string(), "T A C=0x1000 D=0x5 RSVD[qw0]=0x100");
    }

    #[test]
    fn bytes_round_trip_little_endian() {
        let t = T::from_words([0x0102_0304_0506_0708, 0x1112]);
        let b = t.to_bytes();
        assert_eq!(b[0], 0x08);
        assert_eq!(T::from_bytes(&b), t);
    }
}
