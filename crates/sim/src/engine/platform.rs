//! The IOMMU a machine is built around: what the engine needs from the
//! hardware model and its driver, for VT-d ([`Vtd`]) and for SMMUv3
//! ([`Smmuv3`]). Everything above (kernel, scenario steps, checkers) is
//! the same for both; VMs exist only on VT-d machines, since the vIOMMU
//! the VMM emulates is a VT-d one.

use std::sync::Arc;

use iommu_cache::CacheStats;
use iommu_format::smmuv3::cmd::PriResponse;
use iommu_format::smmuv3::regs::Idr1;
use iommu_format::vtd::inv_desc::ResponseCode;
use iommu_format::vtd::regs::Ecap;
use iommu_hw::smmuv3::{AtsEndpoint, EndpointAccess, Smmu, SmmuConfig, StaleTranslation};
use iommu_hw::vtd::{AuditedCache, Current, Endpoint, EndpointDma, Request, StaleEntry, VtdConfig, VtdUnit};
use iommu_os::driver::smmuv3::SmmuDriver;
use iommu_os::driver::vtd::VtdDriver;
use iommu_os::driver::{DeviceInfo, IommuDriver};
use iommu_os::frames::RangeFrames;
use iommu_types::{Access, Hpa, Iova, NullInterrupts, Pasid, PhysMem, StreamId, SubstreamId};
use iommu_vmm::DmaAccess;

use super::Mem;
use crate::scenario::{FaultCode, Scenario};

/// The VT-d unit of a machine.
pub(crate) type VtdHw = VtdUnit<Mem, NullInterrupts>;
/// The SMMU of a machine.
pub(crate) type SmmuHw = Smmu<Mem, NullInterrupts>;

/// One page-sized device access, as far as the hardware got with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Completed at this host-physical address.
    Done(Hpa),
    /// The IOMMU refused it (with the architectural code, when known).
    Fault(Option<FaultCode>, String),
    /// The device is waiting for an answer to `what` (a page request
    /// group, or a stalled transaction) numbered `id` (PRG index, STAG);
    /// [`Platform::answer`] takes `token`.
    Waiting {
        /// What identifies the wait to [`Platform::answer`].
        token: u16,
        /// The number the architecture gives it.
        id: u16,
        /// What is awaited.
        what: &'static str,
    },
    /// Something else stopped it.
    Failed(String),
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Retry: the page is there now.
    Retry,
    /// Refused with this PCIe page response code.
    Refused(ResponseCode),
    /// No answer arrived.
    None,
}

/// The hardware side of a machine.
pub(crate) trait Platform: Sized {
    /// The kernel's driver for it.
    type Driver: IommuDriver;
    /// A device's own state (its ATC and request tags live in the model).
    type Endpoint: std::fmt::Debug;

    /// Builds the IOMMU over `mem` for `sc` and probes its driver.
    fn build(sc: &Scenario, mem: &Mem, frames: &mut RangeFrames) -> Result<(Self, Self::Driver), String>;

    /// The state of a new device.
    fn endpoint(&self, info: &DeviceInfo) -> Self::Endpoint;

    /// What the driver did since the last call, one line per action.
    fn take_log(driver: &mut Self::Driver) -> Vec<String>;

    /// One access within a page: untranslated for a device without ATS,
    /// through its ATC (and page requests) for one with ATS.
    fn access(
        &self,
        ep: &mut Self::Endpoint,
        info: &DeviceInfo,
        pasid: Option<Pasid>,
        addr: u64,
        access: &mut DmaAccess<'_>,
    ) -> Attempt;

    /// The answer to a wait of [`Attempt::Waiting`], once the kernel has
    /// serviced its faults.
    fn answer(&self, ep: &mut Self::Endpoint, info: &DeviceInfo, token: u16) -> Answer;

    /// Cached translations the tables disagree with, as text, and how many
    /// entries were checked. `contexts` names the (requester, PASID)
    /// pairs in use, for caches tagged by domain rather than requester.
    fn audit(&self, contexts: &[(DeviceInfo, Option<Pasid>)]) -> (u64, Vec<String>);

    /// Every cache: name, capacity, statistics.
    fn cache_stats(&self) -> Vec<(&'static str, usize, CacheStats)>;

    /// Index of the main TLB and of the device TLB in [`Self::cache_stats`].
    const TLB_ROWS: (usize, usize);

    /// Faults the unit recorded (fault records, event records).
    fn faults_recorded(&self) -> u64;

    /// The VT-d unit, on a VT-d machine (VMs DMA through it).
    fn vtd(&self) -> Option<&VtdHw>;
}

/// An Intel VT-d machine.
#[derive(Debug)]
pub(crate) struct Vtd(pub(crate) Arc<VtdHw>);

impl Platform for Vtd {
    type Driver = VtdDriver<Arc<VtdHw>>;
    type Endpoint = Endpoint;
    const TLB_ROWS: (usize, usize) = (0, 3);

