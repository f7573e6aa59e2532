//! The SMMUv3 register map, SMMUv3 §6: offsets of the Non-secure programming
//! interface, one raw view per register layout, and small decoders for the
//! enumerated fields a model or driver reads.
//!
//! Registers are 32-bit unless noted; 64-bit ones are two separately
//! writable 32-bit halves, the high half at +4 (§6.2). Every view here is a
//! one-word `layout!` (`[u64; 1]`), even for 32-bit registers, whose bits
//! 63:32 are then simply reserved. Undefined bits are RES0 (§6.2).
//!
//! Subsection numbers (§6.3.n) follow the public rendering of IHI 0070 used
//! for this crate; the register name given next to each is the stable key.
//! Address fields stop at bit 51 (the SMMUv3.3 feature set, docs/SPECS.md);
//! later revisions widen them to bit 55. Fields that belong to extensions
//! newer than SMMUv3.3 are still listed, so that a raw value decodes in full,
//! and say so.

/// Register offsets from the base of the SMMU register frame, SMMUv3 §6.2.1
/// (page 0) and §6.2.2 (page 1, at +0x10000).
pub mod offset {
    /// SMMU_IDR0 (32-bit, RO), §6.3.1.
    pub const IDR0: u64 = 0x00;
    /// SMMU_IDR1 (32-bit, RO), §6.3.2.
    pub const IDR1: u64 = 0x04;
    /// SMMU_IDR2 (32-bit, RO), §6.3.3: the VATOS page offset.
    pub const IDR2: u64 = 0x08;
    /// SMMU_IDR3 (32-bit, RO), §6.3.4.
    pub const IDR3: u64 = 0x0C;
    /// SMMU_IDR4 (32-bit, RO), §6.3.5: IMPLEMENTATION DEFINED.
    pub const IDR4: u64 = 0x10;
    /// SMMU_IDR5 (32-bit, RO), §6.3.6.
    pub const IDR5: u64 = 0x14;
    /// SMMU_IIDR (32-bit, RO), §6.3.7: implementation identification.
    pub const IIDR: u64 = 0x18;
    /// SMMU_AIDR (32-bit, RO), §6.3.8: architecture revision.
    pub const AIDR: u64 = 0x1C;
    /// SMMU_CR0 (32-bit, RW, resets to 0), §6.3.9.
    pub const CR0: u64 = 0x20;
    /// SMMU_CR0ACK (32-bit, RO, resets to 0), §6.3.10: CR0 fields once Updated.
    pub const CR0ACK: u64 = 0x24;
    /// SMMU_CR1 (32-bit, RW; UNKNOWN at reset unless preset), §6.3.11.
    pub const CR1: u64 = 0x28;
    /// SMMU_CR2 (32-bit, RW while SMMUEN == 0; UNKNOWN at reset), §6.3.12.
    pub const CR2: u64 = 0x2C;
    /// SMMU_STATUSR (32-bit, RO), §6.3.13.
    pub const STATUSR: u64 = 0x40;
    /// SMMU_GBPA (32-bit, RW while Update == 0), §6.3.14.
    pub const GBPA: u64 = 0x44;
    /// SMMU_AGBPA (32-bit, RW), §6.3.15: IMPLEMENTATION DEFINED bypass attributes.
    pub const AGBPA: u64 = 0x48;
    /// SMMU_IRQ_CTRL (32-bit, RW, resets to 0), §6.3.16.
    pub const IRQ_CTRL: u64 = 0x50;
    /// SMMU_IRQ_CTRLACK (32-bit, RO, resets to 0), §6.3.18.
    pub const IRQ_CTRLACK: u64 = 0x54;
    /// SMMU_GERROR (32-bit, RO, resets to 0), §6.3.19.
    pub const GERROR: u64 = 0x60;
    /// SMMU_GERRORN (32-bit, RW, resets to 0), §6.3.20.
    pub const GERRORN: u64 = 0x64;
    /// SMMU_GERROR_IRQ_CFG0 (64-bit, RW while GERROR_IRQEN == 0), §6.3.21: MSI address.
    pub const GERROR_IRQ_CFG0: u64 = 0x68;
    /// SMMU_GERROR_IRQ_CFG1 (32-bit), §6.3.22: MSI data.
    pub const GERROR_IRQ_CFG1: u64 = 0x70;
    /// SMMU_GERROR_IRQ_CFG2 (32-bit), §6.3.23: MSI attributes.
    pub const GERROR_IRQ_CFG2: u64 = 0x74;
    /// SMMU_STRTAB_BASE (64-bit, RW while SMMUEN == 0), §6.3.24.
    pub const STRTAB_BASE: u64 = 0x80;
    /// SMMU_STRTAB_BASE_CFG (32-bit, RW while SMMUEN == 0), §6.3.25.
    pub const STRTAB_BASE_CFG: u64 = 0x88;
    /// SMMU_CMDQ_BASE (64-bit, RW while CMDQEN == 0), §6.3.26.
    pub const CMDQ_BASE: u64 = 0x90;
    /// SMMU_CMDQ_PROD (32-bit, RW), §6.3.27.
    pub const CMDQ_PROD: u64 = 0x98;
    /// SMMU_CMDQ_CONS (32-bit, RW while CMDQEN == 0), §6.3.28.
    pub const CMDQ_CONS: u64 = 0x9C;
    /// SMMU_EVENTQ_BASE (64-bit, RW while EVENTQEN == 0), §6.3.29.
    pub const EVENTQ_BASE: u64 = 0xA0;
    /// SMMU_EVENTQ_PROD (32-bit, RW), in page 1 (§6.2.2). Some implementations (QEMU
    /// among them) also alias it at [`EVENTQ_PROD_PAGE0_ALIAS`]; §6.2.1
    /// makes that alias optional (otherwise RAZ/WI).
    pub const EVENTQ_PROD: u64 = 0x100A8;
    /// SMMU_EVENTQ_CONS (32-bit), in page 1; optional page-0 alias at
    /// [`EVENTQ_CONS_PAGE0_ALIAS`].
    pub const EVENTQ_CONS: u64 = 0x100AC;
    /// Optional page-0 alias of SMMU_EVENTQ_PROD, §6.2.1.
    pub const EVENTQ_PROD_PAGE0_ALIAS: u64 = 0xA8;
    /// Optional page-0 alias of SMMU_EVENTQ_CONS, §6.2.1.
    pub const EVENTQ_CONS_PAGE0_ALIAS: u64 = 0xAC;
    /// SMMU_EVENTQ_IRQ_CFG0 (64-bit), §6.3.30: MSI address.
    pub const EVENTQ_IRQ_CFG0: u64 = 0xB0;
    /// SMMU_EVENTQ_IRQ_CFG1 (32-bit), §6.3.31: MSI data.
    pub const EVENTQ_IRQ_CFG1: u64 = 0xB8;
    /// SMMU_EVENTQ_IRQ_CFG2 (32-bit), §6.3.32: MSI attributes.
    pub const EVENTQ_IRQ_CFG2: u64 = 0xBC;
    /// SMMU_PRIQ_BASE (64-bit, RW while PRIQEN == 0), §6.3.33. The PRI registers
    /// are reserved when IDR0.PRI == 0.
    pub const PRIQ_BASE: u64 = 0xC0;
    /// SMMU_PRIQ_PROD (32-bit), in page 1; optional page-0 alias at
    /// [`PRIQ_PROD_PAGE0_ALIAS`].
    pub const PRIQ_PROD: u64 = 0x100C8;
    /// SMMU_PRIQ_CONS (32-bit), in page 1; optional page-0 alias at
    /// [`PRIQ_CONS_PAGE0_ALIAS`].
    pub const PRIQ_CONS: u64 = 0x100CC;
    /// Optional page-0 alias of SMMU_PRIQ_PROD, §6.2.1.
    pub const PRIQ_PROD_PAGE0_ALIAS: u64 = 0xC8;
    /// Optional page-0 alias of SMMU_PRIQ_CONS, §6.2.1.
    pub const PRIQ_CONS_PAGE0_ALIAS: u64 = 0xCC;
    /// SMMU_PRIQ_IRQ_CFG0 (64-bit), §6.3.34: MSI address.
    pub const PRIQ_IRQ_CFG0: u64 = 0xD0;
    /// SMMU_PRIQ_IRQ_CFG1 (32-bit), §6.3.35: MSI data.
    pub const PRIQ_IRQ_CFG1: u64 = 0xD8;
    /// SMMU_PRIQ_IRQ_CFG2 (32-bit), §6.3.36: MSI attributes and LO.
    pub const PRIQ_IRQ_CFG2: u64 = 0xDC;
    /// Base of register page 1, §6.2.2.
    pub const PAGE1: u64 = 0x10000;
}

