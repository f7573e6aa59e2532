//! A PCIe endpoint with ATS and PRI behind an SMMU, the device side of SVA
//! (PCIe ATS; SMMUv3 §3.9 and chapter 8): it looks a page up in its ATC,
//! sends a translation request on a miss, and when the page is not
//! accessible sends a page request and waits for the PRG response before
//! retrying. Plain DMA goes through [`Smmu::dma_write`] / `dma_read`.

use iommu_format::smmuv3::cmd::PriResponse;
use iommu_format::smmuv3::pri::PageRequest;
use iommu_types::{Access, Hpa, InterruptSink, PhysMem, StreamId, SubstreamId};

use super::{AtsCompletion, PriOutcome, Smmu};

/// What one page-sized access of an endpoint came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointAccess {
    /// Done at this physical address.
    Done(Hpa),
    /// The page was not accessible: a page request went out with this
    /// PRG index; retry after its response.
    PageRequested(u16),
    /// The SMMU did not queue the page request.
    RequestRefused(PriOutcome),
    /// The translation request was answered with Unsupported Request, or
    /// memory failed.
    Failed,
}

/// An ATS/PRI endpoint with StreamID `sid`.
#[derive(Debug, Clone)]
pub struct AtsEndpoint {
    sid: StreamId,
    next_grpid: u16,
}

impl AtsEndpoint {
    /// An endpoint with StreamID `sid`.
    pub fn new(sid: StreamId) -> Self {
        Self { sid, next_grpid: 0 }
    }

    /// Its StreamID.
    pub fn sid(&self) -> StreamId {
        self.sid
    }

    /// Translates `addr` for `access`: from the ATC, else by a translation
    /// request, else by sending a page request (PRG of one request, Last set).
    pub fn translate<M: PhysMem, I: InterruptSink>(
        &mut self,
        smmu: &Smmu<M, I>,
        ssid: Option<SubstreamId>,
        addr: u64,
        access: Access,
    ) -> EndpointAccess {
        if let Some(pa) = smmu.atc_lookup(self.sid, ssid, addr, access) {
            return EndpointAccess::Done(Hpa::new(pa));
        }
        match smmu.ats_translate(self.sid, ssid, addr) {
            AtsCompletion::Translated { pa, read, write } if (!access.read || read) && (!access.write || write) => {
                EndpointAccess::Done(Hpa::new(pa | (addr & 0xFFF)))
            }
            AtsCompletion::Translated { .. } | AtsCompletion::NoAccess => {
                let grpid = self.next_grpid;
                self.next_grpid = (self.next_grpid + 1) & 0x1FF;
                let req = PageRequest {
                    sid: self.sid,
                    ssid,
                    addr: addr & !0xFFF,
                    read: access.read || !access.write,
                    write: access.write,
                    exec: false,
                    privileged: false,
                    last: true,
                    grpid,
                };
                match smmu.page_request(&req) {
                    PriOutcome::Queued => EndpointAccess::PageRequested(grpid),
                    other => EndpointAccess::RequestRefused(other),
                }
            }
            AtsCompletion::Unsupported => EndpointAccess::Failed,
        }
    }

    /// Writes `data` (within one page) at `addr` with translated requests.
    pub fn write<M: PhysMem, I: InterruptSink>(
        &mut self,
        smmu: &Smmu<M, I>,
        ssid: Option<SubstreamId>,
        addr: u64,
        data: &[u8],
    ) -> EndpointAccess {
        match self.translate(smmu, ssid, addr, Access::WRITE) {
            EndpointAccess::Done(h) => match smmu.mem().write(h, data) {
                Ok(()) => EndpointAccess::Done(h),
                Err(_) => EndpointAccess::Failed,
            },
            other => other,
        }
    }

    /// Reads `buf.len()` bytes (within one page) at `addr` with translated
    /// requests.
    pub fn read<M: PhysMem, I: InterruptSink>(
        &mut self,
        smmu: &Smmu<M, I>,
        ssid: Option<SubstreamId>,
        addr: u64,
        buf: &mut [u8],
    ) -> EndpointAccess {
        match self.translate(smmu, ssid, addr, Access::READ) {
            EndpointAccess::Done(h) => match smmu.mem().read(h, buf) {
                Ok(()) => EndpointAccess::Done(h),
                Err(_) => EndpointAccess::Failed,
            },
            other => other,
        }
    }

    /// The response to page request group `grpid`, if it has arrived
    /// (responses to other groups stay queued for later calls).
    pub fn response<M: PhysMem, I: InterruptSink>(&self, smmu: &Smmu<M, I>, grpid: u16) -> Option<PriResponse> {
        let mut found = None;
        for r in smmu.take_prg_responses(self.sid) {
            if r.grpid == grpid && found.is_none() {
                found = Some(r.resp);
            } else {
                smmu.deliver(r);
            }
        }
        found
    }
}