    fn build(sc: &Scenario, mem: &Mem, frames: &mut RangeFrames) -> Result<(Self, Self::Driver), String> {
        let mut cfg = VtdConfig::full_featured();
        cfg.ecap = Ecap::from_words([cfg.ecap]).with(Ecap::PSS, u64::from(sc.machine.pasid_bits) - 1).words()[0];
        let unit = Arc::new(VtdUnit::new(cfg, mem.clone(), NullInterrupts));
        let driver = VtdDriver::probe(unit.clone(), &**mem, frames).map_err(|e| format!("VT-d driver probe: {e}"))?;
        Ok((Self(unit), driver))
    }

    fn endpoint(&self, info: &DeviceInfo) -> Endpoint {
        Endpoint::new(info.sid)
    }

    fn take_log(driver: &mut Self::Driver) -> Vec<String> {
        driver.take_log().iter().map(|a| format!("{a:?}")).collect()
    }

    fn access(
        &self,
        ep: &mut Endpoint,
        info: &DeviceInfo,
        pasid: Option<Pasid>,
        addr: u64,
        access: &mut DmaAccess<'_>,
    ) -> Attempt {
        let unit = &*self.0;
        if !info.ats {
            let kind = if matches!(access, DmaAccess::Write(_)) { Access::WRITE } else { Access::READ };
            let req = Request { sid: info.sid, pasid, addr: Iova::new(addr), access: kind };
            let t = match unit.translate(&req) {
                Ok(t) => t,
                Err(f) => return Attempt::Fault(Some(FaultCode::Vtd(f.reason)), String::new()),
            };
            return mem_access(unit.mem(), t.addr, access);
        }
        let r = match access {
            DmaAccess::Write(d) => ep.write(unit, pasid, Iova::new(addr), d),
            DmaAccess::Read(b) => ep.read(unit, pasid, Iova::new(addr), b),
        };
        match r {
            EndpointDma::Done(h) => Attempt::Done(h),
            EndpointDma::Failed => Attempt::Fault(None, "translation request refused".into()),
            EndpointDma::RequestRefused(why) => Attempt::Failed(format!("page request refused: {why:?}")),
            EndpointDma::PageRequested(prgi) => Attempt::Waiting { token: prgi, id: prgi, what: "page request group" },
        }
    }

    fn answer(&self, ep: &mut Endpoint, _info: &DeviceInfo, token: u16) -> Answer {
        match ep.response(&*self.0, token) {
            Some(ResponseCode::Success) => Answer::Retry,
            Some(c) => Answer::Refused(c),
            None => Answer::None,
        }
    }

    fn audit(&self, _contexts: &[(DeviceInfo, Option<Pasid>)]) -> (u64, Vec<String>) {
        let a = self.0.audit_caches();
        (a.checked as u64, a.stale.iter().map(vtd_stale_text).collect())
    }

    fn cache_stats(&self) -> Vec<(&'static str, usize, CacheStats)> {
        self.0.cache_stats().to_vec()
    }

    fn faults_recorded(&self) -> u64 {
        self.0.stats.faults_recorded.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn vtd(&self) -> Option<&VtdHw> {
        Some(&self.0)
    }
}

/// A stale VT-d cache entry as a sentence (without the unit's name).
pub(crate) fn vtd_stale_text(s: &StaleEntry) -> String {
    let cache = match s.cache {
        AuditedCache::Iotlb => "IOTLB",
        AuditedCache::DeviceTlb => "device TLB",
    };
    let p = s.pasid.map_or("no PASID".to_string(), |p| format!("PASID {}", p.raw()));
    let now = match s.now {
        Current::Mapped { frame, perm } => format!("the tables map it to {:#x} {perm}", frame.raw()),
        Current::Fault(r) => format!("the tables fault ({:#04x} {r:?})", u8::from(r)),
    };
    format!("{cache} still translates {} {p} {:#x} → {:#x} {}; {now}", s.sid, s.addr.raw(), s.frame.raw(), s.perm)
}

fn mem_access(mem: &Mem, at: Hpa, access: &mut DmaAccess<'_>) -> Attempt {
    let r = match access {
        DmaAccess::Write(d) => mem.write(at, d),
        DmaAccess::Read(b) => mem.read(at, b),
    };
    match r {
        Ok(()) => Attempt::Done(at),
        Err(e) => Attempt::Failed(e.to_string()),
    }
}

/// An Arm SMMUv3 machine. A device's StreamID is its requester ID; PASIDs
/// travel as SubstreamIDs.
#[derive(Debug)]
pub(crate) struct Smmuv3(pub(crate) Arc<SmmuHw>);

/// Waits on an SMMUv3 device: page request groups below this, stalled
/// transactions (their STAG plus this) above.
const STALL_TOKEN: u16 = 0x8000;

fn stream(info: &DeviceInfo) -> StreamId {
    StreamId(u32::from(info.sid.raw()))
}

fn substream(pasid: Option<Pasid>) -> Option<SubstreamId> {
    pasid.and_then(|p| SubstreamId::try_new(p.raw()).ok())
}

impl Platform for Smmuv3 {
    type Driver = SmmuDriver<Arc<SmmuHw>>;
    type Endpoint = AtsEndpoint;
    const TLB_ROWS: (usize, usize) = (0, 4);