/// Size of the SMMU register frame: page 0 and page 1, 64 KiB each
/// (SMMUv3 §6.2).
pub const FRAME_SIZE: u64 = 0x20000;

crate::layout! {
    /// SMMU_IDR0, SMMUv3 §6.3.1: features of the Non-secure programming
    /// interface. 32-bit, RO, constant after reset.
    pub struct Idr0([u64; 1]);
    /// Stage 2 translation supported.
    S2P: 0, 0;
    /// Stage 1 translation supported.
    S1P: 1, 1;
    /// Translation table formats (see [`Ttf`]).
    TTF: 3, 2;
    /// Coherent access to tables, structures and queues.
    COHACC: 4, 4;
    /// Broadcast TLB maintenance supported.
    BTM: 5, 5;
    /// Hardware Access flag / Dirty state updates: 0 none, 1 AF, 2 AF and
    /// dirty, 3 also AF for table descriptors.
    HTTU: 7, 6;
    /// Dormant hint supported.
    DORMHINT: 8, 8;
    /// Hypervisor (EL2) stage 1 contexts supported.
    HYP: 9, 9;
    /// PCIe ATS supported.
    ATS: 10, 10;
    /// Split-stage (stage 1-only) ATS NOT supported.
    NS1ATS: 11, 11;
    /// 16-bit ASIDs.
    ASID16: 12, 12;
    /// MSIs supported.
    MSI: 13, 13;
    /// WFE wake-up events supported.
    SEV: 14, 14;
    /// Address translation operations supported.
    ATOS: 15, 15;
    /// PRI supported.
    PRI: 16, 16;
    /// VMID wildcard matching for TLB invalidation.
    VMW: 17, 17;
    /// 16-bit VMIDs.
    VMID16: 18, 18;
    /// 2-level CD tables supported.
    CD2L: 19, 19;
    /// Virtual ATOS page supported.
    VATOS: 20, 20;
    /// Table-walk endianness: 0b00 mixed, 0b10 little-endian only, 0b11
    /// big-endian only (0b01 reserved).
    TTENDIAN: 22, 21;
    /// Extra configuration-error events for ATS and PRI can be recorded.
    ATSRECERR: 23, 23;
    /// Stall model (see [`StallModel`]).
    STALL_MODEL: 25, 24;
    /// Terminate model: 1 = terminated transactions always abort (CD.A must
    /// be 1, no RAZ/WI termination).
    TERM_MODEL: 26, 26;
    /// Stream table levels: 0b00 linear only, 0b01 2-level too.
    ST_LEVEL: 28, 27;
    /// RME features supported (an extension newer than SMMUv3.3).
    RME_IMPL: 30, 30;
}

crate::layout! {
    /// SMMU_IDR1, SMMUv3 §6.3.2: sizes and presets. 32-bit, RO.
    pub struct Idr1([u64; 1]);
    /// StreamID width in bits (0–32).
    SIDSIZE: 5, 0;
    /// SubstreamID width in bits (0–20; 0 = no substreams).
    SSIDSIZE: 10, 6;
    /// Log2 of the maximum PRI queue entries (at most 19).
    PRIQS: 15, 11;
    /// Log2 of the maximum event queue entries (at most 19).
    EVENTQS: 20, 16;
    /// Log2 of the maximum command queue entries (at most 19).
    CMDQS: 25, 21;
    /// Incoming instruction/privilege/NS attributes can be overridden.
    ATTR_PERMS_OVR: 26, 26;
    /// Incoming memory type, shareability and hints can be overridden.
    ATTR_TYPES_OVR: 27, 27;
    /// Preset base registers hold offsets from page 0, not addresses.
    REL: 28, 28;
    /// Queue base registers are fixed.
    QUEUES_PRESET: 29, 29;
    /// Stream table base registers are fixed.
    TABLES_PRESET: 30, 30;
    /// Enhanced command queue interfaces (SMMU_IDR6 describes them).
    ECMDQ: 31, 31;
}

