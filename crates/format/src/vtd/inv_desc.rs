//! Invalidation descriptors, VT-d §6.5.2.
//!
//! The invalidation queue holds 128-bit descriptors (IQA.DW=0) or 256-bit
//! ones (IQA.DW=1). The type is split: bits 3:0 and 11:9 of qword 0. Every
//! descriptor type defines its own fields, so the raw view [`InvDesc`] names
//! only the type bits, and [`InvDescriptor::decode`] applies each type's
//! field table and reserved mask (a reserved bit, an unknown type or a
//! reserved granularity is an invalidation queue error, FSTS.IQE).

use iommu_types::{DomainId, Hpa, Iova, Pasid, SourceId};

crate::layout! {
    /// A raw invalidation descriptor, VT-d §6.5.2 (always stored as 256
    /// bits; in a 128-bit queue qwords 2–3 are zero).
    pub struct InvDesc([u64; 4]);
    /// Type, low bits.
    TYPE_LO: 3, 0;
    /// Type-specific bits of qword 0.
    QW0_A: 8, 4;
    /// Type, high bits.
    TYPE_HI: 11, 9;
    /// Type-specific bits of qword 0.
    QW0_B: 63, 12;
    /// Qword 1.
    QW1: 127, 64;
    /// Qword 2.
    QW2: 191, 128;
    /// Qword 3.
    QW3: 255, 192;
}

impl InvDesc {
    /// The 7-bit descriptor type (bits 11:9 and 3:0 of qword 0).
    pub const fn desc_type(&self) -> u8 {
        (self.get(Self::TYPE_HI) << 4 | self.get(Self::TYPE_LO)) as u8
    }
}

/// Descriptor type codes, VT-d §6.5.2.
pub mod desc_type {
    /// Context-cache invalidate.
    pub const CONTEXT_CACHE: u8 = 0x1;
    /// IOTLB invalidate.
    pub const IOTLB: u8 = 0x2;
    /// Device-TLB invalidate.
    pub const DEVICE_TLB: u8 = 0x3;
    /// Interrupt entry cache invalidate.
    pub const IEC: u8 = 0x4;
    /// Invalidation wait.
    pub const WAIT: u8 = 0x5;
    /// PASID-based IOTLB invalidate.
    pub const PASID_IOTLB: u8 = 0x6;
    /// PASID-cache invalidate.
    pub const PASID_CACHE: u8 = 0x7;
    /// PASID-based device-TLB invalidate.
    pub const PASID_DEVICE_TLB: u8 = 0x8;
    /// Page group response.
    pub const PAGE_GROUP_RESPONSE: u8 = 0x9;
}

/// Context-cache invalidation granularity (G, bits 5:4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContextCacheScope {
    /// 01b: every context-cache entry.
    Global,
    /// 10b: entries tagged with the domain.
    Domain(DomainId),
    /// 11b: entries of one device (function mask FM applies).
    Device {
        /// Domain ID.
        did: DomainId,
        /// Source-id.
        sid: SourceId,
        /// Function mask: ignore the low FM bits of the function number.
        fm: u8,
    },
}

/// IOTLB invalidation granularity (G, bits 5:4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IotlbScope {
    /// 01b: everything.
    Global,
    /// 10b: one domain.
    Domain(DomainId),
    /// 11b: 2^`am` pages at `addr` in one domain.
    Page {
        /// Domain ID.
        did: DomainId,
        /// Base address (aligned to 2^am pages by the spec's rules).
        addr: Iova,
        /// Address mask: log2 of the number of 4 KiB pages.
        am: u8,
        /// Invalidation hint: only leaf entries changed.
        ih: bool,
    },
}

/// PASID-based IOTLB invalidation granularity (G, bits 5:4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasidIotlbScope {
    /// 10b: every non-global mapping of the PASID.
    AllNonGlobal,
    /// 11b: 2^`am` pages at `addr`.
    Page {
        /// Base address.
        addr: Iova,
        /// Address mask.
        am: u8,
        /// Invalidation hint.
        ih: bool,
    },
}

/// PASID-cache invalidation granularity (G, bits 5:4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasidCacheScope {
    /// 00b: every PASID of the domain.
    Domain,
    /// 01b: one PASID of the domain.
    Pasid(Pasid),
    /// 11b: everything.
    Global,
}

