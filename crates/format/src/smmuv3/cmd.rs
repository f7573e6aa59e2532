//! Command queue entries, SMMUv3 §4.
//!
//! Every command is 16 bytes, two little-endian words, and starts with an
//! 8-bit opcode (§4.1.1). Everything after the opcode depends on the opcode,
//! so the raw view [`CmdRaw`] names only the opcode, each family of commands
//! has its own field table ([`PrefetchCmd`], [`CfgiCmd`], [`CfgiSteRangeCmd`],
//! [`CfgiVmsPidmCmd`], [`TlbiCmd`], [`TlbiS2IpaCmd`], [`AtcInvCmd`],
//! [`PriRespCmd`], [`ResumeCmd`], [`SyncCmd`]) and [`fields`] says which rows
//! of those tables one opcode uses. Bit positions are written only in those
//! tables.
//!
//! [`Command::decode`] models the **Non-secure** Command queue. It rejects
//! what is illegal whatever the SMMU implements: a reserved opcode, SSec set
//! (§4.1.6), an EL3 invalidation (§4.4.2.5, §4.4.2.6) and reserved field
//! values. Legality that depends on implemented features (stage 1 or 2, Hyp,
//! ATS, PRI, the stall model, MPAM, range invalidation, SubstreamID size) is
//! for the device model to judge from the ID registers.
//!
//! Reserved (RES0) bits: §4.1.5 lets an implementation either reject a
//! command whose RES0 bits are non-zero or ignore those bits. `decode` ignores
//! them; [`reserved_bits`] reports them, so the device model can make either
//! choice.
//!
//! Address widths follow the SMMUv3.3 feature set (docs/SPECS.md): virtual
//! addresses are Address\[63:12\]; IPAs and physical addresses stop at bit 51
//! (§4.1.6 makes bits 55:52 RES0 up to SMMUv3.3; later revisions widen them
//! to bit 55).

use iommu_types::{StreamId, SubstreamId};

use crate::bits::Field;

crate::layout! {
    /// A raw command, SMMUv3 §4.1.1, seen through the one field every
    /// command shares: the opcode. All other bits belong to the opcode's own
    /// table (see [`fields`]), so the derived `RESERVED` mask of this view
    /// means nothing; [`reserved_bits`] gives the real one.
    pub struct CmdRaw([u64; 2]);
    /// Command opcode (see [`opcode`]).
    OPCODE: 7, 0;
}

impl CmdRaw {
    /// The opcode byte.
    pub const fn opcode(&self) -> u8 {
        self.get(Self::OPCODE) as u8
    }
}

/// Command opcodes, SMMUv3 §4.1.1.
///
/// Any other value is reserved, IMPLEMENTATION DEFINED (0x80–0x8F), valid
/// only on the Secure queue (the `CMD_TLBI_S_*` and `CMD_TLBI_SNH_ALL`
/// group) or from a later revision; on a Non-secure queue every one of them
/// raises CERROR_ILL (§4.1.3), which [`Command::decode`] reports as
/// [`CmdError::UnknownOpcode`].
pub mod opcode {
    /// CMD_PREFETCH_CONFIG, §4.2.1.
    pub const PREFETCH_CONFIG: u8 = 0x01;
    /// CMD_PREFETCH_ADDR, §4.2.2.
    pub const PREFETCH_ADDR: u8 = 0x02;
    /// CMD_CFGI_STE, §4.3.1.
    pub const CFGI_STE: u8 = 0x03;
    /// CMD_CFGI_STE_RANGE, §4.3.2.
    pub const CFGI_STE_RANGE: u8 = 0x04;
    /// CMD_CFGI_ALL, §4.3.6: the same opcode as CMD_CFGI_STE_RANGE, with
    /// Range = 31 ([`super::CFGI_ALL_RANGE`]).
    pub const CFGI_ALL: u8 = CFGI_STE_RANGE;
    /// CMD_CFGI_CD, §4.3.3.
    pub const CFGI_CD: u8 = 0x05;
    /// CMD_CFGI_CD_ALL, §4.3.4.
    pub const CFGI_CD_ALL: u8 = 0x06;
    /// CMD_CFGI_VMS_PIDM, §4.3.5. Part of MPAM support (SMMUv3.2 and later);
    /// an SMMU without MPAM (IDR3.MPAM == 0) rejects it.
    pub const CFGI_VMS_PIDM: u8 = 0x07;
    /// CMD_TLBI_NH_ALL, §4.4.2.1.
    pub const TLBI_NH_ALL: u8 = 0x10;
    /// CMD_TLBI_NH_ASID, §4.4.2.2.
    pub const TLBI_NH_ASID: u8 = 0x11;
    /// CMD_TLBI_NH_VA, §4.4.2.4.
    pub const TLBI_NH_VA: u8 = 0x12;
    /// CMD_TLBI_NH_VAA, §4.4.2.3.
    pub const TLBI_NH_VAA: u8 = 0x13;
    /// CMD_TLBI_EL3_ALL, §4.4.2.5 (Secure queue only).
    pub const TLBI_EL3_ALL: u8 = 0x18;
    /// CMD_TLBI_EL3_VA, §4.4.2.6 (Secure queue only).
    pub const TLBI_EL3_VA: u8 = 0x1A;
    /// CMD_TLBI_EL2_ALL, §4.4.2.7.
    pub const TLBI_EL2_ALL: u8 = 0x20;
    /// CMD_TLBI_EL2_ASID, §4.4.2.10.
    pub const TLBI_EL2_ASID: u8 = 0x21;
    /// CMD_TLBI_EL2_VA, §4.4.2.8.
    pub const TLBI_EL2_VA: u8 = 0x22;
    /// CMD_TLBI_EL2_VAA, §4.4.2.9.
    pub const TLBI_EL2_VAA: u8 = 0x23;
    /// CMD_TLBI_S12_VMALL, §4.4.3.2.
    pub const TLBI_S12_VMALL: u8 = 0x28;
    /// CMD_TLBI_S2_IPA, §4.4.3.1.
    pub const TLBI_S2_IPA: u8 = 0x2A;
    /// CMD_TLBI_NSNH_ALL, §4.4.4.1.
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    /// CMD_ATC_INV, §4.5.1.
    pub const ATC_INV: u8 = 0x40;
    /// CMD_PRI_RESP, §4.5.2.
    pub const PRI_RESP: u8 = 0x41;
    /// CMD_RESUME, §4.7.1.
    pub const RESUME: u8 = 0x44;
    /// CMD_STALL_TERM, §4.7.2.
    pub const STALL_TERM: u8 = 0x45;
    /// CMD_SYNC, §4.7.3.
    pub const CMD_SYNC: u8 = 0x46;
}

/// The Range value that turns CMD_CFGI_STE_RANGE into CMD_CFGI_ALL, SMMUv3
/// §4.3.6 (2^32 StreamIDs; the StreamID operand is then ignored).
pub const CFGI_ALL_RANGE: u8 = 31;

crate::layout! {
    /// CMD_PREFETCH_CONFIG and CMD_PREFETCH_ADDR, SMMUv3 §4.2.1 and §4.2.2.
    /// PREFETCH_CONFIG uses word 0 only. The Stride and NS operands of
    /// PREFETCH_ADDR are not named: Stride is RES0 in SMMUv3.0 and NS is
    /// RES0 on the Non-secure queue (§4.2.2), so their bits are reported as
    /// reserved.
    pub struct PrefetchCmd([u64; 2]);
    /// Opcode (0x01 or 0x02).
    OPCODE: 7, 0;
    /// SSec: the StreamID is Secure; must be 0 on the Non-secure queue (§4.1.6).
    SSEC: 10, 10;
    /// SSV: a SubstreamID is supplied.
    SSV: 11, 11;
    /// SubstreamID, used when SSV is set.
    SSID: 31, 12;
    /// StreamID.
    SID: 63, 32;
    /// Size: prefetch 2^Size translations (PREFETCH_ADDR only). Named
    /// `SIZE_LOG2` because `SIZE` is the structure size.
    SIZE_LOG2: 68, 64;
    /// Address\[63:12\] (PREFETCH_ADDR only).
    ADDR: 127, 76;
}

crate::layout! {
    /// CMD_CFGI_STE, CMD_CFGI_CD and CMD_CFGI_CD_ALL, SMMUv3 §4.3.1, §4.3.3
    /// and §4.3.4. CFGI_STE has no SubstreamID and CFGI_CD_ALL has neither a
    /// SubstreamID nor Leaf. There is no SSV: CFGI_CD always names a CD
    /// table index.
    pub struct CfgiCmd([u64; 2]);
    /// Opcode (0x03, 0x05 or 0x06).
    OPCODE: 7, 0;
    /// SSec: the StreamID is Secure; must be 0 on the Non-secure queue (§4.1.6).
    SSEC: 10, 10;
    /// SubstreamID: the index of the CD to invalidate (CFGI_CD only).
    SSID: 31, 12;
    /// StreamID.
    SID: 63, 32;
    /// Leaf: the intermediate L1STD / L1CD need not be invalidated.
    LEAF: 64, 64;
}