crate::layout! {
    /// SMMU_IDR3, SMMUv3 §6.3.4: optional features. 32-bit, RO. Bits 15 and
    /// up belong to extensions newer than SMMUv3.3.
    pub struct Idr3([u64; 1]);
    /// Hierarchical attribute disables (CD.HAD0/HAD1).
    HAD: 2, 2;
    /// Page-based hardware attributes.
    PBHA: 3, 3;
    /// EL0/EL1 execute-never distinction at stage 2.
    XNX: 4, 4;
    /// PASID always used on PRI auto-generated responses.
    PPS: 5, 5;
    /// MPAM supported.
    MPAM: 7, 7;
    /// Stage 2 control of memory types (STE.S2FWB).
    FWB: 8, 8;
    /// Small translation tables.
    STT: 9, 9;
    /// Range invalidation and level hint in TLBI commands (§4.4.1.1).
    RIL: 10, 10;
    /// Break-before-make level (0, 1 or 2).
    BBML: 12, 11;
    /// E0PD mechanism.
    E0PD: 13, 13;
    /// STE.S2PTW == 0 treats Device-memory table walks as Normal-NC.
    PTWNNC: 14, 14;
    /// Device permission table (newer extension).
    DPT: 15, 15;
    /// PASID on ATS translated transactions (newer extension).
    PASIDTT: 16, 16;
    /// Enhanced PAN (newer extension).
    EPAN: 17, 17;
    /// Stage 1 permission indirection (newer extension).
    S1PI: 18, 18;
    /// Stage 2 permission indirection (newer extension).
    S2PI: 19, 19;
    /// Stage 2 permission overlays (newer extension).
    S2PO: 20, 20;
    /// Translation hardening (newer extension).
    THE: 21, 21;
    /// Stage 2 NoTagAccess encodings (newer extension).
    MTEPERM: 22, 22;
    /// Stage 1 attribute index extension (newer extension).
    AIE: 23, 23;
}

crate::layout! {
    /// SMMU_IDR5, SMMUv3 §6.3.6: address sizes and granules. 32-bit, RO.
    pub struct Idr5([u64; 1]);
    /// Output address size (see [`oas_bits`]).
    OAS: 2, 0;
    /// 4 KiB granule supported.
    GRAN4K: 4, 4;
    /// 16 KiB granule supported.
    GRAN16K: 5, 5;
    /// 64 KiB granule supported.
    GRAN64K: 6, 6;
    /// 52-bit addresses with 4 KiB and 16 KiB granules.
    DS: 7, 7;
    /// 128-bit descriptors (newer extension).
    D128: 8, 8;
    /// Virtual address extension: 0b00 48-bit, 0b01 52-bit VAs (0b10 56-bit
    /// in newer revisions).
    VAX: 11, 10;
    /// Maximum number of outstanding stalled transactions.
    STALL_MAX: 31, 16;
}

crate::layout! {
    /// SMMU_IIDR, SMMUv3 §6.3.7: implementation identification. 32-bit, RO.
    pub struct Iidr([u64; 1]);
    /// JEP106 code of the implementer.
    IMPLEMENTER: 11, 0;
    /// Minor revision.
    REVISION: 15, 12;
    /// Major revision (variant).
    VARIANT: 19, 16;
    /// Product identifier.
    PRODUCTID: 31, 20;
}

crate::layout! {
    /// SMMU_AIDR, SMMUv3 §6.3.8: architecture revision, SMMUv3.ARCHMINORREV.
    /// 32-bit, RO.
    pub struct Aidr([u64; 1]);
    /// Minor revision (0 = SMMUv3.0, 1 = v3.1, ...).
    ARCHMINORREV: 3, 0;
    /// Major revision (0 = SMMUv3).
    ARCHMAJORREV: 7, 4;
}

crate::layout! {
    /// SMMU_CR0 and SMMU_CR0ACK, SMMUv3 §6.3.9. CR0 is RW and resets to 0;
    /// each field is reflected in CR0ACK (RO) once its Update completes.
    pub struct Cr0([u64; 1]);
    /// SMMUEN: translate Non-secure streams (0: bypass per GBPA).
    SMMUEN: 0, 0;
    /// PRIQEN: PRI queue writes enabled (reserved when IDR0.PRI == 0).
    PRIQEN: 1, 1;
    /// EVENTQEN: event queue writes enabled.
    EVENTQEN: 2, 2;
    /// CMDQEN: command processing enabled.
    CMDQEN: 3, 3;
    /// ATSCHK: check ATS translated traffic against STE.EATS (reserved
    /// when IDR0.ATS == 0).
    ATSCHK: 4, 4;
    /// VMW: VMID wildcard for TLB invalidation (reserved when IDR0.VMW == 0).
    VMW: 8, 6;
    /// DPT_WALK_EN: device permission table walks (newer extension).
    DPT_WALK_EN: 10, 10;
}

crate::layout! {
    /// SMMU_CR1, SMMUv3 §6.3.11: memory attributes of table and queue
    /// accesses. 32-bit, RW only while the guarding enables are 0; UNKNOWN
    /// at reset unless IDR1.TABLES_PRESET / QUEUES_PRESET.
    pub struct Cr1([u64; 1]);
    /// Queue inner cacheability: 0 NC, 1 WB, 2 WT (3 behaves as 0).
    QUEUE_IC: 1, 0;
    /// Queue outer cacheability.
    QUEUE_OC: 3, 2;
    /// Queue shareability: 0 NSH, 2 OSH, 3 ISH (1 behaves as 0).
    QUEUE_SH: 5, 4;
    /// Table inner cacheability.
    TABLE_IC: 7, 6;
    /// Table outer cacheability.
    TABLE_OC: 9, 8;
    /// Table shareability.
    TABLE_SH: 11, 10;
}

crate::layout! {
    /// SMMU_CR2, SMMUv3 §6.3.12. 32-bit, RW while CR0.SMMUEN and
    /// CR0ACK.SMMUEN are 0, RO otherwise; fields reset to UNKNOWN.
    pub struct Cr2([u64; 1]);
    /// E2H: EL2-E2H regime for STE.STRW == EL2 (reserved without IDR0.HYP).
    E2H: 0, 0;
    /// RECINVSID: record C_BAD_STREAMID for out-of-range StreamIDs.
    RECINVSID: 1, 1;
    /// PTM: private TLB maintenance, ignore broadcast TLBI (reserved
    /// without IDR0.BTM).
    PTM: 2, 2;
    /// REC_CFG_ATS: record the extended ATS/PRI configuration errors
    /// (reserved without IDR0.ATSRECERR).
    REC_CFG_ATS: 3, 3;
}

