//! The one mapping from lookup and walk faults to SMMUv3 events (§7.3).

use iommu_format::smmuv3::event::{Event, EventId};
use iommu_types::{StreamId, SubstreamId};

use super::page::{TransFault, TransFaultKind};
use super::ConfigFault;

/// The event number of a configuration fault; `None` for STE.Config =
/// abort, which records nothing.
pub const fn config_event(f: ConfigFault) -> Option<EventId> {
    Some(match f {
        ConfigFault::BadStreamId => EventId::CBadStreamid,
        ConfigFault::SteFetch { .. } => EventId::FSteFetch,
        ConfigFault::BadSte => EventId::CBadSte,
        ConfigFault::SteAbort => return None,
        ConfigFault::BadSubstreamId => EventId::CBadSubstreamid,
        ConfigFault::CdFetch { .. } => EventId::FCdFetch,
        ConfigFault::BadCd => EventId::CBadCd,
        ConfigFault::StreamDisabled => EventId::FStreamDisabled,
    })
}

/// The event number of a translation fault.
pub const fn trans_event(k: TransFaultKind) -> EventId {
    match k {
        TransFaultKind::Translation => EventId::FTranslation,
        TransFaultKind::AddrSize => EventId::FAddrSize,
        TransFaultKind::Access => EventId::FAccess,
        TransFaultKind::Permission => EventId::FPermission,
        TransFaultKind::WalkEabt => EventId::FWalkEabt,
    }
}

/// The transaction an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Txn {
    /// StreamID.
    pub sid: StreamId,
    /// SubstreamID.
    pub ssid: Option<SubstreamId>,
    /// Input address.
    pub addr: u64,
    /// Read (else write).
    pub read: bool,
    /// Privileged.
    pub privileged: bool,
    /// Instruction fetch.
    pub instruction: bool,
}

/// The event record for a configuration fault of `t`.
pub fn config_fault_event(f: ConfigFault, t: &Txn) -> Option<Event> {
    let id = config_event(f)?;
    let mut e = Event::new(id, t.sid);
    e.ssid = t.ssid;
    if let ConfigFault::SteFetch { addr } | ConfigFault::CdFetch { addr } = f {
        e.fetch_addr = addr;
    }
    Some(e)
}

/// The event record for a translation fault of `t`.
pub fn trans_fault_event(f: &TransFault, t: &Txn) -> Event {
    let mut e = Event::new(trans_event(f.kind), t.sid);
    e.ssid = t.ssid;
    e.read = t.read;
    e.privileged = t.privileged;
    e.instruction = t.instruction;
    e.s2 = f.s2;
    e.class = f.class;
    e.ttrnw = f.ttrnw;
    e.input_addr = t.addr;
    e.ipa = if f.s2 { f.ipa } else { 0 };
    e.fetch_addr = f.fetch_addr;
    e
}