crate::layout! {
    /// CMD_CFGI_STE_RANGE (and CMD_CFGI_ALL, Range = 31), SMMUv3 §4.3.2 and
    /// §4.3.6.
    pub struct CfgiSteRangeCmd([u64; 2]);
    /// Opcode (0x04).
    OPCODE: 7, 0;
    /// SSec: the StreamIDs are Secure; must be 0 on the Non-secure queue (§4.1.6).
    SSEC: 10, 10;
    /// StreamID; its low Range+1 bits are ignored.
    SID: 63, 32;
    /// Range: invalidate 2^(Range+1) StreamIDs (every value 0–31 is legal).
    RANGE: 68, 64;
}

crate::layout! {
    /// CMD_CFGI_VMS_PIDM, SMMUv3 §4.3.5.
    pub struct CfgiVmsPidmCmd([u64; 2]);
    /// Opcode (0x07).
    OPCODE: 7, 0;
    /// SSec: the Security state of the VMID; must be 0 on the Non-secure queue.
    SSEC: 10, 10;
    /// VMID whose cached PARTID_MAP is invalidated.
    VMID: 47, 32;
}

crate::layout! {
    /// The stage-1 TLB invalidations, SMMUv3 §4.4.2, drawn as
    /// CMD_TLBI_NH_VA (§4.4.2.4), which has every field. The other stage-1
    /// commands use a subset ([`fields`]): NH_ALL and S12_VMALL only VMID,
    /// NH_ASID VMID and ASID, NH_VAA no ASID, EL2_VA no VMID, EL2_VAA and
    /// EL3_VA neither, EL2_ASID only ASID. NUM, SCALE, TTL and TG are the
    /// range and level-hint operands of §4.4.1.1.
    pub struct TlbiCmd([u64; 2]);
    /// Opcode.
    OPCODE: 7, 0;
    /// NUM: range granule multiplier (range = (NUM+1) × 2^SCALE granules).
    NUM: 16, 12;
    /// SCALE: range scale (5 bits without 52-bit 4K/16K support).
    SCALE: 24, 20;
    /// VMID.
    VMID: 47, 32;
    /// ASID.
    ASID: 63, 48;
    /// Leaf: only last-level entries need be invalidated.
    LEAF: 64, 64;
    /// TTL: level of the leaf entries (a hint), used when TG != 0.
    TTL: 73, 72;
    /// TG: granule of the entries (0 = any, no range or hint).
    TG: 75, 74;
    /// Address\[63:12\] (a VA).
    ADDR: 127, 76;
}

crate::layout! {
    /// CMD_TLBI_S2_IPA, SMMUv3 §4.4.3.1: like [`TlbiCmd`] without ASID, and the
    /// address is an IPA, IPA\[51:12\].
    pub struct TlbiS2IpaCmd([u64; 2]);
    /// Opcode (0x2A).
    OPCODE: 7, 0;
    /// NUM: range granule multiplier.
    NUM: 16, 12;
    /// SCALE: range scale.
    SCALE: 24, 20;
    /// VMID.
    VMID: 47, 32;
    /// Leaf: only last-level entries need be invalidated.
    LEAF: 64, 64;
    /// TTL: level hint, used when TG != 0.
    TTL: 73, 72;
    /// TG: granule of the entries (0 = any).
    TG: 75, 74;
    /// IPA\[51:12\].
    ADDR: 115, 76;
}

crate::layout! {
    /// CMD_ATC_INV, SMMUv3 §4.5.1: an ATS invalidation request sent to the
    /// endpoint. It has no SSec: ATS streams are Non-secure (or Realm).
    pub struct AtcInvCmd([u64; 2]);
    /// Opcode (0x40).
    OPCODE: 7, 0;
    /// Global: set the Global Invalidate flag (only meaningful with SSV).
    GLOBAL: 9, 9;
    /// SSV: send a PASID prefix carrying SubstreamID.
    SSV: 11, 11;
    /// SubstreamID (the PASID), used when SSV is set.
    SSID: 31, 12;
    /// StreamID of the endpoint.
    SID: 63, 32;
    /// Size: the span is 4 KiB × 2^Size, aligned to itself (52 = everything).
    /// Named `SIZE_LOG2` because `SIZE` is the structure size.
    SIZE_LOG2: 69, 64;
    /// Address\[63:12\].
    ADDR: 127, 76;
}

crate::layout! {
    /// CMD_PRI_RESP, SMMUv3 §4.5.2: the response to a page request group.
    pub struct PriRespCmd([u64; 2]);
    /// Opcode (0x41).
    OPCODE: 7, 0;
    /// SSV: send a PASID prefix carrying SubstreamID.
    SSV: 11, 11;
    /// SubstreamID (the PASID), used when SSV is set.
    SSID: 31, 12;
    /// StreamID of the endpoint.
    SID: 63, 32;
    /// PRGIndex: the page request group being answered.
    PRGINDEX: 72, 64;
    /// Resp: the response code (see [`PriResponse`]).
    RESP: 77, 76;
}

crate::layout! {
    /// CMD_RESUME, SMMUv3 §4.7.1. CMD_STALL_TERM (§4.7.2) uses the same
    /// SSec and StreamID positions and nothing else.
    pub struct ResumeCmd([u64; 2]);
    /// Opcode (0x44, or 0x45 for STALL_TERM).
    OPCODE: 7, 0;
    /// SSec: the StreamID is Secure; must be 0 on the Non-secure queue (§4.1.6).
    SSEC: 10, 10;
    /// Ac (Action): 1 retries the transaction, 0 terminates it.
    AC: 12, 12;
    /// Ab (Abort): when terminating, 1 aborts and 0 completes with RAZ/WI.
    AB: 13, 13;
    /// StreamID of the stalled transaction.
    SID: 63, 32;
    /// STAG: the token from the stall event record.
    STAG: 79, 64;
}

crate::layout! {
    /// CMD_SYNC, SMMUv3 §4.7.3.
    pub struct SyncCmd([u64; 2]);
    /// Opcode (0x46).
    OPCODE: 7, 0;
    /// CS (ComplSignal): how completion is signalled (see [`SyncCompletion`]).
    CS: 13, 12;
    /// MSH: Shareability of the MSI write.
    MSH: 23, 22;
    /// MSIAttr: memory type of the MSI write (encoded like STE.MemAttr).
    MSIATTR: 27, 24;
    /// MSIData: the 32-bit MSI payload.
    MSIDATA: 63, 32;
    /// MSIAddress\[51:2\] (zero: no MSI).
    MSIADDR: 115, 66;
}

/// The rows of the family tables that `opcode` uses, or `None` for an opcode
/// this model does not know (SMMUv3 §4.1.1). Everything outside them is
/// RES0 (§4.1.5).
pub fn fields(opcode: u8) -> Option<&'static [Field]> {
    use self::opcode as op;
    use self::{
        AtcInvCmd as A, CfgiCmd as C, CfgiSteRangeCmd as R, CfgiVmsPidmCmd as V, PrefetchCmd as P, PriRespCmd as Pr,
        ResumeCmd as Rs, SyncCmd as Y, TlbiCmd as T, TlbiS2IpaCmd as S,
    };
    Some(match opcode {
        op::PREFETCH_CONFIG => &[P::OPCODE, P::SSEC, P::SSV, P::SSID, P::SID],
        op::PREFETCH_ADDR => P::FIELDS,
        op::CFGI_STE => &[C::OPCODE, C::SSEC, C::SID, C::LEAF],
        op::CFGI_STE_RANGE => R::FIELDS,
        op::CFGI_CD => C::FIELDS,
        op::CFGI_CD_ALL => &[C::OPCODE, C::SSEC, C::SID],
        op::CFGI_VMS_PIDM => V::FIELDS,
        op::TLBI_NH_ALL | op::TLBI_S12_VMALL => &[T::OPCODE, T::VMID],
        op::TLBI_NH_ASID => &[T::OPCODE, T::VMID, T::ASID],
        op::TLBI_NH_VA => T::FIELDS,
        op::TLBI_NH_VAA => &[T::OPCODE, T::NUM, T::SCALE, T::VMID, T::LEAF, T::TTL, T::TG, T::ADDR],
        op::TLBI_EL3_ALL | op::TLBI_EL2_ALL | op::TLBI_NSNH_ALL => CmdRaw::FIELDS,
        op::TLBI_EL3_VA | op::TLBI_EL2_VAA => &[T::OPCODE, T::NUM, T::SCALE, T::LEAF, T::TTL, T::TG, T::ADDR],
        op::TLBI_EL2_ASID => &[T::OPCODE, T::ASID],
        op::TLBI_EL2_VA => &[T::OPCODE, T::NUM, T::SCALE, T::ASID, T::LEAF, T::TTL, T::TG, T::ADDR],
        op::TLBI_S2_IPA => S::FIELDS,
        op::ATC_INV => A::FIELDS,
        op::PRI_RESP => Pr::FIELDS,
        op::RESUME => Rs::FIELDS,
        op::STALL_TERM => &[Rs::OPCODE, Rs::SSEC, Rs::SID],
        op::CMD_SYNC => Y::FIELDS,
        _ => return None,
    })
}