/// Page group response code, VT-d §7.7.1 (PCIe PRG response codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    /// 0000b: success, retry the translation.
    Success,
    /// 0001b: invalid request, do not retry.
    InvalidRequest,
    /// 1111b: response failure, disable PRI.
    ResponseFailure,
    /// Any other value (reserved).
    Reserved(u8),
}

impl ResponseCode {
    /// Decodes the 4-bit field.
    pub const fn from_bits(v: u64) -> Self {
        match v & 0xF {
            0 => Self::Success,
            1 => Self::InvalidRequest,
            0xF => Self::ResponseFailure,
            r => Self::Reserved(r as u8),
        }
    }
    /// The 4-bit encoding.
    pub const fn bits(self) -> u64 {
        match self {
            Self::Success => 0,
            Self::InvalidRequest => 1,
            Self::ResponseFailure => 0xF,
            Self::Reserved(r) => r as u64 & 0xF,
        }
    }
}

/// A legal invalidation descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvDescriptor {
    /// Context-cache invalidate (0x1).
    ContextCache(ContextCacheScope),
    /// IOTLB invalidate (0x2).
    Iotlb {
        /// What to invalidate.
        scope: IotlbScope,
        /// Drain reads.
        dr: bool,
        /// Drain writes.
        dw: bool,
    },
    /// Device-TLB invalidate (0x3).
    DeviceTlb {
        /// The endpoint.
        sid: SourceId,
        /// Physical function source-id (for VFs).
        pfsid: u16,
        /// Invalidate-queue depth hint.
        qdep: u8,
        /// Address (with S: the size-encoded range).
        addr: Iova,
        /// Size bit: the range is encoded in the address's low set bits.
        size: bool,
    },
    /// Interrupt entry cache invalidate (0x4).
    InterruptEntryCache {
        /// Index-selective (else global).
        indexed: bool,
        /// Index mask.
        im: u8,
        /// Interrupt index.
        index: u16,
    },
    /// Invalidation wait (0x5).
    Wait {
        /// Raise the completion interrupt (IF).
        interrupt: bool,
        /// Status write (SW): write `data` to `addr`.
        status: Option<(Hpa, u32)>,
        /// Fence (FN): later descriptors wait for this one.
        fence: bool,
        /// Page-request drain (PD).
        drain_page_requests: bool,
    },
    /// PASID-based IOTLB invalidate (0x6).
    PasidIotlb {
        /// Domain ID.
        did: DomainId,
        /// PASID.
        pasid: Pasid,
        /// What to invalidate.
        scope: PasidIotlbScope,
    },
    /// PASID-cache invalidate (0x7).
    PasidCache {
        /// Domain ID.
        did: DomainId,
        /// What to invalidate.
        scope: PasidCacheScope,
    },
    /// PASID-based device-TLB invalidate (0x8).
    PasidDeviceTlb {
        /// The endpoint.
        sid: SourceId,
        /// Physical function source-id.
        pfsid: u16,
        /// Invalidate-queue depth hint.
        qdep: u8,
        /// PASID.
        pasid: Pasid,
        /// Also invalidate global mappings.
        global: bool,
        /// Address (with S: size-encoded).
        addr: Iova,
        /// Size bit.
        size: bool,
    },
    /// Page group response (0x9).
    PageGroupResponse {
        /// Requester the response goes to.
        rid: SourceId,
        /// PASID of the group, when the request had one.
        pasid: Option<Pasid>,
        /// Response code.
        code: ResponseCode,
        /// Last page in group.
        lpig: bool,
        /// Page request group index.
        prgi: u16,
        /// Private data (qwords 2–3), when present (PDP).
        private: Option<[u64; 2]>,
    },
}

/// Why a descriptor is not legal (each is reported as FSTS.IQE, VT-d §6.5.2.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvDecodeError {
    /// The type is not one this hardware implements.
    #[error("unknown descriptor type {0:#x}")]
    UnknownType(u8),
    /// A reserved field is non-zero.
    #[error("reserved bits set in descriptor type {ty:#x}: {bits:#x} in qword {qword}")]
    Reserved {
        /// Descriptor type.
        ty: u8,
        /// Which qword.
        qword: usize,
        /// The offending bits.
        bits: u64,
    },
    /// The granularity field holds a reserved value.
    #[error("reserved granularity {gran} in descriptor type {ty:#x}")]
    Granularity {
        /// Descriptor type.
        ty: u8,
        /// The granularity value.
        gran: u8,
    },
    /// A type that exists only as a 256-bit descriptor, in a 128-bit queue.
    #[error("descriptor type {0:#x} needs a 256-bit queue")]
    NeedsWideQueue(u8),
}