crate::layout! {
    /// SMMU_GBPA, SMMUv3 §6.3.14: attributes of bypassing traffic while
    /// SMMUEN == 0. 32-bit, RW while Update == 0. Update resets to 0; every
    /// other field resets to an IMPLEMENTATION DEFINED value. Software writes
    /// the whole register with Update set and polls for Update == 0.
    pub struct Gbpa([u64; 1]);
    /// MemAttr: memory type used when MTCFG == 1.
    MEMATTR: 3, 0;
    /// MTCFG: override the incoming memory type with MemAttr.
    MTCFG: 4, 4;
    /// ALLOCCFG: 0b0xxx use incoming hints; 0b1RWT override them.
    ALLOCCFG: 11, 8;
    /// SHCFG: 0 NSH, 1 use incoming, 2 OSH, 3 ISH.
    SHCFG: 13, 12;
    /// PRIVCFG: 0 use incoming, 2 unprivileged, 3 privileged (1 as 0).
    PRIVCFG: 17, 16;
    /// INSTCFG: 0 use incoming, 2 data, 3 instruction (1 as 0).
    INSTCFG: 19, 18;
    /// ABORT: abort all incoming transactions.
    ABORT: 20, 20;
    /// Update: set with a write, cleared by the SMMU when the update is done.
    UPDATE: 31, 31;
}

crate::layout! {
    /// SMMU_IRQ_CTRL and SMMU_IRQ_CTRLACK, SMMUv3 §6.3.16 and §6.3.18.
    /// IRQ_CTRL is RW and resets to 0; IRQ_CTRLACK (RO) reflects it once
    /// each Update completes.
    pub struct IrqCtrl([u64; 1]);
    /// Global error interrupt enable.
    GERROR_IRQEN: 0, 0;
    /// PRI queue interrupt enable (reserved when IDR0.PRI == 0).
    PRIQ_IRQEN: 1, 1;
    /// Event queue interrupt enable.
    EVENTQ_IRQEN: 2, 2;
}

crate::layout! {
    /// SMMU_GERROR and SMMU_GERRORN, SMMUv3 §6.3.19 and §6.3.20. Both reset
    /// to 0. GERROR is RO: the SMMU toggles a bit to activate an error;
    /// software acknowledges by making the GERRORN bit (RW) equal to it. An
    /// error is active while the two bits differ.
    pub struct Gerror([u64; 1]);
    /// CMDQ_ERR: a command could not be processed; CMDQ_CONS.ERR says why.
    CMDQ_ERR: 0, 0;
    /// EVENTQ_ABT_ERR: an event queue access aborted.
    EVENTQ_ABT_ERR: 2, 2;
    /// PRIQ_ABT_ERR: a PRI queue access aborted.
    PRIQ_ABT_ERR: 3, 3;
    /// MSI_CMDQ_ABT_ERR: a CMD_SYNC MSI aborted.
    MSI_CMDQ_ABT_ERR: 4, 4;
    /// MSI_EVENTQ_ABT_ERR: an event queue MSI aborted.
    MSI_EVENTQ_ABT_ERR: 5, 5;
    /// MSI_PRIQ_ABT_ERR: a PRI queue MSI aborted.
    MSI_PRIQ_ABT_ERR: 6, 6;
    /// MSI_GERROR_ABT_ERR: a GERROR MSI aborted.
    MSI_GERROR_ABT_ERR: 7, 7;
    /// SFM_ERR: service failure mode entered.
    SFM_ERR: 8, 8;
    /// CMDQP_ERR: an error on an enhanced command queue page (IDR1.ECMDQ).
    CMDQP_ERR: 9, 9;
    /// DPT_ERR: device permission table lookup fault (newer extension).
    DPT_ERR: 10, 10;
}

crate::layout! {
    /// SMMU_{GERROR,EVENTQ,PRIQ}_IRQ_CFG0, SMMUv3 §6.3.21, §6.3.30 and §6.3.34: MSI
    /// target address. 64-bit, RW while the matching IRQ enable is 0; ADDR
    /// resets to UNKNOWN. Present only when IDR0.MSI == 1.
    pub struct IrqCfg0([u64; 1]);
    /// Physical address of the MSI target, bits 51:2, in place (0: no MSI).
    ADDR: 51, 2;
}

crate::layout! {
    /// SMMU_{GERROR,EVENTQ,PRIQ}_IRQ_CFG1, SMMUv3 §6.3.22, §6.3.31 and §6.3.35: MSI payload.
    /// 32-bit, RW while the matching IRQ enable is 0; resets to UNKNOWN.
    pub struct IrqCfg1([u64; 1]);
    /// The 32-bit value written by the MSI.
    DATA: 31, 0;
}

crate::layout! {
    /// SMMU_{GERROR,EVENTQ,PRIQ}_IRQ_CFG2, SMMUv3 §6.3.23, §6.3.32 and §6.3.36: MSI attributes.
    /// 32-bit, RW while the matching IRQ enable is 0; resets to UNKNOWN.
    pub struct IrqCfg2([u64; 1]);
    /// MemAttr: memory type of the MSI write (encoded like STE.MemAttr).
    MEMATTR: 3, 0;
    /// SH: shareability, 0 NSH, 2 OSH, 3 ISH (1 behaves as 0).
    SH: 5, 4;
    /// LO (PRIQ_IRQ_CFG2 only; reserved in the other two): interrupt only
    /// for requests with Last set.
    LO: 31, 31;
}

crate::layout! {
    /// SMMU_STRTAB_BASE, SMMUv3 §6.3.24: stream table base. 64-bit, RW only
    /// while SMMUEN == 0; UNKNOWN at reset unless IDR1.TABLES_PRESET.
    pub struct StrtabBase([u64; 1]);
    /// Physical address bits 51:6, in place. The SMMU aligns it to the
    /// table size (linear) or the level-1 table size (2-level).
    ADDR: 51, 6;
    /// RA: read-allocate hint.
    RA: 62, 62;
}