/// The RES0 bits (SMMUv3 §4.1.5) set in a command, per word, or `None` for
/// an opcode this model does not know. [`Command::decode`] ignores them; a
/// model that chooses to reject them raises CERROR_ILL when this is non-zero.
pub fn reserved_bits(words: [u64; 2]) -> Option<[u64; 2]> {
    let defined = crate::bits::defined_mask::<2>(fields(CmdRaw::OPCODE.get(&words) as u8)?);
    Some([words[0] & !defined[0], words[1] & !defined[1]])
}

/// CMD_SYNC completion signal (CS), SMMUv3 §4.7.3. 0b11 is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncCompletion {
    /// 0b00 SIG_NONE: no signal; the MSI operands are ignored.
    SigNone,
    /// 0b01 SIG_IRQ: raise the CMD_SYNC interrupt (an MSI when MSIAddress is
    /// non-zero and MSIs are implemented).
    SigIrq,
    /// 0b10 SIG_SEV: send a WFE wake-up event (no effect without IDR0.SEV).
    SigSev,
}

impl SyncCompletion {
    /// Decodes CS; `None` for the reserved value 0b11.
    pub const fn from_bits(v: u64) -> Option<Self> {
        match v & 3 {
            0 => Some(Self::SigNone),
            1 => Some(Self::SigIrq),
            2 => Some(Self::SigSev),
            _ => None,
        }
    }
    /// The 2-bit encoding.
    pub const fn bits(self) -> u64 {
        self as u64
    }
}

/// CMD_PRI_RESP response code (Resp), SMMUv3 §4.5.2. 0b11 is reserved.
/// The names are the PCIe PRG response codes the SMMU forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PriResponse {
    /// 0b00 ResponseFailure: permanent, non-paging error; the endpoint stops
    /// issuing page requests.
    ResponseFailure,
    /// 0b01 InvalidRequest: one or more pages of the group could not be made
    /// available.
    InvalidRequest,
    /// 0b10 Success: the whole group was paged in.
    Success,
}

impl PriResponse {
    /// Decodes Resp; `None` for the reserved value 0b11.
    pub const fn from_bits(v: u64) -> Option<Self> {
        match v & 3 {
            0 => Some(Self::ResponseFailure),
            1 => Some(Self::InvalidRequest),
            2 => Some(Self::Success),
            _ => None,
        }
    }
    /// The 2-bit encoding.
    pub const fn bits(self) -> u64 {
        self as u64
    }
}

/// What CMD_RESUME does with the stalled transaction, SMMUv3 §4.7.1 (the
/// Ac and Ab operands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResumeAction {
    /// Ac = 1: retry the transaction as if it had just arrived (Ab is ignored).
    Retry,
    /// Ac = 0: terminate it. `abort` (Ab) = true reports an abort to the
    /// client; false completes it with RAZ/WI semantics, unless
    /// IDR0.TERM_MODEL == 1, which always aborts.
    Terminate {
        /// Ab.
        abort: bool,
    },
}

/// The address operand of an address-based TLB invalidation, with the range
/// and level-hint fields of SMMUv3 §4.4.1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TlbiRange {
    /// Base address, 4 KiB aligned: VA\[63:12\], or IPA\[51:12\] for
    /// CMD_TLBI_S2_IPA. Bits outside the command's field are dropped by
    /// [`Command::encode`].
    pub addr: u64,
    /// Leaf: only last-level entries need be invalidated.
    pub leaf: bool,
    /// TTL (2 bits): level of the leaf entries, a hint; used when `tg` != 0.
    pub ttl: u8,
    /// TG (2 bits): 0 = entries of any granule (no range, no hint); 1, 2, 3 =
    /// 4 KiB, 16 KiB, 64 KiB granule, and the command is a range invalidation.
    pub tg: u8,
    /// NUM (5 bits): the range is (NUM+1) × 2^SCALE granules.
    pub num: u8,
    /// SCALE (5 bits).
    pub scale: u8,
}

impl TlbiRange {
    /// A plain (non-range, no hint) invalidation of the entry holding `addr`.
    pub const fn page(addr: u64, leaf: bool) -> Self {
        Self { addr, leaf, ttl: 0, tg: 0, num: 0, scale: 0 }
    }

    /// Whether this is a range invalidation (TG != 0), §4.4.1.1.
    pub const fn is_range(&self) -> bool {
        self.tg & 3 != 0
    }

    /// Whether the operands are the reserved combination of §4.4.1.1:
    /// TG != 0 with NUM, SCALE and TTL all zero (a granule and nothing to use
    /// it for), which raises CERROR_ILL.
    pub const fn is_reserved(&self) -> bool {
        self.is_range() && self.ttl & 3 == 0 && self.num & 0x1F == 0 && self.scale & 0x1F == 0
    }

    /// Whether TTL, NUM or SCALE is non-zero while TG == 0, where §4.4.1.1
    /// makes them RES0. `decode` keeps them (they have no effect); a model
    /// that rejects non-zero RES0 fields (§4.1.5) checks this as well as
    /// [`reserved_bits`].
    pub const fn has_res0_operands(&self) -> bool {
        !self.is_range() && (self.ttl & 3 != 0 || self.num & 0x1F != 0 || self.scale & 0x1F != 0)
    }

    /// The translation granule TG names, in bytes; `None` when TG == 0.
    pub const fn granule(&self) -> Option<u64> {
        match self.tg & 3 {
            1 => Some(1 << 12),
            2 => Some(1 << 14),
            3 => Some(1 << 16),
            _ => None,
        }
    }

    /// The span of a range invalidation in bytes, (NUM+1) × 2^SCALE × granule
    /// (§4.4.1.1), starting at `addr`; `None` when TG == 0.
    pub const fn span(&self) -> Option<u64> {
        match self.granule() {
            Some(g) => Some((((self.num & 0x1F) as u64 + 1) << (self.scale & 0x1F)) * g),
            None => None,
        }
    }
}

