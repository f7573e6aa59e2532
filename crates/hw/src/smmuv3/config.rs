//! What an SMMUv3 instance implements: its ID registers (SMMUv3 §6.3.1–
//! §6.3.6), from which [`Features`] are derived, and the sizes of its
//! caches. Profiles reproduce the three QEMU configurations of the
//! conformance cases and a full-featured SMMU with substreams, ATS, PRI
//! and stalls.

use iommu_walk::smmuv3::Features;

/// An SMMU's ID registers and cache geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SmmuConfig {
    /// SMMU_IDR0–IDR5 (§6.3.1–§6.3.6).
    pub idr: [u32; 6],
    /// SMMU_IIDR.
    pub iidr: u32,
    /// SMMU_AIDR: architecture revision (1 = SMMUv3.1).
    pub aidr: u32,
    /// TLB sets × ways.
    pub tlb: (usize, usize),
    /// Configuration (STE and CD) cache sets × ways.
    pub cfg_cache: (usize, usize),
}

/// IDR0 fields used to build profiles (§6.3.1).
mod idr0 {
    pub const S2P: u32 = 1 << 0;
    pub const S1P: u32 = 1 << 1;
    pub const TTF_AARCH64: u32 = 0b10 << 2;
    pub const COHACC: u32 = 1 << 4;
    pub const BTM: u32 = 1 << 5;
    pub const HYP: u32 = 1 << 9;
    pub const ATS: u32 = 1 << 10;
    pub const ASID16: u32 = 1 << 12;
    pub const MSI: u32 = 1 << 13;
    pub const PRI: u32 = 1 << 16;
    pub const VMW: u32 = 1 << 17;
    pub const VMID16: u32 = 1 << 18;
    pub const CD2L: u32 = 1 << 19;
    pub const TTENDIAN_LE: u32 = 0b10 << 21;
    pub const STALL_NONE: u32 = 0b01 << 24;
    pub const TERM_MODEL: u32 = 1 << 26;
    pub const ST_2LVL: u32 = 0b01 << 27;
}

/// Which stages a QEMU `arm-smmuv3` was configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QemuStages {
    /// `virt` (≥ 9.2): both stages.
    Nested,
    /// `virt-9.1` with `stage=1`.
    S1Only,
    /// `virt-9.1` with `stage=2`.
    S2Only,
}

impl SmmuConfig {
    /// The ID registers of QEMU 10.0's SMMUv3 (the conformance cases'
    /// `config.smmu`; values in `shared/smmuv3-conformance/README.md`):
    /// SMMUv3.1, AArch64 tables, 16-bit ASIDs and VMIDs, no stalls,
    /// 2-level stream tables, 16-bit StreamIDs, no substreams, no ATS or
    /// PRI, 44-bit OAS, all three granules.
    pub const fn qemu(stages: QemuStages) -> Self {
        let common = idr0::TTF_AARCH64
            | idr0::COHACC
            | idr0::ASID16
            | idr0::VMID16
            | idr0::TTENDIAN_LE
            | idr0::STALL_NONE
            | idr0::TERM_MODEL
            | idr0::ST_2LVL;
        let (stage_bits, idr3) = match stages {
            QemuStages::Nested => (idr0::S1P | idr0::S2P, 0x1414),
            QemuStages::S1Only => (idr0::S1P, 0x1404),
            QemuStages::S2Only => (idr0::S2P, 0x1414),
        };
        Self {
            idr: [common | stage_bits, 0x0273_0010, 0, idr3, 0, 0x74],
            iidr: 0x0000_043B,
            aidr: 1,
            tlb: (64, 8),
            cfg_cache: (64, 4),
        }
    }

    /// A full-featured SMMUv3.1: both stages, 20-bit SubstreamIDs with
    /// 2-level CD tables, ATS, PRI (256-entry queue), stalls supported,
    /// MSIs, 16-bit StreamIDs, 48-bit OAS, all granules.
    pub const fn full() -> Self {
        let i0 = idr0::S1P
            | idr0::S2P
            | idr0::TTF_AARCH64
            | idr0::COHACC
            | idr0::ATS
            | idr0::ASID16
            | idr0::MSI
            | idr0::PRI
            | idr0::VMID16
            | idr0::CD2L
            | idr0::TTENDIAN_LE
            | idr0::TERM_MODEL
            | idr0::ST_2LVL;
        // SIDSIZE 16, SSIDSIZE 20, PRIQS 8, EVENTQS 19, CMDQS 19.
        let i1 = 16 | 20 << 6 | 8 << 11 | 19 << 16 | 19 << 21;
        // IDR3: HAD, PPS (overflow auto-responses keep the PASID), XNX, RIL, BBML 2.
        Self { idr: [i0, i1, 0, 0x1434, 0, 0x75], iidr: 0x0000_043B, aidr: 1, tlb: (64, 8), cfg_cache: (64, 4) }
    }

