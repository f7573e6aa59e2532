//! The I/O page-fault core: fault groups, pending lists, responses
//! (semantics §1.1 fault parameter, §1.2 IOPF rows, §4.9).
//!
//! Driver-independent: a driver turns what its hardware recorded (a VT-d
//! page request, an SMMUv3 PRI event) into a [`Fault`] and calls
//! [`IopfQueue::report`]; the driver also sends the [`Response`]s this
//! module hands back. Who *handles* a group (the SVA handler faulting pages
//! into a process, an iommufd fault queue) is decided by the caller, not
//! here.
//!
//! The flow for one page request group:
//!
//! 1. Each non-last request is kept in the device's partial list
//!    ([`Report::Partial`]); nothing is answered.
//! 2. The last request takes every partial request with the same PASID and
//!    group index out of that list and forms a [`FaultGroup`] (partials in
//!    arrival order, then the last one), which becomes *pending*
//!    ([`Report::Group`]).
//! 3. The caller handles the group and calls [`IopfQueue::respond`], which
//!    yields the one [`Response`] (using the last request's PASID, group
//!    index and private data) and unlinks the group; a second call yields
//!    nothing (`iopf_group_response` is idempotent).
//! 4. [`IopfQueue::flush_pasid`] (before a PASID is reused, on detach) and
//!    [`IopfQueue::remove_device`] answer INVALID to what is still pending
//!    and drop the partials, so no response for that PASID or device can be
//!    sent after they return (semantics §5.9 #59).
//!
//! There is no work queue: handling is the caller's, so Linux's
//! `iopf_queue_flush_dev` (wait until queued fault work is done) is
//! trivially satisfied when the caller returns.
//!
//! # Bounds
//!
//! Everything here is allocated because a device sent a page request, so
//! every list a device can grow is bounded per device ([`IopfLimits`]):
//!
//! * **partial requests** ([`DEFAULT_MAX_PARTIAL`]): a non-last request
//!   beyond the bound is dropped ([`Report::Dropped`]), as Linux drops a
//!   partial request it cannot allocate. Nothing is lost for good: the
//!   group's last request still forms a group, and after a SUCCESS
//!   response the device retries the pages that are still missing.
//! * **pending groups** ([`DEFAULT_MAX_PENDING`]): a last request beyond the
//!   bound becomes §4.9's *abort group*: the partials of its group are
//!   dropped and it is answered FAILURE at once ([`Report::Respond`]). A
//!   device that keeps more groups outstanding than there are group indices
//!   is broken; FAILURE makes it stop issuing page requests (PCIe PRI
//!   "response failure").
//!
//! The bounds are per device, so one misbehaving device cannot starve
//! another.

use std::collections::BTreeMap;

use iommu_types::{Access, Iova, Pasid};

use crate::pasid::DeviceId;
use crate::Errno;

#[cfg(test)]
mod tests;

/// Default bound on partial (non-last) requests kept per device: twice the
/// VT-d driver's 128-entry page request queue.
pub const DEFAULT_MAX_PARTIAL: usize = 256;

/// Default bound on pending groups per device: the number of 9-bit page
/// request group indices, so a device that reuses an index only after its
/// response never reaches it.
pub const DEFAULT_MAX_PENDING: usize = 512;

/// One recoverable I/O page fault (a page request), as a driver reports it
/// (Linux's `iommu_fault_page_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fault {
    /// The device that asked.
    pub dev: DeviceId,
    /// The PASID the request carried, if any.
    pub pasid: Option<Pasid>,
    /// The page asked for (the address the device tried to translate).
    pub addr: Iova,
    /// What the device wants to do with it (read, write, execute,
    /// privileged).
    pub access: Access,
    /// Last request of its group (only the last one is answered).
    pub last: bool,
    /// Group index (VT-d PRGI, PCIe PRG index).
    pub grpid: u16,
    /// Private data, returned with the response.
    pub private: [u64; 2],
}

/// A page response code (kernel-internal values, semantics §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    /// 0: the pages are there, retry the translation.
    Success,
    /// 1: the request cannot be satisfied; do not retry.
    Invalid,
    /// 2: a failure of the fault handling itself; the device stops issuing
    /// page requests.
    Failure,
}

impl ResponseCode {
    /// The kernel-internal value (`IOMMU_PAGE_RESP_*`).
    pub const fn raw(self) -> u32 {
        match self {
            Self::Success => 0,
            Self::Invalid => 1,
            Self::Failure => 2,
        }
    }
}

/// Names one reported group while it is pending: unique, never reused
/// within one [`IopfQueue`] (a monotonic counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(u64);

