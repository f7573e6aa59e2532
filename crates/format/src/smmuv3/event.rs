//! Event records (SMMUv3 §7.3), 32 bytes each, written to the event queue.
//!
//! All records share EventID [7:0], SSV [11], SubstreamID [31:12] and
//! StreamID [63:32]. Translation-related records add the transaction's
//! attributes in the second word, InputAddr in the third and either the
//! faulting IPA [243:204] (bits 51:12 of the IPA, in place) or a fetch
//! address [243:195] (bits 51:3, in place) in the fourth. Which fields an
//! event number defines is the table in [`EventId::fields`]; [`Event::encode`]
//! writes only those, so every other bit of a record is zero.

use iommu_types::{StreamId, SubstreamId};

crate::layout! {
    /// Raw event record, SMMUv3 §7.3. The IPA and FetchAddr fields share
    /// the fourth word ([`IPA_MASK`], [`FETCH_MASK`] select them), so the
    /// table names the wider one.
    pub struct EventRecord([u64; 4]);
    /// Event number.
    EVENTID: 7, 0;
    /// SubstreamID valid.
    SSV: 11, 11;
    /// SubstreamID of the transaction.
    SUBSTREAMID: 31, 12;
    /// StreamID of the transaction.
    STREAMID: 63, 32;
    /// Stall tag (stalled faults only).
    STAG: 79, 64;
    /// The transaction is stalled.
    STALL: 95, 95;
    /// Privileged (1) or unprivileged (0) transaction.
    PNU: 97, 97;
    /// Instruction (1) or data (0) transaction.
    IND: 98, 98;
    /// Read (1) or write (0) transaction.
    RNW: 99, 99;
    /// Non-secure IPA.
    NSIPA: 100, 100;
    /// The fault was found at stage 2.
    S2: 103, 103;
    /// What the access that faulted was for: 0b00 CD fetch, 0b01 stage-1
    /// table walk, 0b10 the input address.
    CLASS: 105, 104;
    /// The table access that faulted was a read (1) or a write (0, a
    /// hardware update); F_PERMISSION only.
    TTRNW: 108, 108;
    /// Input address of the transaction.
    INPUTADDR: 191, 128;
    /// Fetch address (bits 51:3) or, in its upper part, the IPA (bits 51:12).
    ADDR: 243, 195;
}

/// Bits of word 3 holding the IPA (51:12, in place).
pub const IPA_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Bits of word 3 holding a fetch address (51:3, in place).
pub const FETCH_MASK: u64 = 0x000F_FFFF_FFFF_FFF8;

/// Event numbers, SMMUv3 §7.3 (Table 7-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventId {
    /// Unsupported upstream transaction.
    FUut = 0x01,
    /// StreamID out of range of the stream table.
    CBadStreamid = 0x02,
    /// External abort fetching an STE.
    FSteFetch = 0x03,
    /// STE is not valid or ILLEGAL.
    CBadSte = 0x04,
    /// ATS translation request not allowed.
    FBadAtsTreq = 0x05,
    /// A transaction without SubstreamID on a stream that terminates them.
    FStreamDisabled = 0x06,
    /// ATS translated transaction not allowed.
    FTranslForbidden = 0x07,
    /// SubstreamID out of range, or invalid level-1 CD descriptor.
    CBadSubstreamid = 0x08,
    /// External abort fetching a CD.
    FCdFetch = 0x09,
    /// CD is not valid or ILLEGAL.
    CBadCd = 0x0A,
    /// External abort on a translation table walk.
    FWalkEabt = 0x0B,
    /// Translation fault.
    FTranslation = 0x10,
    /// Address size fault.
    FAddrSize = 0x11,
    /// Access flag fault.
    FAccess = 0x12,
    /// Permission fault.
    FPermission = 0x13,
    /// TLB conflict.
    FTlbConflict = 0x20,
    /// Configuration cache conflict.
    FCfgConflict = 0x21,
    /// A page request from a stalled transaction (stall model).
    EPageRequest = 0x24,
}

/// Optional field groups of an event record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventFields {
    /// SSV and SubstreamID.
    pub ssid: bool,
    /// STAG, Stall, PnU, InD, RnW, S2, CLASS.
    pub attrs: bool,
    /// RnW alone (F_TRANSL_FORBIDDEN).
    pub rnw_only: bool,
    /// TTRnW.
    pub ttrnw: bool,
    /// InputAddr.
    pub input_addr: bool,
    /// IPA in word 3.
    pub ipa: bool,
    /// FetchAddr in word 3.
    pub fetch_addr: bool,
}

