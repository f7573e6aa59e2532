//! I/O page faults from an SMMUv3 (semantics §4.9): PCIe page requests
//! from the PRI queue (SMMUv3 §8), answered with CMD_PRI_RESP, and stalled
//! transactions from the event queue (§3.12.2), answered with CMD_RESUME.

use iommu_format::smmuv3::cmd::{Command, PriResponse, ResumeAction};
use iommu_format::smmuv3::event::{Event, EventRecord};
use iommu_format::smmuv3::pri::{PageRequest, PriEntry};
use iommu_format::smmuv3::regs::{offset as o, QueueIndex};
use iommu_types::{Access, Hpa, Iova, Pasid, PhysMem, RegisterBus, SourceId, StreamId, SubstreamId, Width};

use super::{SmmuDriver, MAX_KEPT_EVENTS};
use crate::driver::FaultBatch;
use crate::iopf::{Fault, Response, ResponseCode};
use crate::pasid::DeviceId;
use crate::Errno;

impl<B: RegisterBus> SmmuDriver<B> {
    /// Page requests since the last call, then stalled faults; other
    /// events are kept for [`SmmuDriver::events`]. Requests from unknown
    /// StreamIDs, and stalls of masters that do not use the stall model,
    /// are answered at once (deny / terminate).
    pub(super) fn take_iopf(
        &mut self,
        mem: &dyn PhysMem,
        lookup: &dyn Fn(SourceId) -> Option<DeviceId>,
    ) -> Result<FaultBatch, Errno> {
        let mut batch = FaultBatch::default();
        let mut answers = Vec::new();
        if let Some(q) = self.priq {
            let prod = QueueIndex::from_words([self.r(o::PRIQ_PROD, Width::W32)?]);
            let mut cons = q.ptr;
            while cons.pointer(q.log2) != prod.pointer(q.log2) {
                let mut b = [0u8; 16];
                let at = Hpa::new(q.base.raw() + 16 * cons.index(q.log2) as u64);
                mem.read(at, &mut b).map_err(|_| Errno::Fault)?;
                let req = PageRequest::decode(&PriEntry::from_bytes(&b));
                cons = cons.incremented(q.log2);
                if req.is_stop_marker() {
                    continue;
                }
                let known = u16::try_from(req.sid.0).ok().and_then(|s| lookup(SourceId::new(s)));
                match known {
                    Some(dev) => batch.faults.push(fault_of(dev, &req)),
                    None if req.last => answers.push(Command::PriResp {
                        sid: req.sid,
                        ssid: req.ssid,
                        grpid: req.grpid,
                        resp: PriResponse::InvalidRequest,
                    }),
                    None => {}
                }
            }
            // Overflow (§8.2): PROD.OVFLG differs from what CONS acknowledged.
            batch.overflow = prod.get(QueueIndex::OVFLG) != q.ptr.get(QueueIndex::OVFLG);
            let mut ack = cons;
            ack.set(QueueIndex::OVFLG, q.ptr.get(QueueIndex::OVFLG));
            self.priq = Some(super::Queue { ptr: ack, ..q });
            self.w(o::PRIQ_CONS, Width::W32, ack.words()[0])?;
        }
        for e in self.read_events(mem)? {
            let stalling = self.masters.get(&e.sid.0).is_some_and(|m| m.stall);
            let known = u16::try_from(e.sid.0).ok().and_then(|s| lookup(SourceId::new(s)));
            match (e.stall, stalling, known) {
                (true, true, Some(dev)) => batch.faults.push(Fault {
                    dev,
                    pasid: e.ssid.map(|s| Pasid::new(s.raw())),
                    addr: Iova::new(e.input_addr & !0xFFF),
                    access: Access { read: e.read, write: !e.read, exec: e.instruction, privileged: e.privileged },
                    last: true,
                    grpid: e.stag,
                    private: [0, 0],
                }),
                (true, _, _) => answers.push(Command::Resume {
                    sid: e.sid,
                    stag: e.stag,
                    action: ResumeAction::Terminate { abort: true },
                }),
                (false, _, _) => self.keep_event(e),
            }
        }
        if !answers.is_empty() {
            self.submit(mem, &answers)?;
        }
        Ok(batch)
    }