/// A command that is legal on a Non-secure Command queue, as far as the
/// command alone can tell (SMMUv3 §4). Unused operand bits are zero when
/// encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// CMD_PREFETCH_CONFIG, §4.2.1: prefetch the STE (and CD) of a stream.
    PrefetchConfig {
        /// StreamID.
        sid: StreamId,
        /// SubstreamID, when one is supplied (SSV).
        ssid: Option<SubstreamId>,
    },
    /// CMD_PREFETCH_ADDR, §4.2.2: prefetch configuration and translations.
    PrefetchAddr {
        /// StreamID.
        sid: StreamId,
        /// SubstreamID, when one is supplied (SSV).
        ssid: Option<SubstreamId>,
        /// Address, 4 KiB aligned (Address\[63:12\]).
        addr: u64,
        /// Size (5 bits): prefetch 2^Size translations.
        size: u8,
    },
    /// CMD_CFGI_STE, §4.3.1: invalidate one STE and the CDs cached through it.
    CfgiSte {
        /// StreamID.
        sid: StreamId,
        /// Leaf: the L1STD walked to reach the STE need not be invalidated.
        leaf: bool,
    },
    /// CMD_CFGI_STE_RANGE, §4.3.2: invalidate 2^(range+1) aligned StreamIDs.
    /// With `range` = [`CFGI_ALL_RANGE`] this is CMD_CFGI_ALL (§4.3.6), see
    /// [`Command::cfgi_all`].
    CfgiSteRange {
        /// StreamID (its low `range`+1 bits are ignored).
        sid: StreamId,
        /// Range (5 bits).
        range: u8,
    },
    /// CMD_CFGI_CD, §4.3.3: invalidate one CD.
    CfgiCd {
        /// StreamID whose STE located the CD.
        sid: StreamId,
        /// Index of the CD in the CD table (0 for a single CD).
        ssid: SubstreamId,
        /// Leaf: the L1CD need not be invalidated.
        leaf: bool,
    },
    /// CMD_CFGI_CD_ALL, §4.3.4: invalidate every CD of a stream.
    CfgiCdAll {
        /// StreamID.
        sid: StreamId,
    },
    /// CMD_CFGI_VMS_PIDM, §4.3.5 (MPAM, SMMUv3.2 and later).
    CfgiVmsPidm {
        /// VMID.
        vmid: u16,
    },
    /// CMD_TLBI_NH_ALL, §4.4.2.1: all stage-1 EL1 entries of a VMID.
    TlbiNhAll {
        /// VMID.
        vmid: u16,
    },
    /// CMD_TLBI_NH_ASID, §4.4.2.2: non-global stage-1 EL1 entries by ASID.
    TlbiNhAsid {
        /// VMID.
        vmid: u16,
        /// ASID.
        asid: u16,
    },
    /// CMD_TLBI_NH_VA, §4.4.2.4: stage-1 EL1 entries by VA and ASID (and
    /// global entries by VA).
    TlbiNhVa {
        /// VMID.
        vmid: u16,
        /// ASID.
        asid: u16,
        /// Address, leaf flag and range.
        range: TlbiRange,
    },
    /// CMD_TLBI_NH_VAA, §4.4.2.3: stage-1 EL1 entries by VA, any ASID.
    TlbiNhVaa {
        /// VMID.
        vmid: u16,
        /// Address, leaf flag and range.
        range: TlbiRange,
    },
    /// CMD_TLBI_EL3_ALL, §4.4.2.5. Secure queue only: decoding it from the
    /// Non-secure queue fails with [`CmdError::SecureOnly`].
    TlbiEl3All,
    /// CMD_TLBI_EL3_VA, §4.4.2.6. Secure queue only.
    TlbiEl3Va {
        /// Address, leaf flag and range.
        range: TlbiRange,
    },
    /// CMD_TLBI_EL2_ALL, §4.4.2.7: every stage-1 EL2 and EL2-E2H entry.
    TlbiEl2All,
    /// CMD_TLBI_EL2_ASID, §4.4.2.10: non-global EL2-E2H entries by ASID.
    TlbiEl2Asid {
        /// ASID.
        asid: u16,
    },
    /// CMD_TLBI_EL2_VA, §4.4.2.8: EL2 entries by VA (and ASID under E2H).
    TlbiEl2Va {
        /// ASID (ignored unless CR2.E2H).
        asid: u16,
        /// Address, leaf flag and range.
        range: TlbiRange,
    },
    /// CMD_TLBI_EL2_VAA, §4.4.2.9: EL2 entries by VA, any ASID.
    TlbiEl2Vaa {
        /// Address, leaf flag and range.
        range: TlbiRange,
    },
    /// CMD_TLBI_S12_VMALL, §4.4.3.2: every stage-1 and stage-2 entry of a VMID.
    TlbiS12Vmall {
        /// VMID.
        vmid: u16,
    },
    /// CMD_TLBI_S2_IPA, §4.4.3.1: stage-2 entries by IPA.
    TlbiS2Ipa {
        /// VMID.
        vmid: u16,
        /// IPA (bits 51:12), leaf flag and range.
        range: TlbiRange,
    },
    /// CMD_TLBI_NSNH_ALL, §4.4.4.1: every Non-secure non-hypervisor entry.
    TlbiNsnhAll,
    /// CMD_ATC_INV, §4.5.1: send an ATS invalidation to an endpoint.
    AtcInv {
        /// StreamID of the endpoint.
        sid: StreamId,
        /// PASID to send, when one is supplied (SSV).
        ssid: Option<SubstreamId>,
        /// Global Invalidate flag (meaningful only with a PASID).
        global: bool,
        /// Address, 4 KiB aligned (Address\[63:12\]).
        addr: u64,
        /// Size (6 bits): the span is 2^size 4 KiB pages (52 = everything).
        size: u8,
    },
    /// CMD_PRI_RESP, §4.5.2: answer a page request group.
    PriResp {
        /// StreamID of the endpoint.
        sid: StreamId,
        /// PASID to send, when one is supplied (SSV).
        ssid: Option<SubstreamId>,
        /// PRGIndex (9 bits).
        grpid: u16,
        /// Response code.
        resp: PriResponse,
    },
    /// CMD_RESUME, §4.7.1: retry or terminate one stalled transaction.
    Resume {
        /// StreamID of the stalled transaction.
        sid: StreamId,
        /// STAG from the stall event record.
        stag: u16,
        /// Retry or terminate.
        action: ResumeAction,
    },
    /// CMD_STALL_TERM, §4.7.2: terminate every stalled transaction of a stream.
    StallTerm {
        /// StreamID.
        sid: StreamId,
    },
    /// CMD_SYNC, §4.7.3: wait for earlier commands, then signal.
    Sync {
        /// Completion signal.
        cs: SyncCompletion,
        /// MSH (2 bits): Shareability of the MSI write.
        msh: u8,
        /// MSIAttr (4 bits): memory type of the MSI write.
        msiattr: u8,
        /// MSIData.
        msi_data: u32,
        /// MSI address, 4-byte aligned (MSIAddress\[51:2\]; 0 = no MSI).
        msi_addr: u64,
    },
}

/// Why a command cannot be executed from the Non-secure Command queue; each
/// is a CERROR_ILL (SMMUv3 §4.1.3, §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum CmdError {
    /// A reserved, IMPLEMENTATION DEFINED, Secure-only or unmodelled opcode.
    #[error("command opcode {0:#04x} is reserved or not available on the Non-secure queue (SMMUv3 §4.1.1)")]
    UnknownOpcode(u8),
    /// SSec == 1 on the Non-secure queue.
    #[error("SSec is set in a command on the Non-secure queue (SMMUv3 §4.1.6)")]
    SecureOnNonSecureQueue,
    /// An EL3 TLB invalidation, valid only on the Secure queue.
    #[error("CMD_TLBI_EL3_* is valid only on the Secure Command queue (SMMUv3 §4.4.2.5, §4.4.2.6)")]
    SecureOnly,
    /// A field holds a reserved value: [`CmdError::SYNC_CS`] (§4.7.3),
    /// [`CmdError::PRI_RESP_RESP`] (§4.5.2) or [`CmdError::TLBI_RANGE`]
    /// (§4.4.1.1).
    #[error("reserved value in {field} (SMMUv3 {})", reserved_section(.field))]
    ReservedValue {
        /// The command and field.
        field: &'static str,
    },
}

impl CmdError {
    /// Field name reported for CMD_SYNC with CS = 0b11.
    pub const SYNC_CS: &'static str = "CMD_SYNC.CS";
    /// Field name reported for CMD_PRI_RESP with Resp = 0b11.
    pub const PRI_RESP_RESP: &'static str = "CMD_PRI_RESP.Resp";
    /// Field name reported for a TLBI with TG != 0 and NUM, SCALE, TTL all 0.
    pub const TLBI_RANGE: &'static str = "CMD_TLBI_*.{TG,TTL,NUM,SCALE}";
}

fn reserved_section(field: &str) -> &'static str {
    match field {
        CmdError::SYNC_CS => "§4.7.3",
        CmdError::PRI_RESP_RESP => "§4.5.2",
        _ => "§4.4.1.1",
    }
}

/// Where one TLBI family keeps the operands of a [`TlbiRange`].
struct RangeFields {
    num: Field,
    scale: Field,
    leaf: Field,
    ttl: Field,
    tg: Field,
    addr: Field,
}

const VA_RANGE: RangeFields = RangeFields {
    num: TlbiCmd::NUM,
    scale: TlbiCmd::SCALE,
    leaf: TlbiCmd::LEAF,
    ttl: TlbiCmd::TTL,
    tg: TlbiCmd::TG,
    addr: TlbiCmd::ADDR,
};

const IPA_RANGE: RangeFields = RangeFields {
    num: TlbiS2IpaCmd::NUM,
    scale: TlbiS2IpaCmd::SCALE,
    leaf: TlbiS2IpaCmd::LEAF,
    ttl: TlbiS2IpaCmd::TTL,
    tg: TlbiS2IpaCmd::TG,
    addr: TlbiS2IpaCmd::ADDR,
};

impl RangeFields {
    fn decode(&self, w: &[u64; 2]) -> Result<TlbiRange, CmdError> {
        let r = TlbiRange {
            addr: self.addr.get_in_place(w),
            leaf: self.leaf.get(w) != 0,
            ttl: self.ttl.get(w) as u8,
            tg: self.tg.get(w) as u8,
            num: self.num.get(w) as u8,
            scale: self.scale.get(w) as u8,
        };
        if r.is_reserved() {
            return Err(CmdError::ReservedValue { field: CmdError::TLBI_RANGE });
        }
        Ok(r)
    }

    fn encode(&self, r: &TlbiRange, w: &mut [u64; 2]) {
        self.addr.set_in_place(w, r.addr);
        self.leaf.set(w, r.leaf as u64);
        self.ttl.set(w, r.ttl as u64);
        self.tg.set(w, r.tg as u64);
        self.num.set(w, r.num as u64);
        self.scale.set(w, r.scale as u64);
    }
}

fn put_ssid(w: &mut [u64; 2], ssv: Field, field: Field, ssid: Option<SubstreamId>) {
    if let Some(s) = ssid {
        ssv.set(w, 1);
        field.set(w, s.raw() as u64);
    }
}

impl Command {
    /// CMD_CFGI_ALL (§4.3.6): CMD_CFGI_STE_RANGE with Range = 31.
    pub const fn cfgi_all() -> Self {
        Command::CfgiSteRange { sid: StreamId(0), range: CFGI_ALL_RANGE }
    }

    /// Whether this is CMD_CFGI_ALL (§4.3.6).
    pub const fn is_cfgi_all(&self) -> bool {
        matches!(self, Command::CfgiSteRange { range, .. } if *range & 0x1F == CFGI_ALL_RANGE)
    }