crate::layout! {
    /// SMMU_STRTAB_BASE_CFG, SMMUv3 §6.3.25. 32-bit, RW only while
    /// SMMUEN == 0; UNKNOWN at reset unless IDR1.TABLES_PRESET.
    pub struct StrtabBaseCfg([u64; 1]);
    /// Log2 of the number of StreamIDs the table covers (capped at
    /// IDR1.SIDSIZE for lookups).
    LOG2SIZE: 5, 0;
    /// StreamID bits resolved by a level-2 table (see [`effective_split`]).
    SPLIT: 10, 6;
    /// Table format (see [`StrtabFmt`]).
    FMT: 17, 16;
}

crate::layout! {
    /// SMMU_CMDQ_BASE, SMMU_EVENTQ_BASE and SMMU_PRIQ_BASE, SMMUv3 §6.3.26,
    /// §6.3.29 and §6.3.33: queue base and size. 64-bit, RW only while the
    /// queue's enable is 0; UNKNOWN at reset unless IDR1.QUEUES_PRESET.
    pub struct QueueBase([u64; 1]);
    /// Log2 of the number of entries (capped at IDR1.CMDQS / EVENTQS / PRIQS).
    LOG2SIZE: 4, 0;
    /// Physical address bits 51:5, in place; the SMMU aligns it to the
    /// larger of the queue size and 32 bytes.
    ADDR: 51, 5;
    /// RA (read-allocate) in CMDQ_BASE, WA (write-allocate) in the event
    /// and PRI queue bases.
    RWA: 62, 62;
}

crate::layout! {
    /// The queue index registers SMMU_{CMDQ,EVENTQ,PRIQ}_{PROD,CONS},
    /// SMMUv3 §6.3.27, §6.3.28 and their event/PRI queue counterparts in
    /// page 1 (§6.2.2). 32-bit;
    /// UNKNOWN at reset. PROD is written by the producer (software for the
    /// command queue, the SMMU for the others) and CONS by the consumer.
    /// Not every register has every field: ERR is CMDQ_CONS only, bit 31 is
    /// OVFLG in EVENTQ_PROD/PRIQ_PROD and OVACKFLG in EVENTQ_CONS/PRIQ_CONS,
    /// and RES0 in the command queue registers.
    pub struct QueueIndex([u64; 1]);
    /// WR or RD with its wrap flag: the low LOG2SIZE bits index the queue,
    /// bit LOG2SIZE is the wrap flag, bits above it are RES0 (see
    /// [`QueueIndex::index`], [`QueueIndex::wrap`]).
    INDEX: 19, 0;
    /// ERR (CMDQ_CONS): command error code (see [`CmdqError`]), valid while
    /// GERROR.CMDQ_ERR is active.
    ERR: 30, 24;
    /// OVFLG (EVENTQ_PROD, PRIQ_PROD): toggled by the SMMU when the queue
    /// overflowed; OVACKFLG (the CONS registers): software copies OVFLG here
    /// to acknowledge.
    OVFLG: 31, 31;
}

/// Largest queue LOG2SIZE an index register can express (IDR1.CMDQS,
/// EVENTQS and PRIQS are at most 19), SMMUv3 §6.3.27.
pub const MAX_QUEUE_LOG2SIZE: u32 = 19;

impl QueueIndex {
    const fn qs(log2size: u32) -> u32 {
        if log2size > MAX_QUEUE_LOG2SIZE {
            MAX_QUEUE_LOG2SIZE
        } else {
            log2size
        }
    }

    /// The entry index: the low `log2size` bits of WR/RD (`log2size` is
    /// capped at 19).
    pub const fn index(&self, log2size: u32) -> u32 {
        (self.0[0] as u32) & ((1u32 << Self::qs(log2size)) - 1)
    }

    /// The wrap flag: bit `log2size` of WR/RD.
    pub const fn wrap(&self, log2size: u32) -> bool {
        (self.0[0] >> Self::qs(log2size)) & 1 != 0
    }

    /// Index and wrap flag together (bits `log2size`:0), the value that
    /// PROD and CONS are compared on.
    pub const fn pointer(&self, log2size: u32) -> u32 {
        (self.0[0] as u32) & ((2u32 << Self::qs(log2size)) - 1)
    }

    /// Returns a copy whose WR/RD field holds `index` and `wrap` for a queue
    /// of 2^`log2size` entries (the bits above the wrap flag are cleared);
    /// ERR and OVFLG are kept.
    #[must_use]
    pub fn with_pointer(self, log2size: u32, index: u32, wrap: bool) -> Self {
        let qs = Self::qs(log2size);
        let v = (index & ((1u32 << qs) - 1)) | (wrap as u32) << qs;
        self.with(Self::INDEX, v as u64)
    }

    /// Returns a copy advanced by one entry, toggling the wrap flag when the
    /// index passes the end of the queue.
    #[must_use]
    pub fn incremented(self, log2size: u32) -> Self {
        let qs = Self::qs(log2size);
        let next = (self.pointer(qs) + 1) & ((2u32 << qs) - 1);
        self.with(Self::INDEX, next as u64)
    }
}

/// Whether a queue is empty: PROD and CONS have the same index and wrap
/// flag (SMMUv3 §3.5 queue semantics, restated in §6.3.27).
pub const fn queue_empty(prod: QueueIndex, cons: QueueIndex, log2size: u32) -> bool {
    prod.pointer(log2size) == cons.pointer(log2size)
}

/// Whether a queue is full: same index, different wrap flags (§6.3.27).
pub const fn queue_full(prod: QueueIndex, cons: QueueIndex, log2size: u32) -> bool {
    prod.index(log2size) == cons.index(log2size) && prod.wrap(log2size) != cons.wrap(log2size)
}

/// CMDQ_CONS.ERR, the command queue error code, SMMUv3 §7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmdqError {
    /// 0x00 CERROR_NONE: defined for completeness; never reported.
    None = 0,
    /// 0x01 CERROR_ILL: unknown opcode, or a valid opcode with illegal
    /// operands or a rejected reserved field.
    Illegal = 1,
    /// 0x02 CERROR_ABT: fetching the command aborted.
    Abort = 2,
    /// 0x03 CERROR_ATC_INV_SYNC: a CMD_SYNC could not complete an earlier
    /// CMD_ATC_INV (ATS invalidation timeout).
    AtcInvSync = 3,
}

