//! The VT-d register file, VT-d chapter 11: offsets, register layouts and
//! the decoded capabilities ([`Caps`]) every legality check takes.

/// Register offsets, VT-d §11.4 (Table "Address mapping for remapping
/// hardware registers"). The IOTLB registers sit at `ECAP.IRO × 16` and the
/// fault recording registers at `CAP.FRO × 16`; see [`Caps`].
pub mod offset {
    /// Version register (32-bit, RO), §11.4.1.
    pub const VER: u64 = 0x00;
    /// Capability register (64-bit, RO), §11.4.2.
    pub const CAP: u64 = 0x08;
    /// Extended capability register (64-bit, RO), §11.4.3.
    pub const ECAP: u64 = 0x10;
    /// Global command register (32-bit, WO), §11.4.4.1.
    pub const GCMD: u64 = 0x18;
    /// Global status register (32-bit, RO), §11.4.4.2.
    pub const GSTS: u64 = 0x1C;
    /// Root table address register (64-bit, RW), §11.4.5.
    pub const RTADDR: u64 = 0x20;
    /// Context command register (64-bit, RW), §11.4.6.
    pub const CCMD: u64 = 0x28;
    /// Fault status register (32-bit), §11.4.9.1.
    pub const FSTS: u64 = 0x34;
    /// Fault event control register (32-bit), §11.4.9.2.
    pub const FECTL: u64 = 0x38;
    /// Fault event data register (32-bit), §11.4.9.3.
    pub const FEDATA: u64 = 0x3C;
    /// Fault event address register (32-bit), §11.4.9.4.
    pub const FEADDR: u64 = 0x40;
    /// Fault event upper address register (32-bit), §11.4.9.5.
    pub const FEUADDR: u64 = 0x44;
    /// Invalidation queue head (64-bit, RO), §11.4.10.1.
    pub const IQH: u64 = 0x80;
    /// Invalidation queue tail (64-bit, RW), §11.4.10.2.
    pub const IQT: u64 = 0x88;
    /// Invalidation queue address (64-bit, RW), §11.4.10.3.
    pub const IQA: u64 = 0x90;
    /// Invalidation completion status (32-bit, RW1C), §11.4.10.4.
    pub const ICS: u64 = 0x9C;
    /// Invalidation event control (32-bit), §11.4.10.5.
    pub const IECTL: u64 = 0xA0;
    /// Invalidation event data (32-bit), §11.4.10.6.
    pub const IEDATA: u64 = 0xA4;
    /// Invalidation event address (32-bit), §11.4.10.7.
    pub const IEADDR: u64 = 0xA8;
    /// Invalidation event upper address (32-bit), §11.4.10.8.
    pub const IEUADDR: u64 = 0xAC;
    /// Invalidation queue error record (64-bit, RO), §11.4.10.9.
    pub const IQERCD: u64 = 0xB0;
    /// Page request queue head (64-bit, RW), §11.4.11.1.
    pub const PQH: u64 = 0xC0;
    /// Page request queue tail (64-bit, RO), §11.4.11.2.
    pub const PQT: u64 = 0xC8;
    /// Page request queue address (64-bit, RW), §11.4.11.3.
    pub const PQA: u64 = 0xD0;
    /// Page request status (32-bit, RW1C), §11.4.11.4.
    pub const PRS: u64 = 0xDC;
    /// Page request event control (32-bit), §11.4.11.5.
    pub const PECTL: u64 = 0xE0;
    /// Page request event data (32-bit), §11.4.11.6.
    pub const PEDATA: u64 = 0xE4;
    /// Page request event address (32-bit), §11.4.11.7.
    pub const PEADDR: u64 = 0xE8;
    /// Page request event upper address (32-bit), §11.4.11.8.
    pub const PEUADDR: u64 = 0xEC;
}

/// Global command / status bits, VT-d §11.4.4.1 and §11.4.4.2 (GCMD bit n
/// commands, GSTS bit n reports).
pub mod gcmd {
    /// TE / TES: translation enable.
    pub const TE: u32 = 1 << 31;
    /// SRTP / RTPS: set root table pointer (one-shot) / root table pointer status.
    pub const SRTP: u32 = 1 << 30;
    /// SFL / FLS: set fault log (one-shot).
    pub const SFL: u32 = 1 << 29;
    /// EAFL / AFLS: enable advanced fault logging.
    pub const EAFL: u32 = 1 << 28;
    /// WBF / WBFS: write buffer flush (one-shot).
    pub const WBF: u32 = 1 << 27;
    /// QIE / QIES: queued invalidation enable.
    pub const QIE: u32 = 1 << 26;
    /// IRE / IRES: interrupt remapping enable.
    pub const IRE: u32 = 1 << 25;
    /// SIRTP / IRTPS: set interrupt remap table pointer (one-shot).
    pub const SIRTP: u32 = 1 << 24;
    /// CFI / CFIS: compatibility format interrupts.
    pub const CFI: u32 = 1 << 23;
    /// The persistent enables (software re-writes them with every command).
    pub const PERSISTENT: u32 = TE | EAFL | QIE | IRE | CFI;
}