    /// The opcode (see [`opcode`]).
    pub const fn opcode(&self) -> u8 {
        match self {
            Command::PrefetchConfig { .. } => opcode::PREFETCH_CONFIG,
            Command::PrefetchAddr { .. } => opcode::PREFETCH_ADDR,
            Command::CfgiSte { .. } => opcode::CFGI_STE,
            Command::CfgiSteRange { .. } => opcode::CFGI_STE_RANGE,
            Command::CfgiCd { .. } => opcode::CFGI_CD,
            Command::CfgiCdAll { .. } => opcode::CFGI_CD_ALL,
            Command::CfgiVmsPidm { .. } => opcode::CFGI_VMS_PIDM,
            Command::TlbiNhAll { .. } => opcode::TLBI_NH_ALL,
            Command::TlbiNhAsid { .. } => opcode::TLBI_NH_ASID,
            Command::TlbiNhVa { .. } => opcode::TLBI_NH_VA,
            Command::TlbiNhVaa { .. } => opcode::TLBI_NH_VAA,
            Command::TlbiEl3All => opcode::TLBI_EL3_ALL,
            Command::TlbiEl3Va { .. } => opcode::TLBI_EL3_VA,
            Command::TlbiEl2All => opcode::TLBI_EL2_ALL,
            Command::TlbiEl2Asid { .. } => opcode::TLBI_EL2_ASID,
            Command::TlbiEl2Va { .. } => opcode::TLBI_EL2_VA,
            Command::TlbiEl2Vaa { .. } => opcode::TLBI_EL2_VAA,
            Command::TlbiS12Vmall { .. } => opcode::TLBI_S12_VMALL,
            Command::TlbiS2Ipa { .. } => opcode::TLBI_S2_IPA,
            Command::TlbiNsnhAll => opcode::TLBI_NSNH_ALL,
            Command::AtcInv { .. } => opcode::ATC_INV,
            Command::PriResp { .. } => opcode::PRI_RESP,
            Command::Resume { .. } => opcode::RESUME,
            Command::StallTerm { .. } => opcode::STALL_TERM,
            Command::Sync { .. } => opcode::CMD_SYNC,
        }
    }

    /// Decodes a command fetched from the **Non-secure** Command queue.
    /// Any two words either decode or give the reason for CERROR_ILL; nothing
    /// panics. RES0 bits are ignored (see [`reserved_bits`]); so is the
    /// SubstreamID when SSV is clear, and Ab when Ac retries.
    ///
    /// # Errors
    /// See [`CmdError`].
    pub fn decode(words: [u64; 2]) -> Result<Self, CmdError> {
        use self::opcode as op;
        use self::{
            AtcInvCmd as A, CfgiCmd as C, CfgiSteRangeCmd as R, CfgiVmsPidmCmd as V, PrefetchCmd as P,
            PriRespCmd as Pr, ResumeCmd as Rs, SyncCmd as Y, TlbiCmd as T, TlbiS2IpaCmd as S,
        };
        let w = &words;
        let code = CmdRaw::OPCODE.get(w) as u8;
        let table = fields(code).ok_or(CmdError::UnknownOpcode(code))?;
        if matches!(code, op::TLBI_EL3_ALL | op::TLBI_EL3_VA) {
            return Err(CmdError::SecureOnly);
        }
        if table.iter().any(|f| f.name == "SSEC" && f.get(w) != 0) {
            return Err(CmdError::SecureOnNonSecureQueue);
        }
        let get = |f: Field| f.get(w);
        let flag = |f: Field| f.get(w) != 0;
        let sid = |f: Field| StreamId(f.get(w) as u32);
        let ssid = |f: Field| SubstreamId::try_new(f.get(w) as u32).unwrap_or_default();
        let opt_ssid = |ssv: Field, f: Field| flag(ssv).then(|| ssid(f));
        Ok(match code {
            op::PREFETCH_CONFIG => Command::PrefetchConfig { sid: sid(P::SID), ssid: opt_ssid(P::SSV, P::SSID) },
            op::PREFETCH_ADDR => Command::PrefetchAddr {
                sid: sid(P::SID),
                ssid: opt_ssid(P::SSV, P::SSID),
                addr: P::ADDR.get_in_place(w),
                size: get(P::SIZE_LOG2) as u8,
            },
            op::CFGI_STE => Command::CfgiSte { sid: sid(C::SID), leaf: flag(C::LEAF) },
            op::CFGI_STE_RANGE => Command::CfgiSteRange { sid: sid(R::SID), range: get(R::RANGE) as u8 },
            op::CFGI_CD => Command::CfgiCd { sid: sid(C::SID), ssid: ssid(C::SSID), leaf: flag(C::LEAF) },
            op::CFGI_CD_ALL => Command::CfgiCdAll { sid: sid(C::SID) },
            op::CFGI_VMS_PIDM => Command::CfgiVmsPidm { vmid: get(V::VMID) as u16 },
            op::TLBI_NH_ALL => Command::TlbiNhAll { vmid: get(T::VMID) as u16 },
            op::TLBI_NH_ASID => Command::TlbiNhAsid { vmid: get(T::VMID) as u16, asid: get(T::ASID) as u16 },
            op::TLBI_NH_VA => {
                Command::TlbiNhVa { vmid: get(T::VMID) as u16, asid: get(T::ASID) as u16, range: VA_RANGE.decode(w)? }
            }
            op::TLBI_NH_VAA => Command::TlbiNhVaa { vmid: get(T::VMID) as u16, range: VA_RANGE.decode(w)? },
            op::TLBI_EL2_ALL => Command::TlbiEl2All,
            op::TLBI_EL2_ASID => Command::TlbiEl2Asid { asid: get(T::ASID) as u16 },
            op::TLBI_EL2_VA => Command::TlbiEl2Va { asid: get(T::ASID) as u16, range: VA_RANGE.decode(w)? },
            op::TLBI_EL2_VAA => Command::TlbiEl2Vaa { range: VA_RANGE.decode(w)? },
            op::TLBI_S12_VMALL => Command::TlbiS12Vmall { vmid: get(T::VMID) as u16 },
            op::TLBI_S2_IPA => Command::TlbiS2Ipa { vmid: get(S::VMID) as u16, range: IPA_RANGE.decode(w)? },
            op::TLBI_NSNH_ALL => Command::TlbiNsnhAll,
            op::ATC_INV => Command::AtcInv {
                sid: sid(A::SID),
                ssid: opt_ssid(A::SSV, A::SSID),
                global: flag(A::GLOBAL),
                addr: A::ADDR.get_in_place(w),
                size: get(A::SIZE_LOG2) as u8,
            },
            op::PRI_RESP => Command::PriResp {
                sid: sid(Pr::SID),
                ssid: opt_ssid(Pr::SSV, Pr::SSID),
                grpid: get(Pr::PRGINDEX) as u16,
                resp: PriResponse::from_bits(get(Pr::RESP))
                    .ok_or(CmdError::ReservedValue { field: CmdError::PRI_RESP_RESP })?,
            },
            op::RESUME => Command::Resume {
                sid: sid(Rs::SID),
                stag: get(Rs::STAG) as u16,
                action: if flag(Rs::AC) {
                    ResumeAction::Retry
                } else {
                    ResumeAction::Terminate { abort: flag(Rs::AB) }
                },
            },
            op::STALL_TERM => Command::StallTerm { sid: sid(Rs::SID) },
            op::CMD_SYNC => Command::Sync {
                cs: SyncCompletion::from_bits(get(Y::CS))
                    .ok_or(CmdError::ReservedValue { field: CmdError::SYNC_CS })?,
                msh: get(Y::MSH) as u8,
                msiattr: get(Y::MSIATTR) as u8,
                msi_data: get(Y::MSIDATA) as u32,
                msi_addr: Y::MSIADDR.get_in_place(w),
            },
            // `fields` knows no other opcode, and the EL3 ones returned above.
            _ => return Err(CmdError::UnknownOpcode(code)),
        })
    }