impl EventId {
    /// Decodes an event number.
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x01 => EventId::FUut,
            0x02 => EventId::CBadStreamid,
            0x03 => EventId::FSteFetch,
            0x04 => EventId::CBadSte,
            0x05 => EventId::FBadAtsTreq,
            0x06 => EventId::FStreamDisabled,
            0x07 => EventId::FTranslForbidden,
            0x08 => EventId::CBadSubstreamid,
            0x09 => EventId::FCdFetch,
            0x0A => EventId::CBadCd,
            0x0B => EventId::FWalkEabt,
            0x10 => EventId::FTranslation,
            0x11 => EventId::FAddrSize,
            0x12 => EventId::FAccess,
            0x13 => EventId::FPermission,
            0x20 => EventId::FTlbConflict,
            0x21 => EventId::FCfgConflict,
            0x24 => EventId::EPageRequest,
            _ => return None,
        })
    }

    /// The spec's mnemonic.
    pub const fn name(self) -> &'static str {
        match self {
            EventId::FUut => "F_UUT",
            EventId::CBadStreamid => "C_BAD_STREAMID",
            EventId::FSteFetch => "F_STE_FETCH",
            EventId::CBadSte => "C_BAD_STE",
            EventId::FBadAtsTreq => "F_BAD_ATS_TREQ",
            EventId::FStreamDisabled => "F_STREAM_DISABLED",
            EventId::FTranslForbidden => "F_TRANSL_FORBIDDEN",
            EventId::CBadSubstreamid => "C_BAD_SUBSTREAMID",
            EventId::FCdFetch => "F_CD_FETCH",
            EventId::CBadCd => "C_BAD_CD",
            EventId::FWalkEabt => "F_WALK_EABT",
            EventId::FTranslation => "F_TRANSLATION",
            EventId::FAddrSize => "F_ADDR_SIZE",
            EventId::FAccess => "F_ACCESS",
            EventId::FPermission => "F_PERMISSION",
            EventId::FTlbConflict => "F_TLB_CONFLICT",
            EventId::FCfgConflict => "F_CFG_CONFLICT",
            EventId::EPageRequest => "E_PAGE_REQUEST",
        }
    }

    /// Which optional fields the record of this event defines (§7.3.x).
    pub const fn fields(self) -> EventFields {
        let none = EventFields {
            ssid: false,
            attrs: false,
            rnw_only: false,
            ttrnw: false,
            input_addr: false,
            ipa: false,
            fetch_addr: false,
        };
        let walk = EventFields { ssid: true, attrs: true, input_addr: true, ipa: true, ..none };
        match self {
            EventId::CBadStreamid | EventId::CBadSte | EventId::CBadCd => EventFields { ssid: true, ..none },
            EventId::FSteFetch | EventId::FCdFetch => EventFields { ssid: true, fetch_addr: true, ..none },
            EventId::FStreamDisabled => none,
            EventId::FTranslForbidden => EventFields { rnw_only: true, input_addr: true, ..none },
            EventId::CBadSubstreamid => EventFields { ssid: true, ..none },
            EventId::FWalkEabt => EventFields { ipa: false, fetch_addr: true, ..walk },
            EventId::FTranslation | EventId::FAddrSize | EventId::FAccess => walk,
            EventId::FPermission => EventFields { ttrnw: true, ..walk },
            EventId::FUut | EventId::FBadAtsTreq | EventId::EPageRequest => {
                EventFields { ssid: true, attrs: true, input_addr: true, ..none }
            }
            EventId::FTlbConflict | EventId::FCfgConflict => EventFields { ssid: true, input_addr: true, ..none },
        }
    }
}

/// What an access that faulted was for (event CLASS field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultClass {
    /// A CD (or L1CD) fetch.
    Cd,
    /// A stage-1 translation table access.
    Tt,
    /// The transaction's own input address.
    In,
}

impl FaultClass {
    /// The 2-bit encoding.
    pub const fn bits(self) -> u64 {
        match self {
            FaultClass::Cd => 0,
            FaultClass::Tt => 1,
            FaultClass::In => 2,
        }
    }
}

/// A typed event (the fields an event number does not define are ignored
/// by [`Event::encode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// Event number.
    pub id: EventId,
    /// StreamID.
    pub sid: StreamId,
    /// SubstreamID, if the transaction had one.
    pub ssid: Option<SubstreamId>,
    /// Stall tag.
    pub stag: u16,
    /// Stalled.
    pub stall: bool,
    /// Privileged transaction.
    pub privileged: bool,
    /// Instruction fetch.
    pub instruction: bool,
    /// Read transaction.
    pub read: bool,
    /// Found at stage 2.
    pub s2: bool,
    /// What faulted.
    pub class: FaultClass,
    /// The faulting table access was a read (F_PERMISSION on a table fetch).
    pub ttrnw: bool,
    /// Input address.
    pub input_addr: u64,
    /// IPA (stage-2 faults), page-aligned.
    pub ipa: u64,
    /// Fetch address (fetch aborts), 8-byte aligned.
    pub fetch_addr: u64,
}