impl CmdqError {
    /// Decodes the 7-bit ERR field; `None` for an undefined code.
    pub const fn from_bits(v: u64) -> Option<Self> {
        match v & 0x7F {
            0 => Some(Self::None),
            1 => Some(Self::Illegal),
            2 => Some(Self::Abort),
            3 => Some(Self::AtcInvSync),
            _ => None,
        }
    }
    /// The ERR encoding.
    pub const fn bits(self) -> u64 {
        self as u64
    }
}

/// STRTAB_BASE_CFG.FMT, the stream table format, SMMUv3 §6.3.25.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrtabFmt {
    /// 0b00: an array of STEs.
    Linear,
    /// 0b01: an array of level-1 stream table descriptors.
    TwoLevel,
}

impl StrtabFmt {
    /// Decodes FMT; `None` for the reserved values 0b10 and 0b11.
    pub const fn from_bits(v: u64) -> Option<Self> {
        match v & 3 {
            0 => Some(Self::Linear),
            1 => Some(Self::TwoLevel),
            _ => None,
        }
    }
    /// The format the SMMU uses: reserved values behave as linear (§6.3.25).
    pub const fn effective(v: u64) -> Self {
        match Self::from_bits(v) {
            Some(f) => f,
            None => Self::Linear,
        }
    }
    /// The FMT encoding.
    pub const fn bits(self) -> u64 {
        match self {
            Self::Linear => 0,
            Self::TwoLevel => 1,
        }
    }
}

/// The SPLIT the SMMU uses for a 2-level stream table, SMMUv3 §6.3.25: 6, 8
/// or 10 as written; any other value behaves as 6.
pub const fn effective_split(split: u64) -> u32 {
    match split & 0x1F {
        8 => 8,
        10 => 10,
        _ => 6,
    }
}

/// IDR0.STALL_MODEL, SMMUv3 §6.3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StallModel {
    /// 0b00: both the stall and terminate models are supported.
    StallAndTerminate,
    /// 0b01: no stalling; STE.S2S and CD.S must be 0 and CMD_RESUME /
    /// CMD_STALL_TERM are illegal.
    TerminateOnly,
    /// 0b10: stalling is forced; STE.S2S and CD.S must be 1.
    StallForced,
}

impl StallModel {
    /// Decodes STALL_MODEL; `None` for the reserved value 0b11.
    pub const fn from_bits(v: u64) -> Option<Self> {
        match v & 3 {
            0 => Some(Self::StallAndTerminate),
            1 => Some(Self::TerminateOnly),
            2 => Some(Self::StallForced),
            _ => None,
        }
    }
    /// The STALL_MODEL encoding.
    pub const fn bits(self) -> u64 {
        match self {
            Self::StallAndTerminate => 0,
            Self::TerminateOnly => 1,
            Self::StallForced => 2,
        }
    }
    /// Whether CMD_RESUME and CMD_STALL_TERM are available (§4.7.1, §4.7.2).
    pub const fn can_stall(self) -> bool {
        !matches!(self, Self::TerminateOnly)
    }
}

/// IDR0.TTF, the translation table formats supported at both stages,
/// SMMUv3 §6.3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ttf {
    /// 0b01: VMSAv8-32 LPAE only.
    Aarch32,
    /// 0b10: VMSAv8-64 only.
    Aarch64,
    /// 0b11: both.
    Aarch32And64,
}

impl Ttf {
    /// Decodes TTF; `None` for the reserved value 0b00.
    pub const fn from_bits(v: u64) -> Option<Self> {
        match v & 3 {
            1 => Some(Self::Aarch32),
            2 => Some(Self::Aarch64),
            3 => Some(Self::Aarch32And64),
            _ => None,
        }
    }
    /// The TTF encoding.
    pub const fn bits(self) -> u64 {
        match self {
            Self::Aarch32 => 1,
            Self::Aarch64 => 2,
            Self::Aarch32And64 => 3,
        }
    }
    /// Whether VMSAv8-64 tables (CD.AA64 = 1, STE.S2AA64 = 1) are supported.
    pub const fn aarch64(self) -> bool {
        !matches!(self, Self::Aarch32)
    }
}