    /// Encodes the command. Every bit no operand sets is zero; operands are
    /// truncated to their fields (addresses lose the bits below their
    /// alignment and above their width).
    pub fn encode(&self) -> [u64; 2] {
        use self::{
            AtcInvCmd as A, CfgiCmd as C, CfgiSteRangeCmd as R, CfgiVmsPidmCmd as V, PrefetchCmd as P,
            PriRespCmd as Pr, ResumeCmd as Rs, SyncCmd as Y, TlbiCmd as T, TlbiS2IpaCmd as S,
        };
        let mut w = [0u64; 2];
        CmdRaw::OPCODE.set(&mut w, self.opcode() as u64);
        match *self {
            Command::PrefetchConfig { sid, ssid } => {
                P::SID.set(&mut w, sid.0 as u64);
                put_ssid(&mut w, P::SSV, P::SSID, ssid);
            }
            Command::PrefetchAddr { sid, ssid, addr, size } => {
                P::SID.set(&mut w, sid.0 as u64);
                put_ssid(&mut w, P::SSV, P::SSID, ssid);
                P::ADDR.set_in_place(&mut w, addr);
                P::SIZE_LOG2.set(&mut w, size as u64);
            }
            Command::CfgiSte { sid, leaf } => {
                C::SID.set(&mut w, sid.0 as u64);
                C::LEAF.set(&mut w, leaf as u64);
            }
            Command::CfgiSteRange { sid, range } => {
                R::SID.set(&mut w, sid.0 as u64);
                R::RANGE.set(&mut w, range as u64);
            }
            Command::CfgiCd { sid, ssid, leaf } => {
                C::SID.set(&mut w, sid.0 as u64);
                C::SSID.set(&mut w, ssid.raw() as u64);
                C::LEAF.set(&mut w, leaf as u64);
            }
            Command::CfgiCdAll { sid } => C::SID.set(&mut w, sid.0 as u64),
            Command::CfgiVmsPidm { vmid } => V::VMID.set(&mut w, vmid as u64),
            Command::TlbiNhAll { vmid } | Command::TlbiS12Vmall { vmid } => T::VMID.set(&mut w, vmid as u64),
            Command::TlbiNhAsid { vmid, asid } => {
                T::VMID.set(&mut w, vmid as u64);
                T::ASID.set(&mut w, asid as u64);
            }
            Command::TlbiNhVa { vmid, asid, range } => {
                T::VMID.set(&mut w, vmid as u64);
                T::ASID.set(&mut w, asid as u64);
                VA_RANGE.encode(&range, &mut w);
            }
            Command::TlbiNhVaa { vmid, range } => {
                T::VMID.set(&mut w, vmid as u64);
                VA_RANGE.encode(&range, &mut w);
            }
            Command::TlbiEl3All | Command::TlbiEl2All | Command::TlbiNsnhAll => {}
            Command::TlbiEl3Va { range } | Command::TlbiEl2Vaa { range } => VA_RANGE.encode(&range, &mut w),
            Command::TlbiEl2Asid { asid } => T::ASID.set(&mut w, asid as u64),
            Command::TlbiEl2Va { asid, range } => {
                T::ASID.set(&mut w, asid as u64);
                VA_RANGE.encode(&range, &mut w);
            }
            Command::TlbiS2Ipa { vmid, range } => {
                S::VMID.set(&mut w, vmid as u64);
                IPA_RANGE.encode(&range, &mut w);
            }
            Command::AtcInv { sid, ssid, global, addr, size } => {
                A::SID.set(&mut w, sid.0 as u64);
                put_ssid(&mut w, A::SSV, A::SSID, ssid);
                A::GLOBAL.set(&mut w, global as u64);
                A::ADDR.set_in_place(&mut w, addr);
                A::SIZE_LOG2.set(&mut w, size as u64);
            }
            Command::PriResp { sid, ssid, grpid, resp } => {
                Pr::SID.set(&mut w, sid.0 as u64);
                put_ssid(&mut w, Pr::SSV, Pr::SSID, ssid);
                Pr::PRGINDEX.set(&mut w, grpid as u64);
                Pr::RESP.set(&mut w, resp.bits());
            }
            Command::Resume { sid, stag, action } => {
                Rs::SID.set(&mut w, sid.0 as u64);
                Rs::STAG.set(&mut w, stag as u64);
                match action {
                    ResumeAction::Retry => Rs::AC.set(&mut w, 1),
                    ResumeAction::Terminate { abort } => Rs::AB.set(&mut w, abort as u64),
                }
            }
            Command::StallTerm { sid } => Rs::SID.set(&mut w, sid.0 as u64),
            Command::Sync { cs, msh, msiattr, msi_data, msi_addr } => {
                Y::CS.set(&mut w, cs.bits());
                Y::MSH.set(&mut w, msh as u64);
                Y::MSIATTR.set(&mut w, msiattr as u64);
                Y::MSIDATA.set(&mut w, msi_data as u64);
                Y::MSIADDR.set_in_place(&mut w, msi_addr);
            }
        }
        w
    }

    /// The encoded command as a raw view.
    pub fn to_raw(&self) -> CmdRaw {
        CmdRaw(self.encode())
    }
}

/// Proptest strategies for [`Command`] (tests only).
#[cfg(test)]
pub mod arb {
    use super::*;
    use proptest::prelude::*;

    /// Bits 63:12 (a 4 KiB aligned VA).
    pub const VA_MASK: u64 = !0xFFF;
    /// Bits 51:12 (a 4 KiB aligned IPA or PA).
    pub const IPA_MASK: u64 = 0x000F_FFFF_FFFF_F000;

    /// Any StreamID.
    pub fn stream_id() -> impl Strategy<Value = StreamId> {
        any::<u32>().prop_map(StreamId)
    }

    /// Any SubstreamID (20 bits).
    pub fn substream_id() -> impl Strategy<Value = SubstreamId> {
        (0u32..1 << 20).prop_map(|v| SubstreamId::try_new(v).unwrap_or_default())
    }

    /// An optional SubstreamID.
    pub fn opt_substream_id() -> impl Strategy<Value = Option<SubstreamId>> {
        proptest::option::of(substream_id())
    }

    /// A non-reserved [`TlbiRange`] whose address fits `mask`.
    pub fn tlbi_range(mask: u64) -> impl Strategy<Value = TlbiRange> {
        (any::<u64>(), any::<bool>(), 0u8..4, 0u8..4, 0u8..32, 0u8..32)
            .prop_map(move |(a, leaf, ttl, tg, num, scale)| TlbiRange { addr: a & mask, leaf, ttl, tg, num, scale })
            .prop_filter("reserved TG/TTL/NUM/SCALE combination", |r| !r.is_reserved())
    }

    /// Every command legal on the Non-secure queue, operands in range and
    /// canonical (what `decode` returns).
    pub fn ns_command() -> impl Strategy<Value = Command> {
        let va = || tlbi_range(VA_MASK);
        prop_oneof![
            (stream_id(), opt_substream_id()).prop_map(|(sid, ssid)| Command::PrefetchConfig { sid, ssid }),
            (stream_id(), opt_substream_id(), any::<u64>(), 0u8..32)
                .prop_map(|(sid, ssid, a, size)| Command::PrefetchAddr { sid, ssid, addr: a & VA_MASK, size }),
            (stream_id(), any::<bool>()).prop_map(|(sid, leaf)| Command::CfgiSte { sid, leaf }),
            (stream_id(), 0u8..32).prop_map(|(sid, range)| Command::CfgiSteRange { sid, range }),
            (stream_id(), substream_id(), any::<bool>()).prop_map(|(sid, ssid, leaf)| Command::CfgiCd {
                sid,
                ssid,
                leaf
            }),
            stream_id().prop_map(|sid| Command::CfgiCdAll { sid }),
            any::<u16>().prop_map(|vmid| Command::CfgiVmsPidm { vmid }),
            any::<u16>().prop_map(|vmid| Command::TlbiNhAll { vmid }),
            (any::<u16>(), any::<u16>()).prop_map(|(vmid, asid)| Command::TlbiNhAsid { vmid, asid }),
            (any::<u16>(), any::<u16>(), va()).prop_map(|(vmid, asid, range)| Command::TlbiNhVa { vmid, asid, range }),
            (any::<u16>(), va()).prop_map(|(vmid, range)| Command::TlbiNhVaa { vmid, range }),
            Just(Command::TlbiEl2All),
            any::<u16>().prop_map(|asid| Command::TlbiEl2Asid { asid }),
            (any::<u16>(), va()).prop_map(|(asid, range)| Command::TlbiEl2Va { asid, range }),
            va().prop_map(|range| Command::TlbiEl2Vaa { range }),
            any::<u16>().prop_map(|vmid| Command::TlbiS12Vmall { vmid }),
            (any::<u16>(), tlbi_range(IPA_MASK)).prop_map(|(vmid, range)| Command::TlbiS2Ipa { vmid, range }),
            Just(Command::TlbiNsnhAll),
            (stream_id(), opt_substream_id(), any::<bool>(), any::<u64>(), 0u8..64).prop_map(
                |(sid, ssid, global, a, size)| Command::AtcInv { sid, ssid, global, addr: a & VA_MASK, size }
            ),
            (
                stream_id(),
                opt_substream_id(),
                0u16..512,
                prop_oneof![
                    Just(PriResponse::ResponseFailure),
                    Just(PriResponse::InvalidRequest),
                    Just(PriResponse::Success)
                ]
            )
                .prop_map(|(sid, ssid, grpid, resp)| Command::PriResp { sid, ssid, grpid, resp }),
            (stream_id(), any::<u16>(), prop_oneof![Just(None), any::<bool>().prop_map(Some)]).prop_map(
                |(sid, stag, a)| Command::Resume {
                    sid,
                    stag,
                    action: a.map_or(ResumeAction::Retry, |abort| ResumeAction::Terminate { abort })
                }
            ),
            stream_id().prop_map(|sid| Command::StallTerm { sid }),
            (
                prop_oneof![Just(SyncCompletion::SigNone), Just(SyncCompletion::SigIrq), Just(SyncCompletion::SigSev)],
                0u8..4,
                0u8..16,
                any::<u32>(),
                any::<u64>()
            )
                .prop_map(|(cs, msh, msiattr, msi_data, a)| Command::Sync {
                    cs,
                    msh,
                    msiattr,
                    msi_data,
                    msi_addr: a & 0x000F_FFFF_FFFF_FFFC
                }),
        ]
    }