/// Fault status bits, VT-d §11.4.9.1.
pub mod fsts {
    /// Primary fault overflow (RW1C).
    pub const PFO: u32 = 1 << 0;
    /// Primary pending fault (RO, OR of the F bits).
    pub const PPF: u32 = 1 << 1;
    /// Advanced fault overflow (RW1C).
    pub const AFO: u32 = 1 << 2;
    /// Advanced pending fault (RW1C).
    pub const APF: u32 = 1 << 3;
    /// Invalidation queue error (RW1C).
    pub const IQE: u32 = 1 << 4;
    /// Invalidation completion error (RW1C).
    pub const ICE: u32 = 1 << 5;
    /// Invalidation time-out error (RW1C).
    pub const ITE: u32 = 1 << 6;
    /// Fault record index field shift (15:8, RO).
    pub const FRI_SHIFT: u32 = 8;
    /// The write-1-to-clear bits.
    pub const RW1C: u32 = PFO | AFO | APF | IQE | ICE | ITE;
}

/// Event control bits shared by FECTL, IECTL and PECTL (§11.4.9.2 and kin).
pub mod ectl {
    /// Interrupt mask.
    pub const IM: u32 = 1 << 31;
    /// Interrupt pending (RO).
    pub const IP: u32 = 1 << 30;
}

/// Page request status bits, VT-d §11.4.11.4.
pub mod prs {
    /// Pending page request (RW1C).
    pub const PPR: u32 = 1 << 0;
    /// Page request overflow (RW1C).
    pub const PRO: u32 = 1 << 1;
}

/// RTADDR translation table mode, VT-d §11.4.5 (TTM, bits 11:10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableMode {
    /// 00b: legacy root/context tables.
    Legacy,
    /// 01b: scalable-mode root/context tables.
    Scalable,
    /// 10b: abort-DMA mode (VT-d 3.0+): every untranslated request is blocked.
    AbortDma,
    /// 11b: reserved.
    Reserved,
}

impl TableMode {
    /// Decodes TTM.
    pub const fn from_bits(v: u64) -> Self {
        match v & 3 {
            0 => Self::Legacy,
            1 => Self::Scalable,
            2 => Self::AbortDma,
            _ => Self::Reserved,
        }
    }
}

crate::layout! {
    /// Root table address register, VT-d §11.4.5.
    pub struct Rtaddr([u64; 1]);
    /// Translation table mode (see [`TableMode`]).
    TTM: 11, 10;
    /// Root table address (4 KiB aligned).
    RTA: 63, 12;
}

crate::layout! {
    /// Context command register, VT-d §11.4.6.
    pub struct Ccmd([u64; 1]);
    /// Domain-ID for domain- and device-selective invalidation.
    DID: 15, 0;
    /// Source-ID for device-selective invalidation.
    SID: 31, 16;
    /// Function mask for device-selective invalidation.
    FM: 33, 32;
    /// Actual invalidation granularity (RO, reported on completion).
    CAIG: 60, 59;
    /// Requested invalidation granularity: 1 global, 2 domain, 3 device.
    CIRG: 62, 61;
    /// Invalidate context cache: set by software, cleared by hardware on completion.
    ICC: 63, 63;
}

crate::layout! {
    /// IOTLB invalidate register (at IRO×16 + 8), VT-d §11.4.8.1.
    pub struct IotlbReg([u64; 1]);
    /// Domain-ID for domain- and page-selective invalidation.
    DID: 47, 32;
    /// Drain writes.
    DW: 48, 48;
    /// Drain reads.
    DR: 49, 49;
    /// Actual invalidation granularity (RO).
    IAIG: 58, 57;
    /// Requested granularity: 1 global, 2 domain, 3 page-selective.
    IIRG: 61, 60;
    /// Invalidate IOTLB: set by software, cleared by hardware on completion.
    IVT: 63, 63;
}

crate::layout! {
    /// Invalidate address register (at IRO×16), VT-d §11.4.8.2.
    pub struct Iva([u64; 1]);
    /// Address mask: invalidate 2^AM pages.
    AM: 5, 0;
    /// Invalidation hint (leaf only).
    IH: 6, 6;
    /// Page address.
    ADDR: 63, 12;
}

