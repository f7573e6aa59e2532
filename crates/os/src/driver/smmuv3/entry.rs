//! Live STE and CD updates (semantics §3.7): the "used bits" algorithm.
//!
//! The SMMU may read an STE or a CD at any time, a 64-bit word at a time
//! (SMMUv3 §3.21.3: single-copy atomicity is per doubleword), so a live
//! entry is changed in steps, each followed by CFGI + CMD_SYNC, such that
//! every state the SMMU can observe in between is one of: the old entry,
//! the new one, or (break-before-make) an invalid one:
//!
//! 1. bits the current entry does not use are written first (the SMMU
//!    ignores them);
//! 2. if then only one word still differs in bits the target uses, that
//!    word is written in one store: the change is hitless;
//! 3. otherwise V is cleared, the other words are written, and V is set
//!    again with the first word;
//! 4. finally any leftover bits the target does not use are cleaned up.
//!
//! [`plan`] computes the states; the driver writes each (only the words
//! that changed) and synchronises after it.

use iommu_format::bits::Field;
use iommu_format::smmuv3::cd::Cd;
use iommu_format::smmuv3::ste::{S1Dss, Ste, SteConfig};

/// Words in an STE and in a CD.
pub const QWORDS: usize = 8;

/// An entry as the 8 words the SMMU reads.
pub type Words = [u64; QWORDS];

/// Sets every bit of `fields` in `used`.
fn mark(used: &mut Words, fields: &[Field]) {
    for f in fields {
        used[f.word()] |= f.mask_in_word();
    }
}

/// The bits of STE `e` that the SMMU uses (SMMUv3 §5.2: which fields each
/// Config value makes the SMMU read).
pub fn ste_used(e: &Words) -> Words {
    let mut used = [0; QWORDS];
    mark(&mut used, &[Ste::V]);
    let ste = Ste::from_words(*e);
    if ste.get(Ste::V) == 0 {
        return used;
    }
    mark(&mut used, &[Ste::CONFIG]);
    let config = ste.config();
    let s1 = matches!(config, SteConfig::S1 | SteConfig::Nested);
    let s2 = matches!(config, SteConfig::S2 | SteConfig::Nested);
    if s1 {
        mark(
            &mut used,
            &[
                Ste::S1FMT,
                Ste::S1CONTEXTPTR,
                Ste::S1CDMAX,
                Ste::S1DSS,
                Ste::S1CIR,
                Ste::S1COR,
                Ste::S1CSH,
                Ste::S1STALLD,
                Ste::EATS,
                Ste::STRW,
                // S2VMID tags stage-1 TLB entries too (§5.2).
                Ste::S2VMID,
            ],
        );
        // Bypassed untagged traffic takes its shareability from SHCFG.
        if config == SteConfig::S1 && S1Dss::from_bits(ste.get(Ste::S1DSS)) == S1Dss::Bypass {
            mark(&mut used, &[Ste::SHCFG]);
        }
    }
    if s2 {
        mark(
            &mut used,
            &[
                Ste::EATS,
                Ste::SHCFG,
                Ste::S2VMID,
                Ste::S2T0SZ,
                Ste::S2SL0,
                Ste::S2IR0,
                Ste::S2OR0,
                Ste::S2SH0,
                Ste::S2TG,
                Ste::S2PS,
                Ste::S2AA64,
                Ste::S2ENDI,
                Ste::S2AFFD,
                Ste::S2PTW,
                Ste::S2HD,
                Ste::S2HA,
                Ste::S2S,
                Ste::S2R,
                Ste::S2TTB,
            ],
        );
    }
    if config == SteConfig::Bypass {
        mark(&mut used, &[Ste::SHCFG]);
    }
    used
}