    fn build(sc: &Scenario, mem: &Mem, frames: &mut RangeFrames) -> Result<(Self, Self::Driver), String> {
        let mut cfg = SmmuConfig::full();
        // The machine's PASID width is the SMMU's SubstreamID width (IDR1.SSIDSIZE).
        cfg.idr[1] = Idr1::from_words([u64::from(cfg.idr[1])])
            .with(Idr1::SSIDSIZE, u64::from(sc.machine.pasid_bits))
            .words()[0] as u32;
        let smmu = Arc::new(Smmu::new(cfg, mem.clone(), NullInterrupts));
        let driver =
            SmmuDriver::probe(smmu.clone(), &**mem, frames).map_err(|e| format!("SMMUv3 driver probe: {e}"))?;
        Ok((Self(smmu), driver))
    }

    fn endpoint(&self, info: &DeviceInfo) -> AtsEndpoint {
        AtsEndpoint::new(stream(info))
    }

    fn take_log(driver: &mut Self::Driver) -> Vec<String> {
        driver.take_log().iter().map(|a| format!("{a:?}")).collect()
    }

    fn access(
        &self,
        ep: &mut AtsEndpoint,
        info: &DeviceInfo,
        pasid: Option<Pasid>,
        addr: u64,
        access: &mut DmaAccess<'_>,
    ) -> Attempt {
        let smmu = &*self.0;
        let ssid = substream(pasid);
        if pasid.is_some() && ssid.is_none() {
            return Attempt::Failed("the PASID does not fit a SubstreamID".into());
        }
        if !info.ats {
            let kind = if matches!(access, DmaAccess::Write(_)) { Access::WRITE } else { Access::READ };
            let req = iommu_hw::smmuv3::Request { sid: stream(info), ssid, addr, access: kind };
            return match smmu.translate(&req) {
                Ok(t) => mem_access(smmu.mem(), Hpa::new(t.pa), access),
                Err(t) => match t.stalled {
                    Some(stag) => Attempt::Waiting { token: STALL_TOKEN | stag, id: stag, what: "stalled transaction" },
                    None => Attempt::Fault(t.event.map(|e| FaultCode::Smmu(e.id)), String::new()),
                },
            };
        }
        let r = match access {
            DmaAccess::Write(d) => ep.write(smmu, ssid, addr, d),
            DmaAccess::Read(b) => ep.read(smmu, ssid, addr, b),
        };
        match r {
            EndpointAccess::Done(h) => Attempt::Done(h),
            EndpointAccess::Failed => Attempt::Fault(None, "translation request refused".into()),
            EndpointAccess::RequestRefused(why) => Attempt::Failed(format!("page request refused: {why:?}")),
            EndpointAccess::PageRequested(g) => Attempt::Waiting { token: g, id: g, what: "page request group" },
        }
    }

    fn answer(&self, ep: &mut AtsEndpoint, info: &DeviceInfo, token: u16) -> Answer {
        if token & STALL_TOKEN != 0 {
            return match self.0.take_resume(stream(info), token & !STALL_TOKEN) {
                Some(true) => Answer::Retry,
                Some(false) => Answer::Refused(ResponseCode::InvalidRequest),
                None => Answer::None,
            };
        }
        match ep.response(&*self.0, token) {
            Some(PriResponse::Success) => Answer::Retry,
            Some(PriResponse::InvalidRequest) => Answer::Refused(ResponseCode::InvalidRequest),
            Some(PriResponse::ResponseFailure) => Answer::Refused(ResponseCode::ResponseFailure),
            None => Answer::None,
        }
    }

    fn audit(&self, contexts: &[(DeviceInfo, Option<Pasid>)]) -> (u64, Vec<String>) {
        let ctx: Vec<_> = contexts.iter().map(|(d, p)| (stream(d), substream(*p))).collect();
        let a = self.0.audit_caches(&ctx);
        (a.checked as u64, a.stale.iter().map(smmu_stale_text).collect())
    }

    fn cache_stats(&self) -> Vec<(&'static str, usize, CacheStats)> {
        self.0.cache_stats().to_vec()
    }

    fn faults_recorded(&self) -> u64 {
        self.0.events_recorded()
    }

    fn vtd(&self) -> Option<&VtdHw> {
        None
    }
}

fn smmu_stale_text(s: &StaleTranslation) -> String {
    let cache = match s.cache {
        iommu_hw::smmuv3::AuditedCache::Tlb => "TLB",
        iommu_hw::smmuv3::AuditedCache::Atc => "ATC",
    };
    let p = s.ssid.map_or("no SubstreamID".to_string(), |p| format!("SubstreamID {}", p.raw()));
    let now = s.now.map_or("the tables fault".to_string(), |a| format!("the tables map it to {a:#x}"));
    let perm = if s.write { "rw" } else { "r-" };
    format!("{cache} still translates StreamID {:#x} {p} {:#x} → {:#x} {perm}; {now}", s.sid.0, s.addr, s.cached)
}