crate::layout! {
    /// Invalidation queue address register, VT-d §11.4.10.3.
    pub struct Iqa([u64; 1]);
    /// Queue size: 2^QS pages of 4 KiB.
    QS: 2, 0;
    /// Descriptor width: 0 = 128-bit, 1 = 256-bit.
    DW: 11, 11;
    /// Queue base address.
    IQA: 63, 12;
}

crate::layout! {
    /// Page request queue address register, VT-d §11.4.11.3.
    pub struct Pqa([u64; 1]);
    /// Queue size: 2^PQS pages of 4 KiB (32-byte descriptors).
    PQS: 2, 0;
    /// Queue base address.
    PQA: 63, 12;
}

crate::layout! {
    /// Capability register, VT-d §11.4.2.
    pub struct Cap([u64; 1]);
    /// Number of domains supported: 2^(4+2·ND) domain IDs.
    ND: 2, 0;
    /// Advanced fault logging.
    AFL: 3, 3;
    /// Required write-buffer flushing.
    RWBF: 4, 4;
    /// Protected low-memory region.
    PLMR: 5, 5;
    /// Protected high-memory region.
    PHMR: 6, 6;
    /// Caching mode: not-present and erroneous entries may be cached.
    CM: 7, 7;
    /// Supported adjusted guest address widths (bit 1: 3-level, 2: 4-level, 3: 5-level).
    SAGAW: 12, 8;
    /// Maximum guest address width minus one.
    MGAW: 21, 16;
    /// Zero-length read.
    ZLR: 22, 22;
    /// Fault-recording register offset in 16-byte units.
    FRO: 33, 24;
    /// Second-stage large pages (bit 0: 2 MiB, bit 1: 1 GiB).
    SLLPS: 37, 34;
    /// Page-selective invalidation.
    PSI: 39, 39;
    /// Number of fault-recording registers minus one.
    NFR: 47, 40;
    /// Maximum address mask value for page-selective invalidation.
    MAMV: 53, 48;
    /// Write draining.
    DWD: 54, 54;
    /// Read draining.
    DRD: 55, 55;
    /// First-stage 1 GiB pages.
    FS1GP: 56, 56;
    /// Posted interrupts.
    PI: 59, 59;
    /// First-stage 5-level paging.
    FS5LP: 60, 60;
    /// Enhanced command support.
    ECMDS: 61, 61;
    /// Enhanced set interrupt remap table pointer.
    ESIRTPS: 62, 62;
    /// Enhanced set root table pointer.
    ESRTPS: 63, 63;
}

crate::layout! {
    /// Extended capability register, VT-d §11.4.3.
    pub struct Ecap([u64; 1]);
    /// Page-walk coherency (legacy mode).
    C: 0, 0;
    /// Queued invalidation.
    QI: 1, 1;
    /// Device-TLB (ATS).
    DT: 2, 2;
    /// Interrupt remapping.
    IR: 3, 3;
    /// Extended interrupt mode.
    EIM: 4, 4;
    /// Pass-through.
    PT: 6, 6;
    /// Snoop control.
    SC: 7, 7;
    /// IOTLB register offset in 16-byte units.
    IRO: 17, 8;
    /// Maximum handle mask value.
    MHMV: 23, 20;
    /// Memory type support.
    MTS: 25, 25;
    /// Nested translation.
    NEST: 26, 26;
    /// Page requests.
    PRS: 29, 29;
    /// Execute requests.
    ERS: 30, 30;
    /// Supervisor requests.
    SRS: 31, 31;
    /// No-write flag.
    NWFS: 33, 33;
    /// Extended accessed flag.
    EAFS: 34, 34;
    /// PASID size minus one (PASIDs of PSS+1 bits).
    PSS: 39, 35;
    /// PASID support.
    PASID: 40, 40;
    /// Device-TLB invalidation throttling.
    DIT: 41, 41;
    /// Page-request drain.
    PDS: 42, 42;
    /// Scalable-mode translation.
    SMTS: 43, 43;
    /// Virtual command support.
    VCS: 44, 44;
    /// Second-stage accessed/dirty.
    SSADS: 45, 45;
    /// Second-stage translation.
    SSTS: 46, 46;
    /// First-stage translation.
    FSTS: 47, 47;
    /// Scalable-mode page-walk coherency.
    SMPWC: 48, 48;
    /// RID_PASID support.
    RPS: 49, 49;
    /// Performance monitoring.
    PMS: 51, 51;
    /// Abort-DMA mode.
    ADMS: 52, 52;
    /// RID_PRIV support.
    RPRIVS: 53, 53;
}