/// The bits of CD `e` that the SMMU uses (SMMUv3 §5.4): only V while V is
/// clear; everything otherwise, except that EPD0 makes the TTB0 walk
/// parameters and TTB0 itself ignored.
pub fn cd_used(e: &Words) -> Words {
    let mut used = [0; QWORDS];
    mark(&mut used, &[Cd::V]);
    let cd = Cd::from_words(*e);
    if cd.get(Cd::V) == 0 {
        return used;
    }
    let mut used = [u64::MAX; QWORDS];
    if cd.get(Cd::EPD0) != 0 {
        for f in [Cd::T0SZ, Cd::TG0, Cd::IR0, Cd::OR0, Cd::SH0, Cd::TTB0] {
            used[f.word()] &= !f.mask_in_word();
        }
    }
    used
}

/// Whether a planned update is hitless or goes through an invalid entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// Nothing the SMMU uses changes (at most unused bits are tidied).
    Unchanged,
    /// One used word changes, in one store.
    Hitless,
    /// V is cleared, the entry rewritten, V set again.
    BreakBeforeMake,
}

/// The states to write, in order, to take a live entry from `cur` to
/// `target` (each differs from the one before; the driver syncs after
/// each), and what kind of transition it is. `used` is [`ste_used`] or
/// [`cd_used`]; `v` is the entry's V field.
pub fn plan(cur: &Words, target: &Words, used: fn(&Words) -> Words, v: Field) -> (Vec<Words>, Transition) {
    let cur_used = used(cur);
    let target_used = used(target);
    let mut unused_update = [0; QWORDS];
    let mut diff = 0u32;
    for i in 0..QWORDS {
        // Bits the current entry ignores can take their target value now.
        unused_update[i] = (cur[i] & cur_used[i]) | (target[i] & !cur_used[i]);
        // Words still differing in bits the target uses.
        if unused_update[i] & target_used[i] != target[i] & target_used[i] {
            diff |= 1 << i;
        }
    }
    let mut states: Vec<Words> = Vec::with_capacity(3);
    let push = |s: Words, states: &mut Vec<Words>| {
        if states.last().unwrap_or(cur) != &s {
            states.push(s);
        }
    };
    let kind = match diff.count_ones() {
        0 => {
            push(*target, &mut states);
            Transition::Unchanged
        }
        1 => {
            let critical = diff.trailing_zeros() as usize;
            let mut first = unused_update;
            first[critical] = cur[critical];
            push(first, &mut states);
            let mut second = first;
            second[critical] = target[critical];
            push(second, &mut states);
            push(*target, &mut states);
            Transition::Hitless
        }
        _ => {
            let mut invalid = *cur;
            invalid[v.word()] &= !v.mask_in_word();
            push(invalid, &mut states);
            let mut rest = *target;
            rest[v.word()] = invalid[v.word()];
            push(rest, &mut states);
            push(*target, &mut states);
            Transition::BreakBeforeMake
        }
    };
    (states, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abort() -> Words {
        Ste::default().with(Ste::V, 1).with_config(SteConfig::Abort).words()
    }

    fn bypass() -> Words {
        Ste::default().with(Ste::V, 1).with_config(SteConfig::Bypass).with(Ste::SHCFG, 1).words()
    }

    fn s2() -> Words {
        Ste::default()
            .with(Ste::V, 1)
            .with_config(SteConfig::S2)
            .with(Ste::S2VMID, 3)
            .with(Ste::S2T0SZ, 16)
            .with(Ste::S2SL0, 2)
            .with(Ste::S2AA64, 1)
            .with(Ste::S2R, 1)
            .with_s2ttb(0x8000)
            .words()
    }

    fn cd_table(dss: u64) -> Words {
        Ste::default()
            .with(Ste::V, 1)
            .with_config(SteConfig::S1)
            .with_s1_context_ptr(0x4_0000)
            .with(Ste::S1CDMAX, 8)
            .with(Ste::S1DSS, dss)
            .words()
    }

    fn sva_cd() -> Words {
        Cd::default()
            .with(Cd::V, 1)
            .with(Cd::T0SZ, 16)
            .with(Cd::EPD1, 1)
            .with(Cd::IPS, 5)
            .with(Cd::AA64, 1)
            .with(Cd::R, 1)
            .with(Cd::A, 1)
            .with(Cd::ASET, 1)
            .with(Cd::ASID, 1997)
            .with_in_place(Cd::TTB0, 0x7000)
            .with(Cd::MAIR0, 0xFF)
            .words()
    }

    fn release_cd() -> Words {
        let mut c = Cd::from_words(sva_cd());
        c.set(Cd::EPD0, 1);
        c.set(Cd::R, 0);
        c.set(Cd::T0SZ, 0);
        c.set(Cd::TTB0, 0);
        c.words()
    }

    fn ste(a: Words, b: Words) -> (usize, Transition) {
        let (s, k) = plan(&a, &b, ste_used, Ste::V);
        (s.len(), k)
    }

    fn cd(a: Words, b: Words) -> (usize, Transition) {
        let (s, k) = plan(&a, &b, cd_used, Cd::V);
        (s.len(), k)
    }

    #[test]
    fn bypass_to_abort_is_hitless_in_two_syncs() {
        assert_eq!(ste(bypass(), abort()), (2, Transition::Hitless));
    }

    #[test]
    fn abort_to_bypass_is_hitless_in_two_syncs() {
        assert_eq!(ste(abort(), bypass()), (2, Transition::Hitless));
    }

    #[test]
    fn cd_table_to_s2_breaks_before_make_in_three_syncs() {
        assert_eq!(ste(cd_table(1), s2()), (3, Transition::BreakBeforeMake));
    }

    #[test]
    fn s2_to_cd_table_breaks_before_make_in_three_syncs() {
        assert_eq!(ste(s2(), cd_table(0)), (3, Transition::BreakBeforeMake));
    }

    #[test]
    fn changing_only_s1dss_is_hitless_in_one_sync() {
        assert_eq!(ste(cd_table(0), cd_table(2)), (1, Transition::Hitless));
    }

    #[test]
    fn sva_cd_to_cleared_cd_takes_two_syncs() {
        assert_eq!(cd(sva_cd(), [0; 8]), (2, Transition::Hitless));
        assert_eq!(cd([0; 8], sva_cd()), (2, Transition::Hitless));
    }

    #[test]
    fn sva_cd_to_release_cd_is_hitless_in_two_syncs() {
        assert_eq!(cd(sva_cd(), release_cd()), (2, Transition::Hitless));
        assert_eq!(cd(release_cd(), sva_cd()), (2, Transition::Hitless));
    }

    #[test]
    fn changing_the_asid_of_a_live_cd_is_hitless_in_one_sync() {
        let mut other = Cd::from_words(sva_cd());
        other.set(Cd::ASID, 7);
        assert_eq!(cd(sva_cd(), other.words()), (1, Transition::Hitless));
    }

    #[test]
    fn a_write_of_the_same_entry_needs_no_sync() {
        assert_eq!(ste(s2(), s2()), (0, Transition::Unchanged));
    }

    #[test]
    fn every_intermediate_state_is_the_old_the_new_or_an_invalid_entry() {
        // What the SMMU sees (the used bits of each state) is never a mix.
        let entries = [abort(), bypass(), s2(), cd_table(0), cd_table(1), cd_table(2)];
        for a in entries {
            for b in entries {
                let (states, _) = plan(&a, &b, ste_used, Ste::V);
                for s in &states {
                    let u = ste_used(s);
                    let seen: Vec<u64> = (0..8).map(|i| s[i] & u[i]).collect();
                    let as_old: Vec<u64> = (0..8).map(|i| a[i] & u[i]).collect();
                    let as_new: Vec<u64> = (0..8).map(|i| b[i] & u[i]).collect();
                    let invalid = s[0] & 1 == 0;
                    assert!(
                        invalid || (seen == as_old && ste_used(&a) == u) || seen == as_new,
                        "{a:x?} -> {b:x?} passes through {s:x?}"
                    );
                }
            }
        }
    }
}
