//! Primary fault logging, VT-d §7.2.1 (fault recording registers, FSTS) and
//! fault events, §7.3.

use std::sync::atomic::Ordering;

use iommu_format::vtd::fault::{FaultAccess, FaultInfo, FaultReason};
use iommu_format::vtd::regs::fsts;
use iommu_types::{InterruptSink, Iova, PhysMem};

use super::{Regs, Request, VtdUnit};

impl<M: PhysMem, I: InterruptSink> VtdUnit<M, I> {
    /// Records a fault for `req` in the next fault recording register.
    /// Returns false when the log overflowed (the register to write still
    /// holds an unserviced fault: FSTS.PFO is set and the fault is dropped).
    pub(super) fn record_fault(&self, req: &Request, reason: FaultReason) -> bool {
        let info = FaultInfo {
            reason,
            source_id: req.sid,
            addr: Iova::new(req.addr.raw() & !0xFFF),
            access: if req.access.write { FaultAccess::Write } else { FaultAccess::Read },
            pasid: req.pasid,
            privileged: req.access.privileged,
            exec: req.access.exec,
        };
        let mut r = self.regs();
        let i = r.fr_next % r.frcd.len();
        let recorded = if r.frcd[i][1] >> 63 != 0 {
            r.fsts |= fsts::PFO;
            false
        } else {
            r.frcd[i] = info.encode().words();
            r.fr_next = (i + 1) % r.frcd.len();
            true
        };
        let counter = if recorded { &self.stats.faults_recorded } else { &self.stats.faults_suppressed };
        counter.fetch_add(1, Ordering::Relaxed);
        // VT-d §7.3: a fault event, held pending (FECTL.IP) while masked.
        r.fault_event.signal(&self.irq);
        recorded
    }

    /// Index of the first fault recording register holding a fault, if any.
    pub(super) fn pending_fault_index(r: &Regs) -> Option<usize> {
        let n = r.frcd.len();
        (0..n).map(|k| (r.fr_next + k) % n).find(|&i| r.frcd[i][1] >> 63 != 0)
    }

    /// The FSTS value software reads: the write-1-to-clear bits plus PPF
    /// and FRI derived from the fault recording registers.
    pub(super) fn fsts_value(r: &Regs) -> u32 {
        match Self::pending_fault_index(r) {
            Some(i) => r.fsts | fsts::PPF | (i as u32) << fsts::FRI_SHIFT,
            None => r.fsts,
        }
    }
}
