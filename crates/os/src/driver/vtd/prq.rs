//! Page request queue consumer of the VT-d driver (VT-d §7.5 page requests,
//! §7.7.1 page group responses, §11.4.11 PQH/PQT/PQA/PRS).
//!
//! The unit writes each page request of a PRI-capable device as a 256-bit
//! descriptor (VT-d §7.5.1) at PQT and advances PQT; software consumes from
//! PQH and writes PQH back. PQH and PQT are byte offsets into the queue.
//! The driver set the queue up in `enable()` as one 4 KiB page (PQA.PQS = 0,
//! 128 descriptors).
//!
//! The flow, with [`crate::iopf`] between the two halves:
//!
//! 1. [`VtdDriver::take_page_requests`] consumes what the unit queued,
//!    answers or drops what the driver alone can judge (semantics §2.8,
//!    §5.9 #58), and returns the rest.
//! 2. The caller maps each request's RID to its device, converts it with
//!    [`Fault::from_vtd_request`] and reports it to the IOPF queue.
//! 3. If the batch says `overflow`, the caller discards the partial
//!    requests of the IOPF queue and only then calls
//!    [`VtdDriver::clear_prq_overflow`] (§5.9 #58).
//! 4. Each response of the IOPF queue goes back to the device through
//!    [`VtdDriver::page_response`].

use iommu_format::vtd::inv_desc::{InvDescriptor, ResponseCode as VtdResponseCode};
use iommu_format::vtd::page_req::{PageRequest, PageRequestDesc};
use iommu_format::vtd::regs::{offset as o, prs};
use iommu_types::{Access, Hpa, Pasid, PhysMem, RegisterBus, SourceId, Width};

use super::VtdDriver;
use crate::iopf::{Fault, ResponseCode};
use crate::pasid::DeviceId;
use crate::Errno;

/// Size of the page request queue `enable()` programs (PQA.PQS = 0: one
/// 4 KiB page), VT-d §11.4.11.3.
const PRQ_BYTES: u64 = 4096;
/// Size of one page request descriptor, VT-d §7.5.1.
const DESC_BYTES: u64 = 32;
/// Descriptors in the queue; no walk of the ring takes more steps.
const PRQ_SLOTS: u64 = PRQ_BYTES / DESC_BYTES;
/// The bits of PQH/PQT that can name a descriptor of this queue (the
/// registers hold a descriptor-aligned byte offset, VT-d §11.4.11.1-2);
/// anything else the registers hold is ignored.
const OFFSET_MASK: u64 = (PRQ_BYTES - 1) & !(DESC_BYTES - 1);
/// The largest page request group index (PRGI is 9 bits, VT-d §7.5.1).
const MAX_PRGI: u16 = 0x1FF;
/// Width of a canonical input address: the larger x86 virtual address
/// width (5-level paging), so no address a process can map is refused
/// here; an address beyond its own mm's width finds no mapping and is
/// answered INVALID by the handler.
const CANONICAL_BITS: u32 = 57;
/// How many of the driver's own responses go in one queue submission
/// (below the invalidation queue's 127-descriptor batch limit).
const RESPONSE_BATCH: usize = 32;

/// What one pass over the page request queue produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrqBatch {
    /// The requests for the IOPF core, in queue order.
    pub requests: Vec<PageRequest>,
    /// PRS.PRO was set: the unit dropped requests. The caller discards the
    /// IOPF queue's partial requests, then calls
    /// [`VtdDriver::clear_prq_overflow`].
    pub overflow: bool,
    /// Requests the driver answered INVALID itself.
    pub answered: usize,
    /// Requests dropped without an answer (stop markers, descriptors of an
    /// unknown type, bad requests that are not last in their group).
    pub dropped: usize,
    /// The first error submitting the driver's own responses, if any. The
    /// queue was consumed all the same; the requests above are complete.
    pub response_error: Option<Errno>,
}

/// What the driver does with one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Goes to the IOPF core.
    Report(PageRequest),
    /// Answered INVALID here.
    Answer(PageRequest),
    /// Dropped without an answer.
    Drop,
}

impl<B: RegisterBus> VtdDriver<B> {
    /// Consumes every descriptor between PQH and PQT (VT-d §7.5), in order:
    ///
    /// 1. PRS.PPR is cleared first (RW1C, VT-d §11.4.11.4), so a request
    ///    queued while this runs sets it again;
    /// 2. PQH and PQT are read and reduced to descriptor offsets inside the
    ///    queue, so a broken register value can neither index outside the
    ///    page nor make the walk longer than the ring;
    /// 3. each descriptor is judged (semantics §2.8 and §5.9 #58):
    ///    * a descriptor of another type: dropped;
    ///    * no PASID: answered INVALID if last in its group, else dropped;
    ///    * a stop marker (LPIG with neither read nor write): dropped, no
    ///      response;
    ///    * a non-canonical address, a privileged request to read or
    ///      write (supervisor requests are not supported), an execute
    ///      request with read, or a RID the driver does not manage with
    ///      PRI: answered INVALID if last, else dropped;
    ///    * anything else goes to the IOPF core;
    /// 4. PQH is written with PQT (the slots are free again);
    /// 5. the driver's own INVALID responses are submitted;
    /// 6. PRS.PRO is reported as `overflow`.
    ///
    /// A unit without a page request queue yields an empty batch.
    ///
    /// # Errors
    /// [`Errno::NoDev`] when a register cannot be accessed;
    /// [`Errno::Fault`] when the queue page cannot be read (PQH is then
    /// left unchanged and nothing was answered).
    pub fn take_page_requests(&mut self, mem: &dyn PhysMem) -> Result<PrqBatch, Errno> {
        let Some(base) = self.prq else { return Ok(PrqBatch::default()) };
        self.w(o::PRS, Width::W32, prs::PPR as u64)?;
        let head = self.r(o::PQH, Width::W64)? & OFFSET_MASK;
        let tail = self.r(o::PQT, Width::W64)? & OFFSET_MASK;
        let mut batch = PrqBatch::default();
        let mut answers = Vec::new();
        let mut at = head;
        for _ in 0..PRQ_SLOTS {
            if at == tail {
                break;
            }
            let mut bytes = [0u8; DESC_BYTES as usize];
            mem.read(Hpa::new(base.raw() + at), &mut bytes).map_err(|_| Errno::Fault)?;
            match self.judge(&PageRequestDesc::from_bytes(&bytes)) {
                Verdict::Report(req) => batch.requests.push(req),
                Verdict::Answer(req) => answers.push(invalid_response(&req)),
                Verdict::Drop => batch.dropped += 1,
            }
            at = (at + DESC_BYTES) % PRQ_BYTES;
        }
        self.w(o::PQH, Width::W64, tail)?;
        for chunk in answers.chunks(RESPONSE_BATCH) {
            match self.submit(mem, chunk) {
                Ok(()) => batch.answered += chunk.len(),
                Err(e) => {
                    batch.response_error.get_or_insert(e);
                }
            }
        }
        batch.overflow = self.r(o::PRS, Width::W32)? as u32 & prs::PRO != 0;
        Ok(batch)
    }

