//! The command queue (SMMUv3 §4, §7.1): commands are consumed from
//! CMDQ_CONS up to CMDQ_PROD while CMDQEN is set and no command error is
//! active. A command that cannot be read (CERROR_ABT) or is ILLEGAL
//! (CERROR_ILL: an unknown opcode, a reserved field value, SSec on this
//! Non-secure queue, or a command for a feature this SMMU lacks) stops
//! the queue with CONS on it, sets CMDQ_CONS.ERR and activates
//! GERROR.CMDQ_ERR; software fixes the queue and acknowledges through
//! GERRORN, which restarts consumption.

use std::sync::atomic::Ordering;

use iommu_format::smmuv3::cmd::{Command, ResumeAction, SyncCompletion, TlbiRange};
use iommu_format::smmuv3::regs::CmdqError;
use iommu_types::{Hpa, InterruptSink, Msi, PhysMem};

use super::regfile::{gerror, Queue, Regs, CONS_ERR_MASK};
use super::translate::{TlbKey, TlbKind, NO_ASID};
use super::{PrgResponse, Smmu};

/// Whether a TLB entry's input range meets an invalidation's range.
fn overlaps(key: &TlbKey, r: &TlbiRange, va: bool) -> bool {
    let mask = if va { (1u64 << 56) - 1 } else { u64::MAX };
    let start = (key.page << key.shift) & mask;
    let end = start.saturating_add(1u64 << key.shift);
    let a = r.addr & mask & !0xFFF;
    let (lo, hi) = match r.span() {
        Some(span) => (a, a.saturating_add(span)),
        None => (a, a + 1),
    };
    start < hi && lo < end
}

impl<M: PhysMem, I: InterruptSink> Smmu<M, I> {
    /// Consumes commands; called with the register lock held after a write
    /// that may let the queue make progress.
    pub(super) fn process_cmdq(&self, r: &mut Regs) {
        if !r.cmdq_enabled() || r.gerror_active(gerror::CMDQ_ERR) {
            return;
        }
        let log2 = r.cmdq.log2(self.config.cmdq_max());
        let imask = (1u32 << log2) - 1;
        let base = r.cmdq.addr(16, log2);
        // At most one queue's worth per call: PROD is never further ahead.
        for _ in 0..=imask {
            let cons = r.cmdq.cons;
            if r.cmdq.empty(log2) {
                return;
            }
            let addr = base + 16 * (cons & imask) as u64;
            let mut b = [0u8; 16];
            if self.mem.read(Hpa::new(addr), &mut b).is_err() {
                return self.cmd_error(r, CmdqError::Abort);
            }
            let lo = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
            let hi = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
            let cmd = match Command::decode([lo, hi]) {
                Ok(c) if self.legal_here(&c) => c,
                _ => return self.cmd_error(r, CmdqError::Illegal),
            };
            self.execute(&cmd);
            r.cmdq.cons = Queue::next(cons, log2);
        }
    }

    fn cmd_error(&self, r: &mut Regs, e: CmdqError) {
        r.cmdq.cons = (r.cmdq.cons & !CONS_ERR_MASK) | (e.bits() as u32) << 24;
        r.activate_gerror(gerror::CMDQ_ERR);
    }

    /// Whether this SMMU implements what `c` acts on (else CERROR_ILL).
    fn legal_here(&self, c: &Command) -> bool {
        let f = &self.features;
        match c {
            Command::CfgiCd { .. } | Command::CfgiCdAll { .. } => f.s1p,
            Command::TlbiNhAll { .. }
            | Command::TlbiNhAsid { .. }
            | Command::TlbiNhVa { .. }
            | Command::TlbiNhVaa { .. } => f.s1p,
            Command::TlbiS2Ipa { .. } | Command::TlbiS12Vmall { .. } => f.s2p,
            Command::TlbiEl2All
            | Command::TlbiEl2Asid { .. }
            | Command::TlbiEl2Va { .. }
            | Command::TlbiEl2Vaa { .. } => f.hyp,
            Command::TlbiEl3All | Command::TlbiEl3Va { .. } | Command::CfgiVmsPidm { .. } => false,
            Command::AtcInv { .. } => f.ats,
            Command::PriResp { .. } => f.pri,
            Command::Resume { .. } | Command::StallTerm { .. } => f.stall,
            Command::PrefetchConfig { .. }
            | Command::PrefetchAddr { .. }
            | Command::CfgiSte { .. }
            | Command::CfgiSteRange { .. }
            | Command::TlbiNsnhAll
            | Command::Sync { .. } => true,
        }
    }

