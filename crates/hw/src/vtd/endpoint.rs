//! A PCIe endpoint with ATS and PRI, the device side of SVA (PCIe ATS §10,
//! PRI §10.4): it looks a page up in its device TLB, asks the unit for a
//! translation on a miss, and when the page is not accessible sends a page
//! request and waits for the page group response before retrying. Plain
//! (non-ATS) DMA goes through [`VtdUnit::dma_write`] / `dma_read`.

use iommu_format::vtd::inv_desc::ResponseCode;
use iommu_format::vtd::page_req::PageRequest;
use iommu_types::{Access, Hpa, InterruptSink, Iova, Pasid, PhysMem, SourceId};

use super::{AtsCompletion, PrqOutcome, VtdUnit};

/// What one page-sized DMA of an endpoint came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointDma {
    /// Done at this host-physical address.
    Done(Hpa),
    /// The page was not accessible: a page request went out with this
    /// group index; retry after its response.
    PageRequested(u16),
    /// The unit refused to queue the page request.
    RequestRefused(PrqOutcome),
    /// The unit answered the translation request with Unsupported Request
    /// (a fault was recorded), or memory failed.
    Failed,
}

/// An ATS/PRI endpoint with requester ID `sid`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    sid: SourceId,
    next_prgi: u16,
}

impl Endpoint {
    /// An endpoint with requester ID `sid`.
    pub fn new(sid: SourceId) -> Self {
        Self { sid, next_prgi: 0 }
    }

    /// Its requester ID.
    pub fn sid(&self) -> SourceId {
        self.sid
    }

    fn translate<M: PhysMem, I: InterruptSink>(
        &mut self,
        unit: &VtdUnit<M, I>,
        pasid: Option<Pasid>,
        addr: Iova,
        access: Access,
    ) -> EndpointDma {
        if let Some(hpa) = unit.device_tlb_lookup(self.sid, pasid, addr, access) {
            return EndpointDma::Done(hpa);
        }
        match unit.ats_translate(self.sid, pasid, addr, access) {
            AtsCompletion::Translated { frame, size, perm } if perm.allows(access) => {
                EndpointDma::Done(Hpa::new(frame.raw() | (addr.raw() & (size.bytes() - 1))))
            }
            AtsCompletion::Translated { .. } | AtsCompletion::NoAccess => {
                let prgi = self.next_prgi;
                self.next_prgi = (self.next_prgi + 1) & 0x1FF;
                let req = PageRequest {
                    rid: self.sid,
                    pasid,
                    addr: Iova::new(addr.raw() & !0xFFF),
                    read: access.read || !access.write,
                    write: access.write,
                    exec: false,
                    privileged: false,
                    lpig: true,
                    prgi,
                    private: [0, 0],
                };
                match unit.page_request(&req) {
                    PrqOutcome::Queued => EndpointDma::PageRequested(prgi),
                    other => EndpointDma::RequestRefused(other),
                }
            }
            AtsCompletion::Unsupported(_) => EndpointDma::Failed,
        }
    }

    /// Writes `data` (within one 4 KiB page) at `addr`.
    pub fn write<M: PhysMem, I: InterruptSink>(
        &mut self,
        unit: &VtdUnit<M, I>,
        pasid: Option<Pasid>,
        addr: Iova,
        data: &[u8],
    ) -> EndpointDma {
        let r = self.translate(unit, pasid, addr, Access::WRITE);
        match r {
            EndpointDma::Done(hpa) if unit.mem().write(hpa, data).is_err() => EndpointDma::Failed,
            other => other,
        }
    }

    /// Reads `buf.len()` bytes (within one 4 KiB page) at `addr`.
    pub fn read<M: PhysMem, I: InterruptSink>(
        &mut self,
        unit: &VtdUnit<M, I>,
        pasid: Option<Pasid>,
        addr: Iova,
        buf: &mut [u8],
    ) -> EndpointDma {
        let r = self.translate(unit, pasid, addr, Access::READ);
        match r {
            EndpointDma::Done(hpa) if unit.mem().read(hpa, buf).is_err() => EndpointDma::Failed,
            other => other,
        }
    }

    /// The response to page request group `prgi`, if it arrived. The
    /// endpoint keeps one request outstanding at a time: responses to other
    /// groups are consumed and ignored.
    pub fn response<M: PhysMem, I: InterruptSink>(&self, unit: &VtdUnit<M, I>, prgi: u16) -> Option<ResponseCode> {
        let all = unit.take_responses(self.sid);
        let mut found = None;
        for r in all {
            if r.prgi == prgi && found.is_none() {
                found = Some(r.code);
            }
        }
        found
    }
}
