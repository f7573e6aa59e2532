//! The event queue (SMMUv3 §7.2, §7.4): records are written at
//! EVENTQ_PROD; a full queue discards the record and signals overflow by
//! toggling EVENTQ_PROD.OVFLG (once, until software acknowledges with
//! EVENTQ_CONS.OVACKFLG); an external abort writing a record activates
//! GERROR.EVENTQ_ABT_ERR; with EVENTQEN = 0 records are discarded silently.

use iommu_format::smmuv3::event::Event;
use iommu_types::{Hpa, InterruptSink, PhysMem};

use super::regfile::{gerror, Queue, OVFLG};
use super::Smmu;

impl<M: PhysMem, I: InterruptSink> Smmu<M, I> {
    /// Writes `e` to the event queue. Returns whether it was recorded.
    pub(super) fn record_event(&self, e: &Event) -> bool {
        let mut r = self.regs();
        if !r.eventq_enabled() {
            return false;
        }
        let q = r.eventq;
        let log2 = q.log2(self.config.eventq_max());
        let (p, c) = (q.prod, q.cons);
        if q.full(log2) {
            // Full: discard, and flag an overflow unless one is already
            // flagged and not yet acknowledged.
            if p & OVFLG == c & OVFLG {
                r.eventq.prod ^= OVFLG;
            }
            return false;
        }
        let addr = q.addr(32, log2) + 32 * (p & ((1u32 << log2) - 1)) as u64;
        if self.mem.write(Hpa::new(addr), &e.encode().to_bytes()).is_err() {
            r.activate_gerror(gerror::EVENTQ_ABT_ERR);
            return false;
        }
        r.eventq.prod = Queue::next(p, log2);
        self.events_recorded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    }
}