impl GroupId {
    /// The counter value.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// A page request group: the partial requests and the last request that
/// share a device, PASID and group index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FaultGroup {
    /// Its token for [`IopfQueue::respond`].
    pub id: GroupId,
    /// The device.
    pub dev: DeviceId,
    /// The PASID of every request in it.
    pub pasid: Option<Pasid>,
    /// The group index of every request in it.
    pub grpid: u16,
    /// Partial requests in arrival order, then the last one (never empty).
    pub faults: Vec<Fault>,
}

/// A page response to send to a device: the driver turns it into its
/// hardware's response (VT-d page group response descriptor, SMMUv3
/// `CMD_RESUME`/`CMD_PRI_RESP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Response {
    /// The device it goes to.
    pub dev: DeviceId,
    /// The group's PASID (from the last request).
    pub pasid: Option<Pasid>,
    /// The group index (from the last request).
    pub grpid: u16,
    /// The answer.
    pub code: ResponseCode,
    /// Private data of the last request.
    pub private: [u64; 2],
}

impl Response {
    /// The response to the group `last` closes.
    fn to(last: &Fault, code: ResponseCode) -> Self {
        Self { dev: last.dev, pasid: last.pasid, grpid: last.grpid, code, private: last.private }
    }
}

/// What became of a reported fault.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[must_use = "a group must be handled and answered, a response sent"]
pub enum Report {
    /// A non-last request, kept in the device's partial list.
    Partial,
    /// A non-last request that was not kept: the device has no fault
    /// parameter, or its partial list is full. Nothing is to be answered.
    Dropped,
    /// The last request formed this group, now pending: the caller handles
    /// it and then calls [`IopfQueue::respond`] with its id.
    Group(FaultGroup),
    /// The last request was answered at once (no fault parameter for the
    /// device: INVALID; pending bound reached: FAILURE); the caller sends
    /// this response.
    Respond(Response),
}

/// Per-device bounds on what page requests can make the queue allocate
/// (see the module docs for what happens beyond them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IopfLimits {
    /// Partial requests kept per device.
    pub max_partial: usize,
    /// Pending groups per device.
    pub max_pending: usize,
}

impl Default for IopfLimits {
    fn default() -> Self {
        Self { max_partial: DEFAULT_MAX_PARTIAL, max_pending: DEFAULT_MAX_PENDING }
    }
}

/// A device's fault parameter (Linux's `iommu_fault_param`).
#[derive(Debug, Default)]
struct DeviceFaults {
    /// Non-last requests in arrival order.
    partial: Vec<Fault>,
    /// Pending groups, in the order they were reported.
    pending: BTreeMap<GroupId, FaultGroup>,
}

/// An IOPF queue: the devices added to it and their partial and pending
/// page requests (Linux's `iopf_queue` with each device's fault parameter).
#[derive(Debug, Default)]
pub struct IopfQueue {
    limits: IopfLimits,
    devices: BTreeMap<DeviceId, DeviceFaults>,
    /// The device of every pending group.
    owner: BTreeMap<GroupId, DeviceId>,
    next_id: u64,
}