/// Mask of bits `hi..=lo` within one qword.
const fn m(hi: u32, lo: u32) -> u64 {
    (u64::MAX >> (63 - hi)) & (u64::MAX << lo)
}

const fn f(w: u64, hi: u32, lo: u32) -> u64 {
    (w & m(hi, lo)) >> lo
}

/// Per type, the defined (non-reserved) bits of qwords 0 and 1.
const fn defined(ty: u8) -> [u64; 2] {
    let t = m(3, 0) | m(11, 9);
    match ty {
        desc_type::CONTEXT_CACHE => [t | m(5, 4) | m(49, 16), 0],
        desc_type::IOTLB => [t | m(7, 4) | m(31, 16), m(6, 0) | m(63, 12)],
        desc_type::DEVICE_TLB => [t | m(20, 12) | m(47, 32) | m(63, 52), 1 | m(63, 12)],
        desc_type::IEC => [t | 1 << 4 | m(31, 27) | m(47, 32), 0],
        desc_type::WAIT => [t | m(7, 4) | m(63, 32), m(63, 2)],
        desc_type::PASID_IOTLB => [t | m(5, 4) | m(31, 16) | m(51, 32), m(6, 0) | m(63, 12)],
        desc_type::PASID_CACHE => [t | m(5, 4) | m(31, 16) | m(51, 32), 0],
        desc_type::PASID_DEVICE_TLB => [t | m(8, 4) | m(15, 12) | m(31, 16) | m(51, 32) | m(63, 52), 1 | m(63, 11)],
        desc_type::PAGE_GROUP_RESPONSE => [t | m(5, 4) | m(51, 12), m(11, 2)],
        _ => [0, 0],
    }
}

/// Whether a type exists only in the 256-bit (scalable-mode) queue format:
/// the PASID-granular descriptors and the page group response.
pub const fn needs_wide_queue(ty: u8) -> bool {
    matches!(
        ty,
        desc_type::PASID_IOTLB | desc_type::PASID_CACHE | desc_type::PASID_DEVICE_TLB | desc_type::PAGE_GROUP_RESPONSE
    )
}