/// Decoded capabilities: what CAP and ECAP advertise, in the form every
/// legality check takes. The model's configuration produces them; a driver
/// parses them from the registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Caps {
    /// The raw capability register.
    pub cap: Cap,
    /// The raw extended capability register.
    pub ecap: Ecap,
}

impl Caps {
    /// Decodes the two registers.
    pub const fn new(cap: u64, ecap: u64) -> Self {
        Self { cap: Cap([cap]), ecap: Ecap([ecap]) }
    }
    /// Whether CAP.SAGAW supports `levels`-level second-stage tables.
    pub const fn sagaw_supports(&self, levels: u8) -> bool {
        levels >= 3 && levels <= 5 && (self.cap.get(Cap::SAGAW) >> (levels - 2)) & 1 != 0
    }
    /// Maximum guest address width in bits (MGAW + 1).
    pub const fn mgaw(&self) -> u32 {
        self.cap.get(Cap::MGAW) as u32 + 1
    }
    /// Host address width used for reserved-bit checks on table entries
    /// (this model ties it to MGAW).
    pub const fn haw(&self) -> u32 {
        self.mgaw()
    }
    /// Byte offset of the first fault recording register.
    pub const fn fault_record_offset(&self) -> u64 {
        self.cap.get(Cap::FRO) * 16
    }
    /// Number of fault recording registers.
    pub const fn fault_record_count(&self) -> usize {
        self.cap.get(Cap::NFR) as usize + 1
    }
    /// Byte offset of the IVA register (the IOTLB register follows at +8).
    pub const fn iotlb_offset(&self) -> u64 {
        self.ecap.get(Ecap::IRO) * 16
    }
    /// Whether second-stage leaves are allowed at `level` (1 always).
    pub const fn ss_large_page(&self, level: u8) -> bool {
        match level {
            1 => true,
            2 => self.cap.get(Cap::SLLPS) & 1 != 0,
            3 => self.cap.get(Cap::SLLPS) & 2 != 0,
            _ => false,
        }
    }
    /// Whether first-stage leaves are allowed at `level` (4K, 2M always; 1G with FS1GP).
    pub const fn fs_large_page(&self, level: u8) -> bool {
        match level {
            1 | 2 => true,
            3 => self.cap.get(Cap::FS1GP) != 0,
            _ => false,
        }
    }
    /// Number of implemented domain-ID bits.
    pub const fn did_bits(&self) -> u32 {
        let nd = self.cap.get(Cap::ND) as u32;
        if nd > 6 {
            16
        } else {
            4 + 2 * nd
        }
    }
    /// Shorthand for a single-bit ECAP field.
    pub const fn ecap_has(&self, f: crate::bits::Field) -> bool {
        self.ecap.get(f) != 0
    }
    /// Shorthand for a single-bit CAP field.
    pub const fn cap_has(&self, f: crate::bits::Field) -> bool {
        self.cap.get(f) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 10.0.2's legacy CAP (see shared/specs/qemu-viommu.md §1.1),
    /// decoded field by field against VT-d §11.4.2.
    #[test]
    fn qemu_cap_decodes_to_documented_fields() {
        let c = Caps::new(0x00d2_008c_222f_0606, 0x00f0_0f4a);
        assert_eq!(c.cap.get(Cap::ND), 6);
        assert!(c.sagaw_supports(3) && c.sagaw_supports(4) && !c.sagaw_supports(5));
        assert_eq!(c.mgaw(), 48);
        assert_eq!(c.fault_record_offset(), 0x220);
        assert_eq!(c.fault_record_count(), 1);
        assert!(c.ss_large_page(2) && c.ss_large_page(3));
        assert!(c.cap_has(Cap::PSI));
        assert_eq!(c.cap.get(Cap::MAMV), 18);
        assert_eq!(c.iotlb_offset(), 0xF0);
        assert!(c.ecap_has(Ecap::QI) && c.ecap_has(Ecap::PT) && c.ecap_has(Ecap::IR));
        assert!(!c.ecap_has(Ecap::DT));
    }

    #[test]
    fn qemu_scalable_ecap_advertises_smts_ssts_srs() {
        let c = Caps::new(0, 0x4800_80f0_0f4a);
        assert!(c.ecap_has(Ecap::SMTS) && c.ecap_has(Ecap::SSTS) && c.ecap_has(Ecap::SRS));
        assert!(!c.ecap_has(Ecap::FSTS));
    }
}
