//! Model configuration: capabilities, cache geometry, implementation choices.

use iommu_cache::Policy;
use iommu_format::vtd::regs::{Cap, Ecap};

/// Choices the VT-d specification leaves to the implementation, each named
/// so that tests can run both ways (STYLE §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImplChoices {
    /// What restarts descriptor fetching after an invalidation queue error
    /// (VT-d §6.5.2.10): hardware stops at the bad descriptor with IQH
    /// pointing at it; this model resumes when software next writes IQT
    /// (as QEMU 10.0.2 does), or already when IQE is cleared.
    pub iqe_restart: IqeRestart,
    /// Response code hardware returns itself for a last-in-group page
    /// request it had to drop because the page request queue was full
    /// (VT-d §7.5.2): `Success` makes the device retry.
    pub overflow_response_success: bool,
}

/// See [`ImplChoices::iqe_restart`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IqeRestart {
    /// Fetching resumes at the next IQT write.
    OnTailWrite,
    /// Fetching resumes as soon as IQE is cleared.
    OnClear,
}

impl Default for ImplChoices {
    fn default() -> Self {
        Self { iqe_restart: IqeRestart::OnTailWrite, overflow_response_success: true }
    }
}

/// Everything that shapes one VT-d unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VtdConfig {
    /// Capability register value (CAP.NFR sets the number of fault
    /// recording registers, CAP.FRO their offset).
    pub cap: u64,
    /// Extended capability register value.
    pub ecap: u64,
    /// IOTLB geometry: sets × ways.
    pub iotlb: (usize, usize),
    /// Context-cache geometry.
    pub context_cache: (usize, usize),
    /// PASID-cache geometry.
    pub pasid_cache: (usize, usize),
    /// Device-TLB (the ATS endpoints' translation caches) geometry.
    pub device_tlb: (usize, usize),
    /// Replacement policy of every cache.
    pub policy: Policy,
    /// Most page-group responses held for devices to collect.
    pub max_pending_responses: usize,
    /// Implementation choices.
    pub choices: ImplChoices,
    /// Record every executed invalidation descriptor for
    /// [`super::VtdUnit::take_invalidations`]: what a VMM presenting this
    /// unit to a guest as its vIOMMU acts on.
    pub notify_invalidations: bool,
}

/// Offset of the IOTLB registers used by every profile (ECAP.IRO = 0xF).
const IRO: u64 = 0xF;
/// Offset of the fault recording registers (CAP.FRO = 0x22 → 0x220).
const FRO: u64 = 0x22;

impl VtdConfig {
    fn with_caps(cap: u64, ecap: u64) -> Self {
        Self {
            cap,
            ecap,
            iotlb: (256, 8),
            context_cache: (64, 4),
            pasid_cache: (128, 4),
            device_tlb: (64, 4),
            policy: Policy::Lru,
            max_pending_responses: 1024,
            choices: ImplChoices::default(),
            notify_invalidations: false,
        }
    }

    /// A full-featured unit: scalable mode with first-stage (4- and 5-level,
    /// 1 GiB pages), second-stage (3/4/5-level, 2 MiB and 1 GiB pages),
    /// nested and pass-through translation, 20-bit PASIDs, ATS, page
    /// requests with drain, supervisor and execute requests, RID_PASID,
    /// 57-bit MGAW and 8 fault recording registers.
    pub fn full_featured() -> Self {
        let cap = Cap::default()
            .with(Cap::ND, 6)
            .with(Cap::SAGAW, 0b01110)
            .with(Cap::MGAW, 56)
            .with(Cap::FRO, FRO)
            .with(Cap::SLLPS, 0b11)
            .with(Cap::PSI, 1)
            .with(Cap::NFR, 7)
            .with(Cap::MAMV, 18)
            .with(Cap::DWD, 1)
            .with(Cap::DRD, 1)
            .with(Cap::FS1GP, 1)
            .with(Cap::FS5LP, 1)
            .0[0];
        let ecap = Ecap::default()
            .with(Ecap::QI, 1)
            .with(Ecap::DT, 1)
            .with(Ecap::PT, 1)
            .with(Ecap::SC, 1)
            .with(Ecap::IRO, IRO)
            .with(Ecap::MHMV, 0xF)
            .with(Ecap::NEST, 1)
            .with(Ecap::PRS, 1)
            .with(Ecap::ERS, 1)
            .with(Ecap::SRS, 1)
            .with(Ecap::EAFS, 1)
            .with(Ecap::PSS, 19)
            .with(Ecap::PASID, 1)
            .with(Ecap::PDS, 1)
            .with(Ecap::SMTS, 1)
            .with(Ecap::SSADS, 1)
            .with(Ecap::SSTS, 1)
            .with(Ecap::FSTS, 1)
            .with(Ecap::SMPWC, 1)
            .with(Ecap::RPS, 1)
            .0[0];
        Self::with_caps(cap, ecap)
    }

