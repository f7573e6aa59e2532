//! The page request queue, VT-d §7.5: page requests from PRI-capable
//! devices are written into a circular queue in memory; PQH/PQT/PQA/PRS
//! and the page-request event report them.

use std::sync::atomic::Ordering;

use iommu_format::vtd::fault::FaultReason;
use iommu_format::vtd::inv_desc::ResponseCode;
use iommu_format::vtd::page_req::PageRequest;
use iommu_format::vtd::regs::{prs, Pqa, TableMode};
use iommu_types::{Access, Hpa, InterruptSink, PhysMem};
use iommu_walk::vtd::context::Context;

use super::translate::{Request, TE_BIT};
use super::{PageGroupResponse, VtdUnit};

/// What became of a page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrqOutcome {
    /// Written into the page request queue.
    Queued,
    /// The queue was full (PRS.PRO set); for a last-in-group request the
    /// unit answered itself.
    Overflow,
    /// Refused: translation off, no scalable context, PRE clear, or the
    /// queue unreadable; a fault was recorded and the unit answered
    /// INVALID for a last-in-group request.
    Refused(FaultReason),
}

const DESC: u64 = 32;

impl<M: PhysMem, I: InterruptSink> VtdUnit<M, I> {
    /// A device's page request (PCIe Page Request Message), VT-d §7.5.1.
    pub fn page_request(&self, req: &PageRequest) -> PrqOutcome {
        let active = self.active.load(Ordering::Acquire);
        let dma_req = Request {
            sid: req.rid,
            pasid: req.pasid,
            addr: req.addr,
            access: Access { read: req.read, write: req.write, exec: req.exec, privileged: req.privileged },
        };
        let refuse = |reason: FaultReason| {
            self.record_fault(&dma_req, reason);
            if req.lpig {
                self.respond_hw(req, ResponseCode::InvalidRequest);
            }
            PrqOutcome::Refused(reason)
        };
        if active & TE_BIT == 0 || TableMode::from_bits(active >> 10) != TableMode::Scalable {
            return refuse(FaultReason::LegacyModePageRequest);
        }
        match self.context(req.rid, active) {
            Ok(Context::Scalable(c)) if c.pre => {}
            Ok(_) => return refuse(FaultReason::SmPreClear),
            Err(f) => return refuse(f.reason),
        }
        let mut r = self.regs();
        let pqa = Pqa([r.pqa]);
        let size = 4096u64 << pqa.get(Pqa::PQS);
        let tail = r.pqt & (size - 1) & !(DESC - 1);
        let next = (tail + DESC) % size;
        if r.prs & prs::PRO != 0 || next == r.pqh & (size - 1) {
            r.prs |= prs::PRO;
            drop(r);
            if req.lpig && self.cfg.choices.overflow_response_success {
                self.respond_hw(req, ResponseCode::Success);
            }
            return PrqOutcome::Overflow;
        }
        let base = pqa.get_in_place(Pqa::PQA);
        if self.mem.write(Hpa::new(base.wrapping_add(tail)), &req.encode().to_bytes()).is_err() {
            drop(r);
            return refuse(FaultReason::SmRootTableInvalid);
        }
        r.pqt = next;
        r.prs |= prs::PPR;
        r.prq_event.signal(&self.irq);
        self.stats.page_requests.fetch_add(1, Ordering::Relaxed);
        PrqOutcome::Queued
    }

    fn respond_hw(&self, req: &PageRequest, code: ResponseCode) {
        self.push_response(PageGroupResponse {
            rid: req.rid,
            pasid: req.pasid,
            prgi: req.prgi,
            code,
            by_hardware: true,
        });
    }
}