impl IopfQueue {
    /// An empty queue with the default bounds.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue with the given bounds.
    pub fn with_limits(limits: IopfLimits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// The bounds in force.
    pub fn limits(&self) -> IopfLimits {
        self.limits
    }

    /// Creates the fault parameter of `dev` (`iopf_queue_add_device`).
    ///
    /// # Errors
    /// [`Errno::Busy`] if `dev` is already on the queue.
    pub fn add_device(&mut self, dev: DeviceId) -> Result<(), Errno> {
        if self.devices.contains_key(&dev) {
            return Err(Errno::Busy);
        }
        self.devices.insert(dev, DeviceFaults::default());
        Ok(())
    }

    /// Whether `dev` is on the queue.
    pub fn contains(&self, dev: DeviceId) -> bool {
        self.devices.contains_key(&dev)
    }

    /// Removes `dev` (`iopf_queue_remove_device`): its partial requests are
    /// dropped and every pending group is answered INVALID (the responses,
    /// in report order, are for the caller to send). The caller has
    /// disabled PRI and drained the hardware queue first, so nothing of
    /// `dev` arrives afterwards. Nothing happens for a device not on the
    /// queue.
    #[must_use = "the INVALID responses must be sent"]
    pub fn remove_device(&mut self, dev: DeviceId) -> Vec<Response> {
        let Some(d) = self.devices.remove(&dev) else { return Vec::new() };
        d.pending
            .into_values()
            .map(|g| {
                self.owner.remove(&g.id);
                g.response(ResponseCode::Invalid)
            })
            .collect()
    }

    /// Takes one fault (`iommu_report_device_fault`, semantics §4.9). A
    /// non-last request is kept as partial; a last request forms a pending
    /// group with the partial requests of the same PASID and group index.
    /// Requests of a device not on the queue, and requests beyond the
    /// bounds, are handled as [`Report`] and the module docs describe.
    pub fn report(&mut self, fault: Fault) -> Report {
        let Some(d) = self.devices.get_mut(&fault.dev) else {
            // No fault parameter: a page request is answered INVALID at once.
            return if fault.last {
                Report::Respond(Response::to(&fault, ResponseCode::Invalid))
            } else {
                Report::Dropped
            };
        };
        if !fault.last {
            if d.partial.len() >= self.limits.max_partial {
                return Report::Dropped;
            }
            d.partial.push(fault);
            return Report::Partial;
        }
        let same_group = |f: &Fault| f.pasid == fault.pasid && f.grpid == fault.grpid;
        let mut faults: Vec<Fault> = d.partial.iter().copied().filter(same_group).collect();
        d.partial.retain(|f| !same_group(f));
        if d.pending.len() >= self.limits.max_pending {
            // The abort group of §4.9: its partials are gone, the device is
            // told the handling failed.
            return Report::Respond(Response::to(&fault, ResponseCode::Failure));
        }
        faults.push(fault);
        let id = GroupId(self.next_id);
        // A u64 counter does not wrap in practice; wrapping keeps this
        // panic-free regardless.
        self.next_id = self.next_id.wrapping_add(1);
        let group = FaultGroup { id, dev: fault.dev, pasid: fault.pasid, grpid: fault.grpid, faults };
        d.pending.insert(id, group.clone());
        self.owner.insert(id, fault.dev);
        Report::Group(group)
    }

    /// Answers the pending group `id` with `code` (`iopf_group_response`):
    /// yields the response to send and unlinks the group. Idempotent:
    /// `None` once the group was answered, flushed or its device removed.
    #[must_use = "the response must be sent"]
    pub fn respond(&mut self, id: GroupId, code: ResponseCode) -> Option<Response> {
        let dev = self.owner.remove(&id)?;
        let group = self.devices.get_mut(&dev)?.pending.remove(&id)?;
        Some(group.response(code))
    }

    /// Drops every partial request of every device without answering
    /// (`iopf_queue_discard_partial`): after a page request queue overflow
    /// the hardware may have lost requests of any open group, so those
    /// groups can never complete (semantics §5.9 #58).
    pub fn discard_partial(&mut self) {
        for d in self.devices.values_mut() {
            d.partial.clear();
        }
    }

    /// Answers INVALID to every pending group of (`dev`, `pasid`) and drops
    /// its partial requests (`pasid` `None` selects the requests without
    /// PASID). Called before a PASID is reused or when its attachment goes
    /// (semantics L7/L8, §4.4 step 3): once this returns, no response for
    /// that PASID comes out of the queue (§5.9 #59). The responses, in
    /// report order, are for the caller to send.
    #[must_use = "the INVALID responses must be sent"]
    pub fn flush_pasid(&mut self, dev: DeviceId, pasid: Option<Pasid>) -> Vec<Response> {
        let Some(d) = self.devices.get_mut(&dev) else { return Vec::new() };
        d.partial.retain(|f| f.pasid != pasid);
        let ids: Vec<GroupId> = d.pending.values().filter(|g| g.pasid == pasid).map(|g| g.id).collect();
        ids.into_iter()
            .filter_map(|id| {
                self.owner.remove(&id);
                d.pending.remove(&id).map(|g| g.response(ResponseCode::Invalid))
            })
            .collect()
    }

    /// The pending groups of `dev`, in report order.
    pub fn pending(&self, dev: DeviceId) -> impl Iterator<Item = &FaultGroup> + '_ {
        self.devices.get(&dev).into_iter().flat_map(|d| d.pending.values())
    }

    /// The pending group `id`, if it is still pending.
    pub fn group(&self, id: GroupId) -> Option<&FaultGroup> {
        let dev = self.owner.get(&id)?;
        self.devices.get(dev)?.pending.get(&id)
    }

    /// Number of partial requests kept for `dev`.
    pub fn partial_count(&self, dev: DeviceId) -> usize {
        self.devices.get(&dev).map_or(0, |d| d.partial.len())
    }
}

impl FaultGroup {
    /// The last request (the one that closed the group).
    pub fn last(&self) -> Option<&Fault> {
        self.faults.last()
    }

    /// The response to this group: the last request's PASID, group index
    /// and private data (semantics §4.9).
    fn response(&self, code: ResponseCode) -> Response {
        let private = self.last().map_or([0; 2], |f| f.private);
        Response { dev: self.dev, pasid: self.pasid, grpid: self.grpid, code, private }
    }
}