    fn execute(&self, c: &Command) {
        let stage1 = |k: &TlbKey| k.kind != TlbKind::S2;
        match *c {
            Command::PrefetchConfig { .. } | Command::PrefetchAddr { .. } => {}
            Command::CfgiSte { sid, .. } => {
                self.ste_cache.invalidate_where(|k, _, _| k.0 == sid.0);
                self.cd_cache.invalidate_where(|k, _, _| k.sid == sid.0);
                self.ctx_cache.invalidate_where(|k, _, _| k.sid == sid.0);
            }
            Command::CfgiSteRange { sid, range } => {
                let n = range as u32 + 1;
                let base = if n >= 32 { 0 } else { sid.0 & !((1u32 << n) - 1) };
                let hit = |s: u32| n >= 32 || (s & !((1u32 << n) - 1)) == base;
                self.ste_cache.invalidate_where(|k, _, _| hit(k.0));
                self.cd_cache.invalidate_where(|k, _, _| hit(k.sid));
                self.ctx_cache.invalidate_where(|k, _, _| hit(k.sid));
            }
            Command::CfgiCd { sid, ssid, .. } => {
                self.cd_cache.invalidate_where(|k, _, _| k.sid == sid.0 && k.ssid == ssid.raw());
                self.ctx_cache.invalidate_where(|k, c, _| k.sid == sid.0 && c.cd_index == Some(ssid.raw()));
            }
            Command::CfgiCdAll { sid } => {
                self.cd_cache.invalidate_where(|k, _, _| k.sid == sid.0);
                self.ctx_cache.invalidate_where(|k, c, _| k.sid == sid.0 && c.cd_index.is_some());
            }
            Command::CfgiVmsPidm { .. } => {}
            Command::TlbiNhAll { vmid } => {
                self.tlb.invalidate_where(|k, _, _| stage1(k) && k.vmid == vmid);
            }
            Command::TlbiNhAsid { vmid, asid } => {
                self.tlb.invalidate_where(|k, _, _| stage1(k) && k.vmid == vmid && k.asid == asid as u32);
            }
            Command::TlbiNhVa { vmid, asid, range } => {
                self.tlb.invalidate_where(|k, _, _| {
                    stage1(k)
                        && k.vmid == vmid
                        && (k.asid == asid as u32 || k.asid == NO_ASID)
                        && overlaps(k, &range, true)
                });
            }
            Command::TlbiNhVaa { vmid, range } => {
                self.tlb.invalidate_where(|k, _, _| stage1(k) && k.vmid == vmid && overlaps(k, &range, true));
            }
            // Stage-2 entries by IPA; combined entries are left to the
            // TLBI_NH_*/S12_VMALL software must issue as well (permitted).
            Command::TlbiS2Ipa { vmid, range } => {
                self.tlb
                    .invalidate_where(|k, _, _| k.kind == TlbKind::S2 && k.vmid == vmid && overlaps(k, &range, false));
            }
            Command::TlbiS12Vmall { vmid } => {
                self.tlb.invalidate_where(|k, _, _| k.vmid == vmid);
            }
            Command::TlbiNsnhAll => {
                self.tlb.invalidate_all();
                self.tlb_has_global.store(false, Ordering::Relaxed);
            }
            Command::TlbiEl2All
            | Command::TlbiEl2Asid { .. }
            | Command::TlbiEl2Va { .. }
            | Command::TlbiEl2Vaa { .. }
            | Command::TlbiEl3All
            | Command::TlbiEl3Va { .. } => {}
            Command::AtcInv { sid, ssid, global, addr, size } => self.atc_invalidate(sid, ssid, global, addr, size),
            Command::PriResp { sid, ssid, grpid, resp } => {
                self.deliver(PrgResponse { sid, ssid, grpid, resp, automatic: false })
            }
            Command::Resume { sid, stag, action } => self.resume(sid, stag, action == ResumeAction::Retry),
            Command::StallTerm { sid } => self.stall_term(sid),
            Command::Sync { cs, msi_addr, msi_data, .. } => {
                if cs == SyncCompletion::SigIrq && msi_addr != 0 && self.config.msi() {
                    self.irq.raise(Msi { addr: msi_addr, data: msi_data });
                }
            }
        }
    }
}