    /// The same configuration with `ssid_bits` SubstreamID bits (0–20).
    #[must_use]
    pub const fn with_ssid_bits(mut self, ssid_bits: u32) -> Self {
        let b = if ssid_bits > 20 { 20 } else { ssid_bits };
        self.idr[1] = (self.idr[1] & !(0x1F << 6)) | b << 6;
        self
    }

    /// The features the ID registers describe.
    pub const fn features(&self) -> Features {
        let i0 = self.idr[0];
        let i1 = self.idr[1];
        let i5 = self.idr[5];
        let stall_model = (i0 >> 24) & 3;
        let httu = (i0 >> 6) & 3;
        Features {
            s1p: i0 & idr0::S1P != 0,
            s2p: i0 & idr0::S2P != 0,
            oas_bits: iommu_format::smmuv3::desc::pa_bits((i5 & 7) as u64),
            ssid_bits: (i1 >> 6) & 0x1F,
            sid_bits: i1 & 0x3F,
            stall: stall_model != 0b01,
            stall_force: stall_model == 0b10,
            term_abort_only: i0 & idr0::TERM_MODEL != 0,
            httu_af: httu >= 1,
            httu_dirty: httu == 2,
            ats: i0 & idr0::ATS != 0,
            pri: i0 & idr0::PRI != 0,
            cd2l: i0 & idr0::CD2L != 0,
            st2l: (i0 >> 27) & 3 == 1,
            hyp: i0 & idr0::HYP != 0,
            gran: [i5 & (1 << 4) != 0, i5 & (1 << 5) != 0, i5 & (1 << 6) != 0],
            vmid16: i0 & idr0::VMID16 != 0,
            asid16: i0 & idr0::ASID16 != 0,
            xnx: self.idr[3] & (1 << 4) != 0,
        }
    }

    /// Broadcast TLB maintenance (IDR0.BTM): CR2.PTM exists.
    pub const fn btm(&self) -> bool {
        self.idr[0] & idr0::BTM != 0
    }

    /// VMID wildcards (IDR0.VMW): CR0.VMW exists.
    pub const fn vmw(&self) -> bool {
        self.idr[0] & idr0::VMW != 0
    }

    /// Largest command-queue LOG2SIZE (IDR1.CMDQS).
    pub const fn cmdq_max(&self) -> u32 {
        (self.idr[1] >> 21) & 0x1F
    }
    /// Largest event-queue LOG2SIZE (IDR1.EVENTQS).
    pub const fn eventq_max(&self) -> u32 {
        (self.idr[1] >> 16) & 0x1F
    }
    /// Largest PRI-queue LOG2SIZE (IDR1.PRIQS).
    pub const fn priq_max(&self) -> u32 {
        (self.idr[1] >> 11) & 0x1F
    }
    /// MSIs supported (IDR0.MSI).
    pub const fn msi(&self) -> bool {
        self.idr[0] & idr0::MSI != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_nested_profile_has_the_recorded_id_registers() {
        let c = SmmuConfig::qemu(QemuStages::Nested);
        assert_eq!(c.idr[0], 0x0d44_101b);
        assert_eq!(c.idr[1], 0x0273_0010);
        assert_eq!(c.idr[3], 0x1414);
        assert_eq!(c.idr[5], 0x74);
        assert_eq!(SmmuConfig::qemu(QemuStages::S1Only).idr[0], 0x0d44_101a);
        assert_eq!(SmmuConfig::qemu(QemuStages::S2Only).idr[0], 0x0d44_1019);
    }

    #[test]
    fn qemu_features_decode() {
        let f = SmmuConfig::qemu(QemuStages::Nested).features();
        assert!(f.s1p && f.s2p && !f.stall && f.term_abort_only && f.st2l && !f.cd2l);
        assert_eq!((f.oas_bits, f.sid_bits, f.ssid_bits), (44, 16, 0));
        assert_eq!(f.gran, [true, true, true]);
    }

    #[test]
    fn full_profile_has_substreams_ats_pri_and_stalls() {
        let f = SmmuConfig::full().features();
        assert!(f.ats && f.pri && f.stall && !f.stall_force && f.cd2l);
        assert_eq!((f.ssid_bits, f.oas_bits), (20, 48));
        assert_eq!(SmmuConfig::full().with_ssid_bits(2).features().ssid_bits, 2);
    }
}