    /// Keeps a non-fault event for inspection.
    fn keep_event(&mut self, e: Event) {
        if self.events.len() == MAX_KEPT_EVENTS {
            self.events.remove(0);
        }
        self.events.push(e);
    }

    /// Reads the event queue up to EVENTQ_PROD (§7.2, §7.4: overflow is
    /// acknowledged by copying OVFLG into CONS).
    fn read_events(&mut self, mem: &dyn PhysMem) -> Result<Vec<Event>, Errno> {
        let q = self.evtq;
        let prod = QueueIndex::from_words([self.r(o::EVENTQ_PROD, Width::W32)?]);
        let mut cons = q.ptr;
        let mut out = Vec::new();
        while cons.pointer(q.log2) != prod.pointer(q.log2) {
            let mut b = [0u8; 32];
            mem.read(Hpa::new(q.base.raw() + 32 * cons.index(q.log2) as u64), &mut b).map_err(|_| Errno::Fault)?;
            if let Some(e) = EventRecord::from_bytes(&b).decode() {
                out.push(e);
            }
            cons = cons.incremented(q.log2);
        }
        cons.set(QueueIndex::OVFLG, prod.get(QueueIndex::OVFLG));
        self.evtq.ptr = cons;
        self.w(o::EVENTQ_CONS, Width::W32, cons.words()[0])?;
        Ok(out)
    }

    /// Re-arms the PRI queue after an overflow: CONS.OVACKFLG takes
    /// PROD.OVFLG (§8.2).
    pub(super) fn ack_pri_overflow(&mut self) -> Result<(), Errno> {
        let Some(mut q) = self.priq else { return Ok(()) };
        let prod = QueueIndex::from_words([self.r(o::PRIQ_PROD, Width::W32)?]);
        q.ptr.set(QueueIndex::OVFLG, prod.get(QueueIndex::OVFLG));
        self.priq = Some(q);
        self.w(o::PRIQ_CONS, Width::W32, q.ptr.words()[0])
    }

    /// Answers a fault: CMD_RESUME for a stall-model master (retry on
    /// success, abort otherwise), CMD_PRI_RESP for a PCIe one (semantics
    /// §3.5: no CMD_SYNC is needed after either; one is issued anyway by
    /// [`SmmuDriver::submit`]).
    pub(super) fn respond(&mut self, mem: &dyn PhysMem, sid: u32, r: &Response) -> Result<(), Errno> {
        let stall = self.masters.get(&sid).is_some_and(|m| m.stall);
        let cmd = if stall {
            let action = match r.code {
                ResponseCode::Success => ResumeAction::Retry,
                ResponseCode::Invalid | ResponseCode::Failure => ResumeAction::Terminate { abort: true },
            };
            Command::Resume { sid: StreamId(sid), stag: r.grpid, action }
        } else {
            let resp = match r.code {
                ResponseCode::Success => PriResponse::Success,
                ResponseCode::Invalid => PriResponse::InvalidRequest,
                ResponseCode::Failure => PriResponse::ResponseFailure,
            };
            let ssid = r.pasid.and_then(|p| SubstreamId::try_new(p.raw()).ok());
            Command::PriResp { sid: StreamId(sid), ssid, grpid: r.grpid, resp }
        };
        self.submit(mem, &[cmd])
    }
}

/// The IOPF core's view of a page request.
fn fault_of(dev: DeviceId, r: &PageRequest) -> Fault {
    Fault {
        dev,
        pasid: r.ssid.map(|s| Pasid::new(s.raw())),
        addr: Iova::new(r.addr & !0xFFF),
        access: Access { read: r.read, write: r.write, exec: r.exec, privileged: r.privileged },
        last: r.last,
        grpid: r.grpid,
        private: [0, 0],
    }
}