/// The output address size IDR5.OAS encodes, in bits, SMMUv3 §6.3.6: 32,
/// 36, 40, 42, 44, 48, and 52 from SMMUv3.1. 0b111 is reserved here (later
/// revisions give it 56 bits).
pub const fn oas_bits(oas: u64) -> Option<u32> {
    match oas {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::check_table;

    #[test]
    fn field_tables_are_well_formed() {
        for t in [
            Idr0::FIELDS,
            Idr1::FIELDS,
            Idr3::FIELDS,
            Idr5::FIELDS,
            Iidr::FIELDS,
            Aidr::FIELDS,
            Cr0::FIELDS,
            Cr1::FIELDS,
            Cr2::FIELDS,
            Gbpa::FIELDS,
            IrqCtrl::FIELDS,
            Gerror::FIELDS,
            IrqCfg0::FIELDS,
            IrqCfg1::FIELDS,
            IrqCfg2::FIELDS,
            StrtabBase::FIELDS,
            StrtabBaseCfg::FIELDS,
            QueueBase::FIELDS,
            QueueIndex::FIELDS,
        ] {
            check_table(1, t).unwrap();
        }
    }

    /// 32-bit registers keep their fields in bits 31:0.
    #[test]
    fn thirty_two_bit_registers_fit_in_32_bits() {
        for t in [
            Idr0::FIELDS,
            Idr1::FIELDS,
            Idr3::FIELDS,
            Idr5::FIELDS,
            Iidr::FIELDS,
            Aidr::FIELDS,
            Cr0::FIELDS,
            Cr1::FIELDS,
            Cr2::FIELDS,
            Gbpa::FIELDS,
            IrqCtrl::FIELDS,
            Gerror::FIELDS,
            IrqCfg1::FIELDS,
            IrqCfg2::FIELDS,
            StrtabBaseCfg::FIELDS,
            QueueIndex::FIELDS,
        ] {
            assert!(t.iter().all(|f| f.hi < 32), "{t:?}");
        }
    }

    /// §6.2.1/§6.2.2 offsets, cross-checked with the oracle's register table
    /// (smmuv3_oracle.py `R`).
    #[test]
    fn offsets_match_the_register_map() {
        use offset::*;
        assert_eq!(
            [IDR0, IDR1, IDR2, IDR3, IDR4, IDR5, IIDR, AIDR, CR0, CR0ACK, CR1, CR2],
            [0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x28, 0x2C]
        );
        assert_eq!(
            [STATUSR, GBPA, AGBPA, IRQ_CTRL, IRQ_CTRLACK, GERROR, GERRORN],
            [0x40, 0x44, 0x48, 0x50, 0x54, 0x60, 0x64]
        );
        assert_eq!([GERROR_IRQ_CFG0, GERROR_IRQ_CFG1, GERROR_IRQ_CFG2], [0x68, 0x70, 0x74]);
        assert_eq!([STRTAB_BASE, STRTAB_BASE_CFG, CMDQ_BASE, CMDQ_PROD, CMDQ_CONS], [0x80, 0x88, 0x90, 0x98, 0x9C]);
        assert_eq!([EVENTQ_BASE, EVENTQ_PROD, EVENTQ_CONS], [0xA0, 0x100A8, 0x100AC]);
        assert_eq!([EVENTQ_IRQ_CFG0, EVENTQ_IRQ_CFG1, EVENTQ_IRQ_CFG2], [0xB0, 0xB8, 0xBC]);
        assert_eq!([PRIQ_BASE, PRIQ_PROD, PRIQ_CONS], [0xC0, 0x100C8, 0x100CC]);
        assert_eq!([PRIQ_IRQ_CFG0, PRIQ_IRQ_CFG1, PRIQ_IRQ_CFG2], [0xD0, 0xD8, 0xDC]);
        assert_eq!(EVENTQ_PROD - PAGE1, EVENTQ_PROD_PAGE0_ALIAS);
        assert_eq!(EVENTQ_CONS - PAGE1, EVENTQ_CONS_PAGE0_ALIAS);
        assert_eq!(PRIQ_PROD - PAGE1, PRIQ_PROD_PAGE0_ALIAS);
        assert_eq!(PRIQ_CONS - PAGE1, PRIQ_CONS_PAGE0_ALIAS);
        assert_eq!(FRAME_SIZE, 2 * PAGE1);
        // 64-bit registers are 8-byte aligned.
        for o in [GERROR_IRQ_CFG0, STRTAB_BASE, CMDQ_BASE, EVENTQ_BASE, EVENTQ_IRQ_CFG0, PRIQ_BASE, PRIQ_IRQ_CFG0] {
            assert_eq!(o % 8, 0);
        }
    }

    /// QEMU 10.0.2 `virt` nested SMMU, IDR0 = 0x0d44101b
    /// (smmuv3-conformance/README.md "Platform facts"), against §6.3.1.
    #[test]
    fn qemu_idr0_decodes_to_documented_fields() {
        let r = Idr0([0x0D44_101B]);
        assert_eq!(r.get(Idr0::S2P), 1);
        assert_eq!(r.get(Idr0::S1P), 1);
        assert_eq!(Ttf::from_bits(r.get(Idr0::TTF)), Some(Ttf::Aarch64));
        assert_eq!(r.get(Idr0::COHACC), 1);
        assert_eq!(r.get(Idr0::ASID16), 1);
        assert_eq!(r.get(Idr0::VMID16), 1);
        assert_eq!(r.get(Idr0::TTENDIAN), 0b10);
        assert_eq!(StallModel::from_bits(r.get(Idr0::STALL_MODEL)), Some(StallModel::TerminateOnly));
        assert_eq!(r.get(Idr0::TERM_MODEL), 1);
        assert_eq!(r.get(Idr0::ST_LEVEL), 0b01);
        for f in [Idr0::ATS, Idr0::PRI, Idr0::HYP, Idr0::MSI, Idr0::BTM, Idr0::HTTU, Idr0::SEV, Idr0::CD2L] {
            assert_eq!(r.get(f), 0, "{}", f.name);
        }
        assert!(!r.has_reserved_bits());
        // The stage-1-only and stage-2-only variants differ only in S1P/S2P.
        assert_eq!(Idr0([0x0D44_101A]).get(Idr0::S2P), 0);
        assert_eq!(Idr0([0x0D44_1019]).get(Idr0::S1P), 0);
    }

    /// IDR1 = 0x02730010: SIDSIZE 16, SSIDSIZE 0, PRIQS 0, EVENTQS = CMDQS = 19.
    #[test]
    fn qemu_idr1_decodes_to_documented_fields() {
        let r = Idr1([0x0273_0010]);
        assert_eq!(r.get(Idr1::SIDSIZE), 16);
        assert_eq!(r.get(Idr1::SSIDSIZE), 0);
        assert_eq!(r.get(Idr1::PRIQS), 0);
        assert_eq!(r.get(Idr1::EVENTQS), 19);
        assert_eq!(r.get(Idr1::CMDQS), 19);
        assert!(!r.has_reserved_bits());
    }

    /// IDR3 = 0x1414: HAD, XNX, RIL, BBML = 2.
    #[test]
    fn qemu_idr3_decodes_to_documented_fields() {
        let r = Idr3([0x1414]);
        assert_eq!(r.get(Idr3::HAD), 1);
        assert_eq!(r.get(Idr3::XNX), 1);
        assert_eq!(r.get(Idr3::RIL), 1);
        assert_eq!(r.get(Idr3::BBML), 2);
        assert_eq!(r.get(Idr3::MPAM), 0);
        assert_eq!(r.to_string(), "Idr3 HAD XNX RIL BBML=0x2");
        // The stage-1-only SMMU has no XNX.
        assert_eq!(Idr3([0x1404]).get(Idr3::XNX), 0);
    }

    /// IDR5 = 0x74: OAS 44 bits, 4K/16K/64K granules.
    #[test]
    fn qemu_idr5_decodes_to_documented_fields() {
        let r = Idr5([0x74]);
        assert_eq!(oas_bits(r.get(Idr5::OAS)), Some(44));
        assert_eq!((r.get(Idr5::GRAN4K), r.get(Idr5::GRAN16K), r.get(Idr5::GRAN64K)), (1, 1, 1));
        assert_eq!(r.get(Idr5::VAX), 0);
        assert_eq!(r.get(Idr5::STALL_MAX), 0);
    }

    #[test]
    fn oas_table() {
        let bits: Vec<_> = (0..8).map(oas_bits).collect();
        assert_eq!(bits, [Some(32), Some(36), Some(40), Some(42), Some(44), Some(48), Some(52), None]);
    }

    /// QEMU's reset GBPA is 0x1000: SHCFG = use incoming, no abort.
    #[test]
    fn gbpa_reset_value_and_abort() {
        let g = Gbpa([0x1000]);
        assert_eq!(g.get(Gbpa::SHCFG), 1);
        assert_eq!(g.get(Gbpa::ABORT), 0);
        let w = Gbpa::default().with(Gbpa::ABORT, 1).with(Gbpa::UPDATE, 1);
        assert_eq!(w.words(), [0x8010_0000]);
    }

    /// The oracle's CR0 = EVENTQEN | CMDQEN | SMMUEN = 0xd, CR2 = RECINVSID = 0x2,
    /// GERROR.CMDQ_ERR = bit 0, EVENTQ_ABT_ERR = bit 2.
    #[test]
    fn control_bits_match_the_oracle() {
        let cr0 = Cr0::default().with(Cr0::SMMUEN, 1).with(Cr0::EVENTQEN, 1).with(Cr0::CMDQEN, 1);
        assert_eq!(cr0.words(), [0xD]);
        assert_eq!(Cr2::default().with(Cr2::RECINVSID, 1).words(), [0x2]);
        assert_eq!(Gerror::default().with(Gerror::CMDQ_ERR, 1).words(), [1]);
        assert_eq!(Gerror::default().with(Gerror::EVENTQ_ABT_ERR, 1).words(), [4]);
        assert_eq!(Gerror::default().with(Gerror::SFM_ERR, 1).words(), [0x100]);
        assert_eq!(IrqCtrl::default().with(IrqCtrl::EVENTQ_IRQEN, 1).words(), [4]);
    }

    /// The oracle's STRTAB_BASE_CFG final value 0x184: LOG2SIZE 4, SPLIT 6,
    /// FMT linear.
    #[test]
    fn strtab_base_cfg_decodes() {
        let c = StrtabBaseCfg([0x184]);
        assert_eq!(c.get(StrtabBaseCfg::LOG2SIZE), 4);
        assert_eq!(c.get(StrtabBaseCfg::SPLIT), 6);
        assert_eq!(StrtabFmt::from_bits(c.get(StrtabBaseCfg::FMT)), Some(StrtabFmt::Linear));
        let two = StrtabBaseCfg::default().with(StrtabBaseCfg::FMT, StrtabFmt::TwoLevel.bits());
        assert_eq!(two.words(), [0x1_0000]);
        assert_eq!(StrtabFmt::from_bits(2), None);
        assert_eq!(StrtabFmt::effective(3), StrtabFmt::Linear);
        assert_eq!([effective_split(6), effective_split(8), effective_split(10), effective_split(7)], [6, 8, 10, 6]);
        let base = StrtabBase::default().with_in_place(StrtabBase::ADDR, 0x4010_0040).with(StrtabBase::RA, 1);
        assert_eq!(base.words(), [0x4000_0000_4010_0040]);
    }

    #[test]
    fn queue_base_fields() {
        let b = QueueBase::default().with_in_place(QueueBase::ADDR, 0x4020_0000).with(QueueBase::LOG2SIZE, 7);
        assert_eq!(b.words(), [0x4020_0007]);
        assert_eq!(b.get_in_place(QueueBase::ADDR), 0x4020_0000);
        assert_eq!(QueueBase::default().with(QueueBase::RWA, 1).words(), [1 << 62]);
    }

    /// The oracle's check after an illegal command: CMDQ_CONS masked with
    /// 0x7f00003f reads 0x1000003 (ERR = CERROR_ILL, RD = 3 in a 32-entry queue).
    #[test]
    fn cmdq_cons_error_code() {
        let cons = QueueIndex([0x0100_0003]);
        assert_eq!(CmdqError::from_bits(cons.get(QueueIndex::ERR)), Some(CmdqError::Illegal));
        assert_eq!(cons.index(5), 3);
        assert!(!cons.wrap(5));
        for e in [CmdqError::None, CmdqError::Illegal, CmdqError::Abort, CmdqError::AtcInvSync] {
            assert_eq!(CmdqError::from_bits(e.bits()), Some(e));
        }
        assert_eq!(CmdqError::from_bits(4), None);
    }

    #[test]
    fn queue_index_wrap_and_fullness() {
        let qs = 2; // four entries
        let p = QueueIndex::default().with_pointer(qs, 3, false);
        assert_eq!(p.words(), [3]);
        let p1 = p.incremented(qs);
        assert_eq!((p1.index(qs), p1.wrap(qs)), (0, true));
        assert_eq!(p1.words(), [4]);
        assert_eq!(p1.incremented(qs).incremented(qs).incremented(qs).incremented(qs).words(), [0]);
        let cons = QueueIndex::default();
        assert!(queue_empty(cons, cons, qs));
        assert!(queue_full(p1, cons, qs));
        assert!(!queue_empty(p1, cons, qs));
        // Bits above the wrap flag and the flags are not part of the pointer.
        let odd = QueueIndex([0x8000_0000 | 0x100 | 5]);
        assert_eq!(odd.pointer(qs), 5);
        assert_eq!(odd.with_pointer(qs, 1, false).words(), [0x8000_0001]);
        // One-entry queue: no index bits, the wrap flag is bit 0.
        let one = QueueIndex::default().incremented(0);
        assert_eq!((one.index(0), one.wrap(0)), (0, true));
        // LOG2SIZE beyond 19 is capped.
        assert_eq!(QueueIndex([1 << 19]).index(31), 0);
        assert!(QueueIndex([1 << 19]).wrap(31));
    }

    #[test]
    fn enum_decoders() {
        for v in 0..4 {
            if let Some(m) = StallModel::from_bits(v) {
                assert_eq!(m.bits(), v);
            }
            if let Some(t) = Ttf::from_bits(v) {
                assert_eq!(t.bits(), v);
            }
        }
        assert_eq!(StallModel::from_bits(3), None);
        assert_eq!(Ttf::from_bits(0), None);
        assert!(StallModel::StallAndTerminate.can_stall() && !StallModel::TerminateOnly.can_stall());
        assert!(Ttf::Aarch32And64.aarch64() && !Ttf::Aarch32.aarch64());
    }
}