    /// Every command, including the Secure-only EL3 invalidations.
    pub fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            8 => ns_command(),
            1 => Just(Command::TlbiEl3All),
            1 => tlbi_range(VA_MASK).prop_map(|range| Command::TlbiEl3Va { range }),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::check_table;
    use proptest::prelude::*;

    fn sid(v: u32) -> StreamId {
        StreamId(v)
    }

    fn ssid(v: u32) -> SubstreamId {
        SubstreamId::try_new(v).unwrap()
    }

    fn golden(c: Command, words: [u64; 2]) {
        assert_eq!(c.encode(), words, "{c:?}");
        assert_eq!(Command::decode(words), Ok(c));
        assert_eq!(reserved_bits(words), Some([0, 0]));
    }

    #[test]
    fn field_tables_are_well_formed() {
        for t in [
            CmdRaw::FIELDS,
            PrefetchCmd::FIELDS,
            CfgiCmd::FIELDS,
            CfgiSteRangeCmd::FIELDS,
            CfgiVmsPidmCmd::FIELDS,
            TlbiCmd::FIELDS,
            TlbiS2IpaCmd::FIELDS,
            AtcInvCmd::FIELDS,
            PriRespCmd::FIELDS,
            ResumeCmd::FIELDS,
            SyncCmd::FIELDS,
        ] {
            check_table(2, t).unwrap();
        }
        for op in 0..=255u8 {
            if let Some(t) = fields(op) {
                check_table(2, t).unwrap();
                assert_eq!(t[0], CmdRaw::OPCODE, "opcode {op:#x} table starts with OPCODE");
            }
        }
    }

    #[test]
    fn opcode_table_matches_spec_list() {
        use opcode::*;
        let known = [
            (PREFETCH_CONFIG, 0x01),
            (PREFETCH_ADDR, 0x02),
            (CFGI_STE, 0x03),
            (CFGI_STE_RANGE, 0x04),
            (CFGI_ALL, 0x04),
            (CFGI_CD, 0x05),
            (CFGI_CD_ALL, 0x06),
            (CFGI_VMS_PIDM, 0x07),
            (TLBI_NH_ALL, 0x10),
            (TLBI_NH_ASID, 0x11),
            (TLBI_NH_VA, 0x12),
            (TLBI_NH_VAA, 0x13),
            (TLBI_EL3_ALL, 0x18),
            (TLBI_EL3_VA, 0x1A),
            (TLBI_EL2_ALL, 0x20),
            (TLBI_EL2_ASID, 0x21),
            (TLBI_EL2_VA, 0x22),
            (TLBI_EL2_VAA, 0x23),
            (TLBI_S12_VMALL, 0x28),
            (TLBI_S2_IPA, 0x2A),
            (TLBI_NSNH_ALL, 0x30),
            (ATC_INV, 0x40),
            (PRI_RESP, 0x41),
            (RESUME, 0x44),
            (STALL_TERM, 0x45),
            (CMD_SYNC, 0x46),
        ];
        for (c, v) in known {
            assert_eq!(c, v);
            assert!(fields(c).is_some(), "{c:#x}");
        }
        let count = (0..=255u8).filter(|&op| fields(op).is_some()).count();
        assert_eq!(count, known.len() - 1, "CFGI_ALL shares its opcode");
    }

