//! Implementation features and the STE/CD validity rules (SMMUv3 §5.2,
//! §5.4 "ILLEGAL" conditions), producing typed configurations.

use iommu_format::smmuv3::cd::{Cd, S1Fmt};
use iommu_format::smmuv3::desc::{pa_bits, Granule};
use iommu_format::smmuv3::ste::{S1Dss, Ste, SteConfig};

use super::ConfigFault;

/// What an SMMU implements, as its ID registers say (SMMUv3 §6.3.1–§6.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Features {
    /// Stage 1 implemented (IDR0.S1P).
    pub s1p: bool,
    /// Stage 2 implemented (IDR0.S2P).
    pub s2p: bool,
    /// Output address size in bits (IDR5.OAS).
    pub oas_bits: u32,
    /// SubstreamID bits (IDR1.SSIDSIZE); 0 means no substreams.
    pub ssid_bits: u32,
    /// StreamID bits (IDR1.SIDSIZE).
    pub sid_bits: u32,
    /// Stall model: stalling supported (IDR0.STALL_MODEL 0b00 or 0b10).
    pub stall: bool,
    /// Stalling forced (IDR0.STALL_MODEL 0b10).
    pub stall_force: bool,
    /// Terminate model: transactions can only abort (IDR0.TERM_MODEL = 1),
    /// so CD.A = 0 is ILLEGAL.
    pub term_abort_only: bool,
    /// Hardware access-flag update (IDR0.HTTU ≥ 0b01).
    pub httu_af: bool,
    /// Hardware dirty update (IDR0.HTTU = 0b10).
    pub httu_dirty: bool,
    /// ATS (IDR0.ATS).
    pub ats: bool,
    /// PRI (IDR0.PRI).
    pub pri: bool,
    /// 2-level CD tables (IDR0.CD2L).
    pub cd2l: bool,
    /// 2-level stream tables (IDR0.ST_LEVEL = 0b01).
    pub st2l: bool,
    /// Hypervisor (EL2) translation regimes (IDR0.HYP).
    pub hyp: bool,
    /// Granules supported (IDR5.GRAN4K, GRAN16K, GRAN64K).
    pub gran: [bool; 3],
    /// 16-bit VMIDs (IDR0.VMID16).
    pub vmid16: bool,
    /// 16-bit ASIDs (IDR0.ASID16).
    pub asid16: bool,
    /// Stage-2 execute-never extension (IDR3.XNX).
    pub xnx: bool,
}

impl Features {
    /// Input address size (SMMUv3 §3.4): the OAS, or 40 bits if larger,
    /// when AArch32 tables are supported; AArch64-only here, so the OAS.
    pub const fn ias_bits(&self) -> u32 {
        self.oas_bits
    }

    /// Whether `g` is supported.
    pub const fn granule(&self, g: Granule) -> bool {
        match g {
            Granule::G4K => self.gran[0],
            Granule::G16K => self.gran[1],
            Granule::G64K => self.gran[2],
        }
    }
}

/// A VMSAv8-64 table tree: where it starts and how addresses index it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TableCfg {
    /// Base of the start-level table (an IPA for nested stage 1), aligned.
    pub base: u64,
    /// Granule.
    pub granule: Granule,
    /// Input size in bits (64 − TxSZ).
    pub input_bits: u32,
    /// Starting level (0–3).
    pub start_level: u8,
    /// Index bits resolved by the start level (more than the granule's
    /// stride for concatenated stage-2 start tables).
    pub root_bits: u32,
    /// Output size in bits (effective IPS or S2PS).
    pub out_bits: u32,
}

impl TableCfg {
    /// Size in bytes of the start-level table (or concatenated tables).
    pub const fn root_size(&self) -> u64 {
        8 << self.root_bits
    }
}

/// Stage-1 part of a stream's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct S1StreamCfg {
    /// S1ContextPtr (an IPA when stage 2 is enabled).
    pub context_ptr: u64,
    /// CD table format (linear when there is a single CD).
    pub fmt: S1Fmt,
    /// log2 of the number of CDs; 0 = one CD and no substreams.
    pub cdmax: u32,
    /// Handling of transactions without SubstreamID.
    pub dss: S1Dss,
}

/// Stage-2 part of a stream's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct S2Cfg {
    /// Tables.
    pub tables: TableCfg,
    /// Access-flag faults disabled (S2AFFD).
    pub affd: bool,
    /// Record stage-2 translation-class faults (S2R).
    pub record: bool,
    /// Stall stage-2 faults (S2S).
    pub stall: bool,
}

/// A valid STE, decoded (SMMUv3 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamCfg {
    /// What the stream does.
    pub config: SteConfig,
    /// Stage 1, when Config enables it.
    pub s1: Option<S1StreamCfg>,
    /// Stage 2, when Config enables it.
    pub s2: Option<S2Cfg>,
    /// VMID tagging this stream's TLB entries (S2VMID when stage 2 is
    /// implemented, else 0).
    pub vmid: u16,
    /// ATS translation requests enabled (EATS ≠ 0 and IDR0.ATS).
    pub eats: bool,
    /// Privilege override (PRIVCFG): `None` uses the incoming attribute.
    pub priv_override: Option<bool>,
    /// Instruction override (INSTCFG): `None` uses the incoming attribute.
    pub inst_override: Option<bool>,
    /// Stage-1 faults may not stall (S1STALLD).
    pub s1_stall_disabled: bool,
}