impl InvDescriptor {
    /// Decodes a raw descriptor fetched from a queue of width `wide` (256-bit
    /// when true). Every bit pattern either decodes or yields the reason the
    /// hardware reports IQE; nothing panics.
    ///
    /// # Errors
    /// See [`InvDecodeError`].
    pub fn decode(raw: &InvDesc, wide: bool) -> Result<Self, InvDecodeError> {
        let ty = raw.desc_type();
        if !(desc_type::CONTEXT_CACHE..=desc_type::PAGE_GROUP_RESPONSE).contains(&ty) {
            return Err(InvDecodeError::UnknownType(ty));
        }
        if needs_wide_queue(ty) && !wide {
            return Err(InvDecodeError::NeedsWideQueue(ty));
        }
        let [w0, w1, w2, w3] = raw.0;
        let def = defined(ty);
        for (qword, (w, d)) in [w0, w1].iter().zip(def).enumerate() {
            if w & !d != 0 {
                return Err(InvDecodeError::Reserved { ty, qword, bits: w & !d });
            }
        }
        let private_ok = ty == desc_type::PAGE_GROUP_RESPONSE && f(w0, 5, 5) != 0;
        if !private_ok && (w2 | w3) != 0 {
            let (qword, bits) = if w2 != 0 { (2, w2) } else { (3, w3) };
            return Err(InvDecodeError::Reserved { ty, qword, bits });
        }
        let gran = f(w0, 5, 4) as u8;
        let did = DomainId::new(f(w0, 31, 16) as u16);
        let pasid = Pasid::new_truncate(f(w0, 51, 32));
        let bad_gran = Err(InvDecodeError::Granularity { ty, gran });
        Ok(match ty {
            desc_type::CONTEXT_CACHE => InvDescriptor::ContextCache(match gran {
                1 => ContextCacheScope::Global,
                2 => ContextCacheScope::Domain(did),
                3 => {
                    ContextCacheScope::Device { did, sid: SourceId::new(f(w0, 47, 32) as u16), fm: f(w0, 49, 48) as u8 }
                }
                _ => return bad_gran,
            }),
            desc_type::IOTLB => InvDescriptor::Iotlb {
                scope: match gran {
                    1 => IotlbScope::Global,
                    2 => IotlbScope::Domain(did),
                    3 => IotlbScope::Page {
                        did,
                        addr: Iova::new(w1 & m(63, 12)),
                        am: f(w1, 5, 0) as u8,
                        ih: f(w1, 6, 6) != 0,
                    },
                    _ => return bad_gran,
                },
                dw: f(w0, 6, 6) != 0,
                dr: f(w0, 7, 7) != 0,
            },
            desc_type::DEVICE_TLB => InvDescriptor::DeviceTlb {
                sid: SourceId::new(f(w0, 47, 32) as u16),
                pfsid: (f(w0, 15, 12) | f(w0, 63, 52) << 4) as u16,
                qdep: f(w0, 20, 16) as u8,
                addr: Iova::new(w1 & m(63, 12)),
                size: w1 & 1 != 0,
            },
            desc_type::IEC => InvDescriptor::InterruptEntryCache {
                indexed: f(w0, 4, 4) != 0,
                im: f(w0, 31, 27) as u8,
                index: f(w0, 47, 32) as u16,
            },
            desc_type::WAIT => InvDescriptor::Wait {
                interrupt: f(w0, 4, 4) != 0,
                status: (f(w0, 5, 5) != 0).then(|| (Hpa::new(w1 & m(63, 2)), f(w0, 63, 32) as u32)),
                fence: f(w0, 6, 6) != 0,
                drain_page_requests: f(w0, 7, 7) != 0,
            },
            desc_type::PASID_IOTLB => InvDescriptor::PasidIotlb {
                did,
                pasid,
                scope: match gran {
                    2 => PasidIotlbScope::AllNonGlobal,
                    3 => PasidIotlbScope::Page {
                        addr: Iova::new(w1 & m(63, 12)),
                        am: f(w1, 5, 0) as u8,
                        ih: f(w1, 6, 6) != 0,
                    },
                    _ => return bad_gran,
                },
            },
            desc_type::PASID_CACHE => InvDescriptor::PasidCache {
                did,
                scope: match gran {
                    0 => PasidCacheScope::Domain,
                    1 => PasidCacheScope::Pasid(pasid),
                    3 => PasidCacheScope::Global,
                    _ => return bad_gran,
                },
            },
            desc_type::PASID_DEVICE_TLB => InvDescriptor::PasidDeviceTlb {
                sid: SourceId::new(f(w0, 31, 16) as u16),
                pfsid: (f(w0, 15, 12) | f(w0, 63, 52) << 4) as u16,
                qdep: f(w0, 8, 4) as u8,
                pasid,
                global: w1 & 1 != 0,
                addr: Iova::new(w1 & m(63, 12)),
                size: f(w1, 11, 11) != 0,
            },
            _ => InvDescriptor::PageGroupResponse {
                rid: SourceId::new(f(w0, 31, 16) as u16),
                pasid: (f(w0, 4, 4) != 0).then_some(pasid),
                code: ResponseCode::from_bits(f(w0, 15, 12)),
                lpig: f(w1, 2, 2) != 0,
                prgi: f(w1, 11, 3) as u16,
                private: private_ok.then_some([w2, w3]),
            },
        })
    }