impl Event {
    /// An event with only its number and StreamID set.
    pub const fn new(id: EventId, sid: StreamId) -> Self {
        Self {
            id,
            sid,
            ssid: None,
            stag: 0,
            stall: false,
            privileged: false,
            instruction: false,
            read: false,
            s2: false,
            class: FaultClass::In,
            ttrnw: false,
            input_addr: 0,
            ipa: 0,
            fetch_addr: 0,
        }
    }

    /// Encodes the record, writing only the fields the event defines.
    pub fn encode(&self) -> EventRecord {
        let f = self.id.fields();
        let mut r = EventRecord::default()
            .with(EventRecord::EVENTID, self.id as u64)
            .with(EventRecord::STREAMID, self.sid.0 as u64);
        if let (true, Some(s)) = (f.ssid, self.ssid) {
            r.set(EventRecord::SUBSTREAMID, s.raw() as u64);
            if self.id != EventId::CBadSubstreamid {
                r.set(EventRecord::SSV, 1);
            }
        }
        if f.attrs {
            r.set(EventRecord::STAG, self.stag as u64);
            r.set(EventRecord::STALL, self.stall as u64);
            r.set(EventRecord::PNU, self.privileged as u64);
            r.set(EventRecord::IND, self.instruction as u64);
            r.set(EventRecord::RNW, self.read as u64);
            r.set(EventRecord::S2, self.s2 as u64);
            r.set(EventRecord::CLASS, self.class.bits());
        }
        if f.rnw_only {
            r.set(EventRecord::RNW, self.read as u64);
        }
        if f.ttrnw {
            r.set(EventRecord::TTRNW, self.ttrnw as u64);
        }
        if f.input_addr {
            r.set(EventRecord::INPUTADDR, self.input_addr);
        }
        if f.ipa {
            r.0[3] = self.ipa & IPA_MASK;
        } else if f.fetch_addr {
            r.0[3] = self.fetch_addr & FETCH_MASK;
        }
        r
    }
}

impl EventRecord {
    /// Decodes a record; `None` for an unknown event number.
    pub fn decode(&self) -> Option<Event> {
        let id = EventId::from_u8(self.get(Self::EVENTID) as u8)?;
        let f = id.fields();
        let mut e = Event::new(id, StreamId(self.get(Self::STREAMID) as u32));
        if f.ssid && (self.get(Self::SSV) != 0 || id == EventId::CBadSubstreamid) {
            e.ssid = SubstreamId::try_new(self.get(Self::SUBSTREAMID) as u32).ok();
        }
        e.stag = self.get(Self::STAG) as u16;
        e.stall = self.get(Self::STALL) != 0;
        e.privileged = self.get(Self::PNU) != 0;
        e.instruction = self.get(Self::IND) != 0;
        e.read = self.get(Self::RNW) != 0;
        e.s2 = self.get(Self::S2) != 0;
        e.class = match self.get(Self::CLASS) {
            0 => FaultClass::Cd,
            1 => FaultClass::Tt,
            _ => FaultClass::In,
        };
        e.ttrnw = self.get(Self::TTRNW) != 0;
        e.input_addr = self.get(Self::INPUTADDR);
        if f.ipa {
            e.ipa = self.0[3] & IPA_MASK;
        }
        if f.fetch_addr {
            e.fetch_addr = self.0[3] & FETCH_MASK;
        }
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden bytes, SMMUv3 §7.3.14: F_PERMISSION for StreamID 0x68, a
    /// stage-2 write fault on input 0x5c30f37a78 at IPA 0x9e672000.
    #[test]
    fn f_permission_golden_bytes() {
        let e = Event {
            s2: true,
            input_addr: 0x5c_30f3_7a78,
            ipa: 0x9e67_2000,
            ..Event::new(EventId::FPermission, StreamId(0x68))
        };
        let r = e.encode();
        assert_eq!(r.words(), [0x68_0000_0013, 0x80_0000_0000 | 2 << 40, 0x5c_30f3_7a78, 0x9e67_2000]);
        assert_eq!(r.decode(), Some(e));
    }

    #[test]
    fn fetch_events_carry_the_fetch_address_not_an_ipa() {
        let e = Event { fetch_addr: 0x10_0000_0208, ..Event::new(EventId::FSteFetch, StreamId(8)) };
        let r = e.encode();
        assert_eq!(r.words(), [0x8_0000_0003, 0, 0, 0x10_0000_0208]);
    }

    #[test]
    fn fields_an_event_does_not_define_stay_zero() {
        let e = Event { read: true, input_addr: 0x1000, ipa: 0x2000, ..Event::new(EventId::CBadSte, StreamId(1)) };
        assert_eq!(e.encode().words(), [0x1_0000_0004, 0, 0, 0]);
    }

    #[test]
    fn every_event_number_round_trips() {
        for v in 0..=255u8 {
            if let Some(id) = EventId::from_u8(v) {
                assert_eq!(id as u8, v, "{}", id.name());
            }
        }
    }
}