/// The two halves of a stage-1 regime, indexed by VA[55].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CdCfg {
    /// ASID.
    pub asid: u16,
    /// TTB0 and TTB1 trees; `None` when EPDx disables walks of that half.
    pub tt: [Option<TableCfg>; 2],
    /// Top-byte ignore per half.
    pub tbi: [bool; 2],
    /// Hierarchical attributes disabled per half (HAD0, HAD1).
    pub had: [bool; 2],
    /// Access-flag faults disabled (AFFD).
    pub affd: bool,
    /// Write implies execute-never (WXN).
    pub wxn: bool,
    /// Unprivileged write implies privileged execute-never (UWXN).
    pub uwxn: bool,
    /// Privileged access never (PAN).
    pub pan: bool,
    /// Record stage-1 translation-class faults (R).
    pub record: bool,
    /// Stall stage-1 faults (S).
    pub stall: bool,
}

fn bad_ste(ok: bool) -> Result<(), ConfigFault> {
    if ok {
        Ok(())
    } else {
        Err(ConfigFault::BadSte)
    }
}

/// Stage-2 geometry from S2TG/S2T0SZ/S2SL0 (SMMUv3 §5.2 with the Arm ARM's
/// stage-2 start-level rules, D8.2.6): `None` when ILLEGAL. The start
/// level must resolve at least one index bit and at most 16 concatenated
/// tables.
pub fn s2_geometry(tg: u64, t0sz: u64, sl0: u64, f: &Features) -> Option<(Granule, u32, u8, u32)> {
    let g = Granule::from_tg0(tg).filter(|g| f.granule(*g))?;
    let input = 64u32.checked_sub(t0sz as u32)?;
    // S2T0SZ range: at least 64 − IAS, at most 39 (25-bit inputs).
    if input > f.ias_bits() || input < 25 {
        return None;
    }
    let start: u8 = match (g, sl0) {
        (Granule::G4K, 0) => 2,
        (Granule::G4K, 1) => 1,
        (Granule::G4K, 2) => 0,
        (Granule::G16K | Granule::G64K, 0) => 3,
        (Granule::G16K | Granule::G64K, 1) => 2,
        (Granule::G16K | Granule::G64K, 2) => 1,
        // SL0 = 0b11 is reserved without the 52-bit and TTST extensions.
        _ => return None,
    };
    let rb = input.checked_sub(g.level_shift(start)).filter(|rb| *rb >= 1)?;
    if rb > g.stride() + 4 {
        return None;
    }
    Some((g, input, start, rb))
}

fn align_down(v: u64, size: u64) -> u64 {
    v & !(size.max(64) - 1)
}

/// Decodes an STE fetched for a stream, applying the ILLEGAL checks of
/// SMMUv3 §5.2 for the stages Config enables (fields of a disabled stage
/// are IGNORED).
///
/// # Errors
/// [`ConfigFault::BadSte`] (V = 0 or ILLEGAL) or [`ConfigFault::SteAbort`]
/// (Config aborts).
pub fn decode_ste(ste: &Ste, f: &Features) -> Result<StreamCfg, ConfigFault> {
    bad_ste(ste.get(Ste::V) != 0)?;
    let config = ste.config();
    if config == SteConfig::Abort {
        return Err(ConfigFault::SteAbort);
    }
    bad_ste(!config.stage1() || f.s1p)?;
    bad_ste(!config.stage2() || f.s2p)?;
    let vmid = if f.s2p { ste.get(Ste::S2VMID) as u16 } else { 0 };
    let s1 = if config.stage1() {
        // S1STALLD is ILLEGAL when stalls are not supported, or forced.
        bad_ste(ste.get(Ste::S1STALLD) == 0 || (f.stall && !f.stall_force))?;
        let cdmax = if f.ssid_bits == 0 { 0 } else { ste.get(Ste::S1CDMAX) as u32 };
        bad_ste(cdmax <= f.ssid_bits)?;
        let fmt = if cdmax == 0 {
            S1Fmt::Linear
        } else {
            let fmt = S1Fmt::from_bits(ste.get(Ste::S1FMT)).ok_or(ConfigFault::BadSte)?;
            bad_ste(fmt == S1Fmt::Linear || f.cd2l)?;
            fmt
        };
        let dss = S1Dss::from_bits(ste.get(Ste::S1DSS));
        bad_ste(cdmax == 0 || dss != S1Dss::Reserved)?;
        let context_ptr = ste.s1_context_ptr();
        // The CD pointer must be within the address size of its stage's
        // output (OAS, or the IAS when it is an IPA).
        bad_ste(context_ptr >> f.oas_bits == 0)?;
        Some(S1StreamCfg { context_ptr, fmt, cdmax, dss })
    } else {
        None
    };
    let s2 = if config.stage2() {
        bad_ste(ste.get(Ste::S2AA64) == 1)?;
        bad_ste(ste.get(Ste::S2ENDI) == 0)?;
        bad_ste(ste.get(Ste::S2S) == 0 || f.stall)?;
        bad_ste(ste.get(Ste::S2HA) == 0 || f.httu_af)?;
        bad_ste(ste.get(Ste::S2HD) == 0 || f.httu_dirty)?;
        let (granule, input_bits, start_level, root_bits) =
            s2_geometry(ste.get(Ste::S2TG), ste.get(Ste::S2T0SZ), ste.get(Ste::S2SL0), f).ok_or(ConfigFault::BadSte)?;
        let out_bits = pa_bits(ste.get(Ste::S2PS)).min(f.oas_bits);
        let ttb = ste.s2ttb();
        bad_ste(ttb >> out_bits == 0)?;
        let mut tables = TableCfg { base: 0, granule, input_bits, start_level, root_bits, out_bits };
        tables.base = align_down(ttb, tables.root_size());
        Some(S2Cfg {
            tables,
            affd: ste.get(Ste::S2AFFD) != 0,
            record: ste.get(Ste::S2R) != 0,
            stall: ste.get(Ste::S2S) != 0,
        })
    } else {
        None
    };
    let over = |v: u64| match v {
        2 => Some(false),
        3 => Some(true),
        _ => None,
    };
    Ok(StreamCfg {
        config,
        s1,
        s2,
        vmid,
        eats: f.ats && ste.get(Ste::EATS) != 0,
        priv_override: over(ste.get(Ste::PRIVCFG)),
        inst_override: over(ste.get(Ste::INSTCFG)),
        s1_stall_disabled: ste.get(Ste::S1STALLD) != 0,
    })
}