    /// Encodes a descriptor (256-bit form; qwords 2–3 are zero except for a
    /// page group response with private data).
    pub fn encode(&self) -> InvDesc {
        let ty = |t: u8| (t as u64 & 0xF) | ((t as u64 >> 4) & 7) << 9;
        let did = |d: DomainId| (d.raw() as u64) << 16;
        let pasid = |p: Pasid| (p.raw() as u64) << 32;
        let pfsid = |p: u16| ((p as u64) & 0xF) << 12 | ((p as u64) >> 4) << 52;
        let w = match *self {
            InvDescriptor::ContextCache(s) => {
                let t = ty(desc_type::CONTEXT_CACHE);
                match s {
                    ContextCacheScope::Global => [t | 1 << 4, 0, 0, 0],
                    ContextCacheScope::Domain(d) => [t | 2 << 4 | did(d), 0, 0, 0],
                    ContextCacheScope::Device { did: d, sid, fm } => {
                        [t | 3 << 4 | did(d) | (sid.raw() as u64) << 32 | ((fm & 3) as u64) << 48, 0, 0, 0]
                    }
                }
            }
            InvDescriptor::Iotlb { scope, dr, dw } => {
                let t = ty(desc_type::IOTLB) | (dw as u64) << 6 | (dr as u64) << 7;
                match scope {
                    IotlbScope::Global => [t | 1 << 4, 0, 0, 0],
                    IotlbScope::Domain(d) => [t | 2 << 4 | did(d), 0, 0, 0],
                    IotlbScope::Page { did: d, addr, am, ih } => {
                        [t | 3 << 4 | did(d), addr.raw() & m(63, 12) | (am & 0x3F) as u64 | (ih as u64) << 6, 0, 0]
                    }
                }
            }
            InvDescriptor::DeviceTlb { sid, pfsid: pf, qdep, addr, size } => [
                ty(desc_type::DEVICE_TLB) | pfsid(pf) | ((qdep & 0x1F) as u64) << 16 | (sid.raw() as u64) << 32,
                addr.raw() & m(63, 12) | size as u64,
                0,
                0,
            ],
            InvDescriptor::InterruptEntryCache { indexed, im, index } => [
                ty(desc_type::IEC) | (indexed as u64) << 4 | ((im & 0x1F) as u64) << 27 | (index as u64) << 32,
                0,
                0,
                0,
            ],
            InvDescriptor::Wait { interrupt, status, fence, drain_page_requests } => {
                let (addr, data) = status.map_or((0, 0), |(a, d)| (a.raw() & m(63, 2), d));
                [
                    ty(desc_type::WAIT)
                        | (interrupt as u64) << 4
                        | (status.is_some() as u64) << 5
                        | (fence as u64) << 6
                        | (drain_page_requests as u64) << 7
                        | (data as u64) << 32,
                    addr,
                    0,
                    0,
                ]
            }
            InvDescriptor::PasidIotlb { did: d, pasid: p, scope } => {
                let t = ty(desc_type::PASID_IOTLB) | did(d) | pasid(p);
                match scope {
                    PasidIotlbScope::AllNonGlobal => [t | 2 << 4, 0, 0, 0],
                    PasidIotlbScope::Page { addr, am, ih } => {
                        [t | 3 << 4, addr.raw() & m(63, 12) | (am & 0x3F) as u64 | (ih as u64) << 6, 0, 0]
                    }
                }
            }
            InvDescriptor::PasidCache { did: d, scope } => {
                let t = ty(desc_type::PASID_CACHE) | did(d);
                match scope {
                    PasidCacheScope::Domain => [t, 0, 0, 0],
                    PasidCacheScope::Pasid(p) => [t | 1 << 4 | pasid(p), 0, 0, 0],
                    PasidCacheScope::Global => [t | 3 << 4, 0, 0, 0],
                }
            }
            InvDescriptor::PasidDeviceTlb { sid, pfsid: pf, qdep, pasid: p, global, addr, size } => [
                ty(desc_type::PASID_DEVICE_TLB)
                    | ((qdep & 0x1F) as u64) << 4
                    | pfsid(pf)
                    | (sid.raw() as u64) << 16
                    | pasid(p),
                addr.raw() & m(63, 12) | (size as u64) << 11 | global as u64,
                0,
                0,
            ],
            InvDescriptor::PageGroupResponse { rid, pasid: p, code, lpig, prgi, private } => {
                let [w2, w3] = private.unwrap_or([0, 0]);
                [
                    ty(desc_type::PAGE_GROUP_RESPONSE)
                        | (p.is_some() as u64) << 4
                        | (private.is_some() as u64) << 5
                        | code.bits() << 12
                        | (rid.raw() as u64) << 16
                        | p.map_or(0, pasid),
                    (lpig as u64) << 2 | ((prgi & 0x1FF) as u64) << 3,
                    w2,
                    w3,
                ]
            }
        };
        InvDesc(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Golden words, VT-d §6.5.2.3: page-selective IOTLB invalidation,
    /// type 2 (3:0), G=11b (5:4 → 0x30), DID=0x1234 (31:16); qword 1:
    /// ADDR=0x7000_0000, AM=3, IH (bit 6).
    #[test]
    fn iotlb_psi_golden_words() {
        let d = InvDescriptor::Iotlb {
            scope: IotlbScope::Page { did: DomainId::new(0x1234), addr: Iova::new(0x7000_0000), am: 3, ih: true },
            dr: false,
            dw: false,
        };
        let words = [0x1234_0032, 0x7000_0043, 0, 0];
        assert_eq!(d.encode().words(), words);
        assert_eq!(InvDescriptor::decode(&InvDesc(words), true), Ok(d));
    }

    /// Golden words, VT-d §6.5.2.8: wait with status write (SW, bit 5) of
    /// 0x5A5A5A5A (63:32) to 0x1000 (qword 1, 63:2).
    #[test]
    fn wait_with_status_write_golden_words() {
        let d = InvDescriptor::Wait {
            interrupt: false,
            status: Some((Hpa::new(0x1000), 0x5A5A_5A5A)),
            fence: false,
            drain_page_requests: false,
        };
        let words = [0x5A5A_5A5A_0000_0025, 0x1000, 0, 0];
        assert_eq!(d.encode().words(), words);
        assert_eq!(InvDescriptor::decode(&InvDesc(words), false), Ok(d));
    }

    /// Golden words, VT-d §6.5.2.6: PASID-cache, PASID-selective (G=01b),
    /// DID=2, PASID=0x12345 (51:32).
    #[test]
    fn pasid_cache_golden_words() {
        let d = InvDescriptor::PasidCache { did: DomainId::new(2), scope: PasidCacheScope::Pasid(Pasid::new(0x12345)) };
        assert_eq!(d.encode().words(), [0x0001_2345_0002_0017, 0, 0, 0]);
    }

    /// Golden words, VT-d §7.7.1: page group response, PASID present,
    /// response INVALID (15:12 = 1), RID=0x0100, PASID=5, LPIG, PRGI=0x1FF.
    #[test]
    fn page_group_response_golden_words() {
        let d = InvDescriptor::PageGroupResponse {
            rid: SourceId::new(0x100),
            pasid: Some(Pasid::new(5)),
            code: ResponseCode::InvalidRequest,
            lpig: true,
            prgi: 0x1FF,
            private: None,
        };
        assert_eq!(d.encode().words(), [0x0000_0005_0100_1019, 0xFFC, 0, 0]);
    }

    #[test]
    fn unknown_type_is_rejected() {
        assert_eq!(InvDescriptor::decode(&InvDesc([0xF, 0, 0, 0]), true), Err(InvDecodeError::UnknownType(0xF)));
    }

    #[test]
    fn iotlb_granularity_zero_is_rejected() {
        assert_eq!(
            InvDescriptor::decode(&InvDesc([0x2, 0, 0, 0]), true),
            Err(InvDecodeError::Granularity { ty: 2, gran: 0 })
        );
    }

    #[test]
    fn context_cache_reserved_bit_8_is_rejected() {
        assert_eq!(
            InvDescriptor::decode(&InvDesc([0x1 | 1 << 4 | 1 << 8, 0, 0, 0]), true),
            Err(InvDecodeError::Reserved { ty: 1, qword: 0, bits: 1 << 8 })
        );
    }

    #[test]
    fn pasid_iotlb_in_128_bit_queue_is_rejected() {
        assert_eq!(
            InvDescriptor::decode(&InvDesc([0x6 | 2 << 4, 0, 0, 0]), false),
            Err(InvDecodeError::NeedsWideQueue(6))
        );
    }

    #[test]
    fn nonzero_qword_2_is_reserved_for_iotlb() {
        assert!(matches!(
            InvDescriptor::decode(&InvDesc([0x2 | 1 << 4, 0, 1, 0]), true),
            Err(InvDecodeError::Reserved { qword: 2, .. })
        ));
    }

    proptest! {
        /// Ignored fields (e.g. the status data of a wait without SW) do not
        /// survive re-encoding, so the property is on the decoded value.
        #[test]
        fn any_descriptor_decodes_without_panic_and_re_encodes_to_the_same_value(w in proptest::array::uniform4(any::<u64>()), wide: bool) {
            if let Ok(d) = InvDescriptor::decode(&InvDesc(w), wide) {
                prop_assert_eq!(InvDescriptor::decode(&d.encode(), wide), Ok(d));
            }
        }

        #[test]
        fn structured_descriptors_round_trip(ty in 1u8..10, g in 0u8..4, did: u16, sid: u16, p in 0u32..(1 << 20), page in 0u64..(1 << 52), low in 0u64..128) {
            let w0 = (ty as u64) | (g as u64) << 4 | (did as u64) << 16 | (p as u64) << 32;
            let w = [w0, page << 12 | low, 0, 0];
            if let Ok(d) = InvDescriptor::decode(&InvDesc(w), true) {
                prop_assert_eq!(InvDescriptor::decode(&d.encode(), true), Ok(d));
            }
            let _ = sid;
        }
    }
}
