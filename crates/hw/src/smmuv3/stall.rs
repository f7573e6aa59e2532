//! The stall model (SMMUv3 §3.12.2): a translation-class fault on a
//! stream that stalls (CD.S, or STE.S2S for stage 2; not with
//! STE.S1STALLD) holds the transaction and records the event with Stall =
//! 1 and a STAG. CMD_RESUME retries or terminates that transaction;
//! CMD_STALL_TERM terminates every stalled transaction of a stream. The
//! device learns the outcome through [`Smmu::take_resume`]. At most
//! [`MAX_STALLED`] transactions are held; beyond that faults terminate.

use iommu_types::{InterruptSink, PhysMem, StreamId};

use super::Smmu;

/// Largest number of transactions held stalled at once.
pub const MAX_STALLED: usize = 256;

impl<M: PhysMem, I: InterruptSink> Smmu<M, I> {
    /// Holds a transaction of `sid`: a fresh STAG, or `None` when full.
    pub(super) fn stall(&self, sid: StreamId) -> Option<u16> {
        let mut d = self.device_side();
        if d.stalled.len() >= MAX_STALLED {
            return None;
        }
        let mut stag = d.next_stag;
        while d.stalled.iter().any(|&(_, t)| t == stag) {
            stag = stag.wrapping_add(1);
        }
        d.next_stag = stag.wrapping_add(1);
        d.stalled.push((sid.0, stag));
        Some(stag)
    }

    /// Releases a stall that was never reported.
    pub(super) fn unstall(&self, sid: StreamId, stag: u16) {
        self.device_side().stalled.retain(|&s| s != (sid.0, stag));
    }

    /// CMD_RESUME: resumes (retry) or terminates the stalled transaction;
    /// ignored when no such transaction is stalled.
    pub(super) fn resume(&self, sid: StreamId, stag: u16, retry: bool) {
        let mut d = self.device_side();
        if let Some(i) = d.stalled.iter().position(|&s| s == (sid.0, stag)) {
            d.stalled.swap_remove(i);
            d.resumed.push_back((sid.0, stag, retry));
        }
    }

    /// CMD_STALL_TERM: terminates every stalled transaction of `sid`.
    pub(super) fn stall_term(&self, sid: StreamId) {
        let mut d = self.device_side();
        let mut i = 0;
        while i < d.stalled.len() {
            if d.stalled[i].0 == sid.0 {
                let (_, stag) = d.stalled.swap_remove(i);
                d.resumed.push_back((sid.0, stag, false));
            } else {
                i += 1;
            }
        }
    }

    /// For the device: whether its stalled transaction `stag` has been
    /// resumed, and if so whether to retry it (`Some(true)`) or treat it as
    /// aborted (`Some(false)`); `None` while it is still stalled or unknown.
    pub fn take_resume(&self, sid: StreamId, stag: u16) -> Option<bool> {
        let mut d = self.device_side();
        let i = d.resumed.iter().position(|&(s, t, _)| s == sid.0 && t == stag)?;
        d.resumed.remove(i).map(|(_, _, retry)| retry)
    }

    /// Number of transactions currently stalled.
    pub fn stalled_count(&self) -> usize {
        self.device_side().stalled.len()
    }
}