fn bad_cd(ok: bool) -> Result<(), ConfigFault> {
    if ok {
        Ok(())
    } else {
        Err(ConfigFault::BadCd)
    }
}

/// Decodes a CD, applying the ILLEGAL checks of SMMUv3 §5.4. `ias_bits`
/// bounds the table bases: the IPS of the CD, itself capped to the OAS.
///
/// # Errors
/// [`ConfigFault::BadCd`].
pub fn decode_cd(cd: &Cd, f: &Features) -> Result<CdCfg, ConfigFault> {
    bad_cd(cd.get(Cd::V) != 0)?;
    bad_cd(cd.get(Cd::AA64) == 1)?;
    bad_cd(cd.get(Cd::ENDI) == 0)?;
    bad_cd(cd.get(Cd::A) == 1 || !f.term_abort_only)?;
    bad_cd(cd.get(Cd::S) == 0 || f.stall)?;
    bad_cd(cd.get(Cd::HA) == 0 || f.httu_af)?;
    bad_cd(cd.get(Cd::HD) == 0 || f.httu_dirty)?;
    // IPS values above the OAS (including 52 bits and the reserved 0b111)
    // are capped to the OAS.
    let out_bits = pa_bits(cd.get(Cd::IPS)).min(f.oas_bits);
    let mut tt = [None; 2];
    for (half, slot) in tt.iter_mut().enumerate() {
        let (epd, tsz, tg, ttb) = if half == 0 {
            (Cd::EPD0, Cd::T0SZ, Granule::from_tg0(cd.get(Cd::TG0)), cd.ttb0())
        } else {
            (Cd::EPD1, Cd::T1SZ, Granule::from_tg1(cd.get(Cd::TG1)), cd.ttb1())
        };
        if cd.get(epd) != 0 {
            continue;
        }
        let granule = tg.filter(|g| f.granule(*g)).ok_or(ConfigFault::BadCd)?;
        // TxSZ in [16, 39] (v3.1 without VAX or TTST).
        let t = cd.get(tsz) as u32;
        bad_cd((16..=39).contains(&t))?;
        let input_bits = 64 - t;
        bad_cd(ttb >> out_bits == 0)?;
        let start_level = granule.start_level(input_bits);
        let root_bits = input_bits - granule.level_shift(start_level);
        let mut c = TableCfg { base: 0, granule, input_bits, start_level, root_bits, out_bits };
        c.base = align_down(ttb, c.root_size());
        *slot = Some(c);
    }
    let tbi = cd.get(Cd::TBI);
    Ok(CdCfg {
        asid: if f.asid16 { cd.get(Cd::ASID) as u16 } else { cd.get(Cd::ASID) as u16 & 0xFF },
        tt,
        tbi: [tbi & 1 != 0, tbi & 2 != 0],
        had: [cd.get(Cd::HAD0) != 0, cd.get(Cd::HAD1) != 0],
        affd: cd.get(Cd::AFFD) != 0,
        wxn: cd.get(Cd::WXN) != 0,
        uwxn: cd.get(Cd::UWXN) != 0,
        pan: cd.get(Cd::PAN) != 0,
        record: cd.get(Cd::R) != 0,
        stall: cd.get(Cd::S) != 0,
    })
}
