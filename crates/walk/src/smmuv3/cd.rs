//! SubstreamID → CD (SMMUv3 §3.3.2, §5.3, §5.4; STE.S1CDMax, S1Fmt, S1DSS).
//!
//! With stage 2 enabled (nested), S1ContextPtr, every L1CD's L2Ptr and
//! the CD address are IPAs: each is translated by stage 2 with class CD
//! before it is read.

use iommu_format::smmuv3::cd::{Cd, L1Cd};
use iommu_format::smmuv3::event::FaultClass;
use iommu_format::smmuv3::ste::S1Dss;
use iommu_types::{Access, Hpa, PhysMem, SubstreamId};

use super::config::{S1StreamCfg, S2Cfg};
use super::page::{s2_translate, TransFault};
use super::ConfigFault;

/// Why a CD could not be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CdFault {
    /// A configuration fault (C_BAD_SUBSTREAMID, F_CD_FETCH, F_STREAM_DISABLED).
    Config(ConfigFault),
    /// A stage-2 fault translating a CD-table IPA (class CD).
    Stage2(TransFault),
}

/// What stage 1 does for a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CdLookup {
    /// Translate with this CD, found at this physical address, as this
    /// substream (0 for the single-CD and S1DSS = substream-0 cases).
    Cd {
        /// The descriptor.
        cd: Cd,
        /// Its physical address.
        addr: u64,
        /// The substream whose CD it is.
        ssid: u32,
    },
    /// S1DSS = bypass: stage 1 is bypassed for this transaction.
    Bypass,
}

fn to_pa<M: PhysMem + ?Sized>(mem: &M, s2: Option<&S2Cfg>, ipa: u64, refs: &mut u32) -> Result<u64, CdFault> {
    match s2 {
        Some(s2) => s2_translate(mem, s2, ipa, Access::READ, FaultClass::Cd, refs)
            .map_err(|f| CdFault::Stage2(TransFault { ttrnw: f.kind == super::TransFaultKind::Permission, ..f })),
        None => Ok(ipa),
    }
}

/// The CD index a transaction with `ssid` uses, before any memory is
/// read (SMMUv3 §3.3.2, STE.S1CDMax and S1DSS); `None` when S1DSS
/// bypasses stage 1 for it.
///
/// # Errors
/// C_BAD_SUBSTREAMID (a SubstreamID beyond S1CDMax, any SubstreamID on a
/// single-CD stream, SubstreamID 0 under S1DSS = substream 0) or
/// F_STREAM_DISABLED (no SubstreamID under S1DSS = terminate).
pub fn cd_index(s1: &S1StreamCfg, ssid: Option<SubstreamId>) -> Result<Option<u32>, ConfigFault> {
    let bad = ConfigFault::BadSubstreamId;
    if s1.cdmax == 0 {
        // A single CD: substream-tagged transactions have nowhere to go.
        return if ssid.is_some() { Err(bad) } else { Ok(Some(0)) };
    }
    match (ssid, s1.dss) {
        (None, S1Dss::Terminate | S1Dss::Reserved) => Err(ConfigFault::StreamDisabled),
        (None, S1Dss::Bypass) => Ok(None),
        (None, S1Dss::Substream0) => Ok(Some(0)),
        // With S1DSS = substream 0, CD 0 belongs to untagged traffic.
        (Some(s), S1Dss::Substream0) if s.raw() == 0 => Err(bad),
        (Some(s), _) if s.raw() >> s1.cdmax != 0 => Err(bad),
        (Some(s), _) => Ok(Some(s.raw())),
    }
}

/// Which CD a transaction with `ssid` uses (SMMUv3 §3.3.2).
///
/// # Errors
/// [`CdFault`].
pub fn lookup<M: PhysMem + ?Sized>(
    mem: &M,
    s1: &S1StreamCfg,
    s2: Option<&S2Cfg>,
    ssid: Option<SubstreamId>,
    refs: &mut u32,
) -> Result<CdLookup, CdFault> {
    let index = match cd_index(s1, ssid).map_err(CdFault::Config)? {
        Some(i) => i as u64,
        None => return Ok(CdLookup::Bypass),
    };
    let bad = CdFault::Config(ConfigFault::BadSubstreamId);
    let cd_ipa = match s1.fmt.split() {
        None => s1.context_ptr.wrapping_add(index * 64),
        Some(split) => {
            let l1_ipa = (s1.context_ptr & !7).wrapping_add((index >> split) * 8);
            let l1_pa = to_pa(mem, s2, l1_ipa, refs)?;
            *refs += 1;
            let l1 = L1Cd::from_words([mem
                .read_u64(Hpa::new(l1_pa))
                .map_err(|_| CdFault::Config(ConfigFault::CdFetch { addr: l1_pa }))?]);
            if l1.get(L1Cd::V) == 0 {
                return Err(bad);
            }
            l1.get_in_place(L1Cd::L2PTR).wrapping_add((index & ((1 << split) - 1)) * 64)
        }
    };
    let cd_pa = to_pa(mem, s2, cd_ipa, refs)?;
    let mut b = [0u8; 64];
    *refs += 1;
    mem.read(Hpa::new(cd_pa), &mut b).map_err(|_| CdFault::Config(ConfigFault::CdFetch { addr: cd_pa }))?;
    Ok(CdLookup::Cd { cd: Cd::from_bytes(&b), addr: cd_pa, ssid: index as u32 })
}