    /// The profile matching a QEMU 10.0.2 `intel-iommu` configuration
    /// (`shared/specs/qemu-viommu.md` §1.1): legacy only, or scalable mode
    /// with second-stage tables (`x-scalable-mode=on`) or first-stage tables
    /// (`x-flts=on`, which reports FSTS and FS1GP but not SSTS or SRS);
    /// `aw-bits` 39 or 48; `x-pasid-mode` adds ECAP.PASID. One deliberate
    /// difference: scalable profiles report ECAP.RPS, because QEMU honours
    /// the context entry's RID_PASID and the architecture only allows that
    /// with RPS.
    pub fn qemu(scalable: bool, flts: bool, aw_bits: u32, pasid: bool) -> Self {
        let (sagaw, mgaw) = if aw_bits == 39 { (0b0010, 38) } else { (0b0110, 47) };
        let mut cap = Cap([0x00d2_008c_222f_0606]).with(Cap::SAGAW, sagaw).with(Cap::MGAW, mgaw);
        let mut ecap = Ecap([0x00f0_0f4a]);
        if scalable {
            ecap = ecap.with(Ecap::SMTS, 1).with(Ecap::RPS, 1);
            if flts {
                ecap = ecap.with(Ecap::FSTS, 1);
                cap = cap.with(Cap::FS1GP, 1);
            } else {
                ecap = ecap.with(Ecap::SSTS, 1).with(Ecap::SRS, 1);
            }
            if pasid {
                ecap = ecap.with(Ecap::PASID, 1);
            }
        }
        Self::with_caps(cap.0[0], ecap.0[0])
    }
}

impl VtdConfig {
    /// The same configuration with CAP.CM (caching mode, VT-d §6.1) set or
    /// clear. Caching mode tells software that not-present and erroneous
    /// entries may be cached, so it must invalidate after every change;
    /// a vIOMMU reports it so that the VMM sees every table update.
    #[must_use]
    pub fn caching_mode(mut self, on: bool) -> Self {
        self.cap = Cap([self.cap]).with(Cap::CM, on as u64).0[0];
        self
    }
}

impl VtdConfig {
    /// The same configuration recording executed invalidation descriptors
    /// for the VMM (see [`VtdConfig::notify_invalidations`]).
    #[must_use]
    pub fn with_invalidation_notices(mut self, on: bool) -> Self {
        self.notify_invalidations = on;
        self
    }
}

impl Default for VtdConfig {
    fn default() -> Self {
        Self::full_featured()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// shared/specs/qemu-viommu.md §1.1: the CAP/ECAP QEMU 10.0.2 reports.
    #[test]
    fn qemu_profiles_reproduce_reported_registers() {
        assert_eq!(VtdConfig::qemu(false, false, 48, false).cap, 0x00d2_008c_222f_0606);
        assert_eq!(VtdConfig::qemu(false, false, 48, false).ecap, 0x00f0_0f4a);
        let rps = 1u64 << 49;
        assert_eq!(VtdConfig::qemu(true, false, 48, false).ecap, 0x4800_80f0_0f4a | rps);
        let fl = VtdConfig::qemu(true, true, 48, false);
        assert_eq!((fl.cap, fl.ecap), (0x01d2_008c_222f_0606, 0x8800_00f0_0f4a | rps));
    }
}