    /// The driver-level rules for one descriptor (see
    /// [`VtdDriver::take_page_requests`]).
    fn judge(&self, desc: &PageRequestDesc) -> Verdict {
        let Some(req) = desc.decode() else { return Verdict::Drop };
        let bad = |req: PageRequest| if req.lpig { Verdict::Answer(req) } else { Verdict::Drop };
        if req.pasid.is_none() {
            return bad(req);
        }
        if req.is_stop_marker() {
            return Verdict::Drop;
        }
        let canonical = {
            let shift = 64 - CANONICAL_BITS;
            ((req.addr.raw() << shift) as i64 >> shift) as u64 == req.addr.raw()
        };
        let supervisor = req.privileged && (req.read || req.write);
        let exec_read = req.exec && req.read;
        let managed = self.devices.get(&req.rid.raw()).is_some_and(|d| d.caps.pri);
        if !canonical || supervisor || exec_read || !managed {
            return bad(req);
        }
        Verdict::Report(req)
    }

    /// Clears PRS.PRO (RW1C, VT-d §11.4.11.4) so the unit queues page
    /// requests again. Semantics §5.9 #58: call it only after the queue
    /// was emptied ([`VtdDriver::take_page_requests`]) and the IOPF
    /// queue's partial requests were discarded. Nothing to do without a
    /// page request queue.
    ///
    /// # Errors
    /// [`Errno::Busy`] while the queue still holds requests (PQH ≠ PQT):
    /// take them first; [`Errno::NoDev`] when a register cannot be
    /// accessed.
    pub fn clear_prq_overflow(&mut self) -> Result<(), Errno> {
        if self.prq.is_none() {
            return Ok(());
        }
        let head = self.r(o::PQH, Width::W64)? & OFFSET_MASK;
        let tail = self.r(o::PQT, Width::W64)? & OFFSET_MASK;
        if head != tail {
            return Err(Errno::Busy);
        }
        self.w(o::PRS, Width::W32, prs::PRO as u64)
    }

    /// Answers one page request group of device `rid`: a page group
    /// response descriptor (VT-d §7.7.1) with LPIG set, the group's PASID
    /// and index, `code` (SUCCESS → 0000b, INVALID → 0001b, FAILURE →
    /// 1111b) and, when given, the private data; submitted through the
    /// invalidation queue and logged.
    ///
    /// # Errors
    /// [`Errno::Inval`] for a group index wider than 9 bits; queue errors
    /// from [`VtdDriver::submit`].
    pub fn page_response(
        &mut self,
        mem: &dyn PhysMem,
        rid: SourceId,
        pasid: Option<Pasid>,
        prgi: u16,
        code: ResponseCode,
        private: Option<[u64; 2]>,
    ) -> Result<(), Errno> {
        if prgi > MAX_PRGI {
            return Err(Errno::Inval);
        }
        let desc = InvDescriptor::PageGroupResponse { rid, pasid, code: vtd_code(code), lpig: true, prgi, private };
        self.submit(mem, &[desc])
    }
}

/// The VT-d response code for an IOPF response code (VT-d §7.7.1).
fn vtd_code(code: ResponseCode) -> VtdResponseCode {
    match code {
        ResponseCode::Success => VtdResponseCode::Success,
        ResponseCode::Invalid => VtdResponseCode::InvalidRequest,
        ResponseCode::Failure => VtdResponseCode::ResponseFailure,
    }
}

/// The driver's own INVALID answer to a request it will not report.
fn invalid_response(req: &PageRequest) -> InvDescriptor {
    InvDescriptor::PageGroupResponse {
        rid: req.rid,
        pasid: req.pasid,
        code: VtdResponseCode::InvalidRequest,
        lpig: true,
        prgi: req.prgi,
        private: None,
    }
}

impl Fault {
    /// The fault a VT-d page request (VT-d §7.5.1) of device `dev` reports:
    /// PASID, page address, access (RD, WR, EXE, PMR), LPIG as `last`,
    /// PRGI as the group index and the private data.
    pub fn from_vtd_request(dev: DeviceId, req: &PageRequest) -> Self {
        Self {
            dev,
            pasid: req.pasid,
            addr: req.addr,
            access: Access { read: req.read, write: req.write, exec: req.exec, privileged: req.privileged },
            last: req.lpig,
            grpid: req.prgi,
            private: req.private,
        }
    }
}