    /// Golden words, §4.3.1, cross-checked with smmuv3_oracle.cmd_cfgi_ste(0x68):
    /// opcode 0x03, StreamID 63:32, Leaf bit 64.
    #[test]
    fn cfgi_ste_golden() {
        let c = Command::CfgiSte { sid: sid(0x68), leaf: true };
        golden(c, [0x0000_0068_0000_0003, 1]);
        let bytes = [0x03, 0, 0, 0, 0x68, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(c.to_raw().to_bytes(), bytes);
        assert_eq!(CmdRaw::from_bytes(&bytes).opcode(), opcode::CFGI_STE);
    }

    /// Golden words, §4.3.6, oracle cmd_cfgi_all(): opcode 0x04, Range 31 at 68:64.
    #[test]
    fn cfgi_all_golden() {
        golden(Command::cfgi_all(), [0x04, 0x1F]);
        assert!(Command::cfgi_all().is_cfgi_all());
        assert!(!Command::CfgiSteRange { sid: sid(0), range: 5 }.is_cfgi_all());
    }

    /// Golden words, §4.3.3, oracle cmd_cfgi_cd(0x68, ssid=0x12345, leaf=1):
    /// SubstreamID 31:12.
    #[test]
    fn cfgi_cd_golden() {
        golden(Command::CfgiCd { sid: sid(0x68), ssid: ssid(0x12345), leaf: true }, [0x0000_0068_1234_5005, 1]);
    }

    /// Golden words, §4.4.2.4 and §4.4.1.1, oracle cmd_tlbi_nh_va(asid=0xbeef,
    /// vmid=0x1234, addr=0x7fff_1234_5000, leaf=1, ttl=3, tg=1, num=7,
    /// scale=2): NUM 16:12, SCALE 24:20, VMID 47:32, ASID 63:48; Leaf 64,
    /// TTL 73:72, TG 75:74, Address 127:76.
    #[test]
    fn tlbi_nh_va_range_golden() {
        let range = TlbiRange { addr: 0x7FFF_1234_5000, leaf: true, ttl: 3, tg: 1, num: 7, scale: 2 };
        golden(Command::TlbiNhVa { vmid: 0x1234, asid: 0xBEEF, range }, [0xBEEF_1234_0020_7012, 0x0000_7FFF_1234_5701]);
        assert_eq!(range.span(), Some(8 * 4 * 4096));
    }

    /// Golden words, §4.4.2.3, oracle cmd_tlbi_nh_va(..., vaa=True): no ASID.
    #[test]
    fn tlbi_nh_vaa_golden() {
        golden(
            Command::TlbiNhVaa { vmid: 0x1234, range: TlbiRange::page(0xFFFF_8000_0000_0000, true) },
            [0x0000_1234_0000_0013, 0xFFFF_8000_0000_0001],
        );
    }

    /// Golden words, §4.4.3.1, oracle cmd_tlbi_s2_ipa(0x42, 0xf_ffff_ffff_f000,
    /// leaf=0, ttl=2, tg=3, num=31, scale=31): the IPA field stops at bit 115.
    #[test]
    fn tlbi_s2_ipa_golden() {
        let range = TlbiRange { addr: 0xF_FFFF_FFFF_F000, leaf: false, ttl: 2, tg: 3, num: 31, scale: 31 };
        let c = Command::TlbiS2Ipa { vmid: 0x42, range };
        golden(c, [0x0000_0042_01F1_F02A, 0x000F_FFFF_FFFF_FE00]);
        // IPA bits above 51 are not encodable.
        let wide = Command::TlbiS2Ipa { vmid: 0x42, range: TlbiRange { addr: 0xFFF0_0000_0000_0000, ..range } };
        assert_eq!(wide.encode()[1], 0xE00);
    }

    /// Other oracle encoders: NH_ALL(9), NH_ASID(7, vmid 3), S12_VMALL(5),
    /// NSNH_ALL, CFGI_CD_ALL(0x68), SYNC(SIG_NONE).
    #[test]
    fn small_commands_match_oracle() {
        golden(Command::TlbiNhAll { vmid: 9 }, [0x0000_0009_0000_0010, 0]);
        golden(Command::TlbiNhAsid { vmid: 3, asid: 7 }, [0x0007_0003_0000_0011, 0]);
        golden(Command::TlbiS12Vmall { vmid: 5 }, [0x0000_0005_0000_0028, 0]);
        golden(Command::TlbiNsnhAll, [0x30, 0]);
        golden(Command::CfgiCdAll { sid: sid(0x68) }, [0x0000_0068_0000_0006, 0]);
        golden(Command::TlbiEl2Asid { asid: 0xABCD }, [0xABCD_0000_0000_0021, 0]);
    }

    /// Golden words, §4.5.1: Global bit 9, SSV bit 11, SubstreamID 31:12,
    /// StreamID 63:32; Size 69:64, Address 127:76.
    #[test]
    fn atc_inv_golden() {
        golden(
            Command::AtcInv { sid: sid(0x68), ssid: Some(ssid(0x42)), global: true, addr: 0x1234_5000, size: 3 },
            [0x0000_0068_0004_2A40, 0x1234_5003],
        );
        golden(
            Command::AtcInv { sid: sid(0x68), ssid: None, global: false, addr: 0, size: 52 },
            [0x0000_0068_0000_0040, 52],
        );
    }

    /// Golden words, §4.5.2: SSV 11, SubstreamID 31:12, StreamID 63:32;
    /// PRGIndex 72:64, Resp 77:76 (Success = 0b10).
    #[test]
    fn pri_resp_golden() {
        golden(
            Command::PriResp { sid: sid(0x100), ssid: Some(ssid(5)), grpid: 0x1FF, resp: PriResponse::Success },
            [0x0000_0100_0000_5841, 0x21FF],
        );
    }

    /// Golden words, §4.7.1: SSec 10, Ac 12, Ab 13, StreamID 63:32, STAG 79:64.
    #[test]
    fn resume_golden() {
        let retry = Command::Resume { sid: sid(0x68), stag: 0xABCD, action: ResumeAction::Retry };
        golden(retry, [0x0000_0068_0000_1044, 0xABCD]);
        let abort = Command::Resume { sid: sid(0x68), stag: 1, action: ResumeAction::Terminate { abort: true } };
        golden(abort, [0x0000_0068_0000_2044, 1]);
        // Ab is ignored when Ac retries.
        assert_eq!(Command::decode([0x0000_0068_0000_3044, 0xABCD]), Ok(retry));
        golden(Command::StallTerm { sid: sid(7) }, [0x0000_0007_0000_0045, 0]);
    }

    /// Golden words, §4.7.3, oracle cmd_sync(): CS 13:12, MSH 23:22, MSIAttr
    /// 27:24, MSIData 63:32, MSIAddress[51:2] at 115:66.
    #[test]
    fn cmd_sync_golden() {
        let none = Command::Sync { cs: SyncCompletion::SigNone, msh: 0, msiattr: 0, msi_data: 0, msi_addr: 0 };
        golden(none, [0x46, 0]);
        let irq = Command::Sync {
            cs: SyncCompletion::SigIrq,
            msh: 3,
            msiattr: 0xF,
            msi_data: 0xDEAD_BEEF,
            msi_addr: 0x0008_0900_0044,
        };
        golden(irq, [0xDEAD_BEEF_0FC0_1046, 0x0008_0900_0044]);
        let b = irq.to_raw().to_bytes();
        assert_eq!(b[..8], [0x46, 0x10, 0xC0, 0x0F, 0xEF, 0xBE, 0xAD, 0xDE]);
    }

    #[test]
    fn reserved_opcodes_are_unknown() {
        for op in [0x00, 0x08, 0x0A, 0x14, 0x19, 0x2F, 0x47, 0x50, 0x5A, 0x60, 0x70, 0x80, 0xFF] {
            assert_eq!(Command::decode([op as u64, 0]), Err(CmdError::UnknownOpcode(op)));
            assert_eq!(reserved_bits([op as u64, 0]), None);
        }
    }

    /// §4.1.6: SSec = 1 on the Non-secure queue is illegal wherever SSec exists.
    #[test]
    fn ssec_is_rejected_on_commands_that_have_it() {
        use opcode::*;
        for op in [
            PREFETCH_CONFIG,
            PREFETCH_ADDR,
            CFGI_STE,
            CFGI_STE_RANGE,
            CFGI_CD,
            CFGI_CD_ALL,
            CFGI_VMS_PIDM,
            RESUME,
            STALL_TERM,
        ] {
            assert_eq!(Command::decode([op as u64 | 1 << 10, 0]), Err(CmdError::SecureOnNonSecureQueue), "{op:#x}");
        }
        // Where there is no SSec, bit 10 is RES0: ignored, but reported.
        let w = [opcode::TLBI_NSNH_ALL as u64 | 1 << 10, 0];
        assert_eq!(Command::decode(w), Ok(Command::TlbiNsnhAll));
        assert_eq!(reserved_bits(w), Some([1 << 10, 0]));
    }

    /// §4.4.2.5, §4.4.2.6: EL3 invalidations are Secure-queue only.
    #[test]
    fn el3_invalidations_are_secure_only() {
        assert_eq!(Command::decode(Command::TlbiEl3All.encode()), Err(CmdError::SecureOnly));
        let va = Command::TlbiEl3Va { range: TlbiRange::page(0x4000, false) };
        assert_eq!(Command::decode(va.encode()), Err(CmdError::SecureOnly));
        assert_eq!(va.encode(), [0x1A, 0x4000]);
    }

    #[test]
    fn reserved_field_values_are_rejected() {
        assert_eq!(Command::decode([0x3046, 0]), Err(CmdError::ReservedValue { field: CmdError::SYNC_CS }));
        assert_eq!(Command::decode([0x41, 3 << 12]), Err(CmdError::ReservedValue { field: CmdError::PRI_RESP_RESP }));
        // TG = 4 KiB with NUM = SCALE = TTL = 0.
        for op in
            [opcode::TLBI_NH_VA, opcode::TLBI_NH_VAA, opcode::TLBI_EL2_VA, opcode::TLBI_EL2_VAA, opcode::TLBI_S2_IPA]
        {
            assert_eq!(
                Command::decode([op as u64, 1 << 10]),
                Err(CmdError::ReservedValue { field: CmdError::TLBI_RANGE }),
                "{op:#x}"
            );
            // Any one of them non-zero makes it legal.
            assert!(Command::decode([op as u64, 1 << 10 | 1 << 8]).is_ok());
            assert!(Command::decode([op as u64 | 1 << 12, 1 << 10]).is_ok());
        }
        // Every Range value is legal (§4.3.2).
        for r in 0..32u64 {
            assert!(Command::decode([opcode::CFGI_STE_RANGE as u64, r]).is_ok());
        }
    }

    #[test]
    fn errors_cite_the_spec() {
        assert!(CmdError::UnknownOpcode(0).to_string().contains("§4.1.1"));
        assert!(CmdError::SecureOnNonSecureQueue.to_string().contains("§4.1.6"));
        assert!(CmdError::SecureOnly.to_string().contains("§4.4.2.5"));
        assert!(CmdError::ReservedValue { field: CmdError::SYNC_CS }.to_string().contains("§4.7.3"));
        assert!(CmdError::ReservedValue { field: CmdError::PRI_RESP_RESP }.to_string().contains("§4.5.2"));
        assert!(CmdError::ReservedValue { field: CmdError::TLBI_RANGE }.to_string().contains("§4.4.1.1"));
    }

    /// §4.1.5: RES0 bits are ignored by decode and reported by reserved_bits.
    #[test]
    fn res0_bits_are_ignored_and_reported() {
        let w = [0x0000_0068_0010_0003, 1 | 1 << 40];
        assert_eq!(Command::decode(w), Ok(Command::CfgiSte { sid: sid(0x68), leaf: true }));
        assert_eq!(reserved_bits(w), Some([1 << 20, 1 << 40]));
        // SubstreamID without SSV is ignored.
        let w = [0x0000_0068_0004_2040, 0];
        assert!(matches!(Command::decode(w), Ok(Command::AtcInv { ssid: None, .. })));
    }

    #[test]
    fn range_helpers() {
        let r = TlbiRange { addr: 0, leaf: false, ttl: 0, tg: 3, num: 31, scale: 31 };
        assert_eq!(r.granule(), Some(1 << 16));
        assert_eq!(r.span(), Some(32u64 << 31 << 16));
        assert_eq!(TlbiRange::page(0x1000, true).span(), None);
        assert!(!TlbiRange::page(0x1000, true).is_range());
        assert!(!TlbiRange::page(0x1000, true).has_res0_operands());
        assert!(TlbiRange { ttl: 1, ..TlbiRange::page(0, false) }.has_res0_operands());
        assert!(!r.has_res0_operands());
    }

    proptest! {
        #[test]
        fn legal_commands_round_trip(c in arb::ns_command()) {
            let w = c.encode();
            prop_assert_eq!(Command::decode(w), Ok(c));
            prop_assert_eq!(reserved_bits(w), Some([0, 0]));
            prop_assert_eq!(CmdRaw(w).opcode(), c.opcode());
        }

        #[test]
        fn every_command_encodes_inside_its_table(c in arb::command()) {
            let w = c.encode();
            prop_assert_eq!(reserved_bits(w), Some([0, 0]));
            if matches!(c, Command::TlbiEl3All | Command::TlbiEl3Va { .. }) {
                prop_assert_eq!(Command::decode(w), Err(CmdError::SecureOnly));
            }
        }

        #[test]
        fn any_words_decode_without_panic(w0: u64, w1: u64) {
            if let Ok(c) = Command::decode([w0, w1]) {
                let again = c.encode();
                prop_assert_eq!(Command::decode(again), Ok(c));
                prop_assert_eq!(again[0] & 0xFF, w0 & 0xFF);
            }
            let _ = reserved_bits([w0, w1]);
        }

        #[test]
        fn known_opcodes_with_any_operands_decode_without_panic(op in prop::sample::select(vec![
            0x01u8, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11, 0x12, 0x13, 0x18, 0x1A, 0x20, 0x21, 0x22, 0x23,
            0x28, 0x2A, 0x30, 0x40, 0x41, 0x44, 0x45, 0x46,
        ]), w0: u64, w1: u64) {
            let w = [(w0 & !0xFF) | op as u64, w1];
            match Command::decode(w) {
                Ok(c) => {
                    prop_assert_eq!(c.opcode(), op);
                    prop_assert_eq!(Command::decode(c.encode()), Ok(c));
                }
                Err(e) => prop_assert!(!matches!(e, CmdError::UnknownOpcode(_))),
            }
        }
    }
}
