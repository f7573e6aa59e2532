//! Invariant checkers, run after every step (and per DMA page for
//! isolation). Each compares the machine against a reference that does not
//! come from the tables the IOMMU walks:
//!
//! * **isolation**: a completed DMA page reached exactly the frame the
//!   attachment's owner has there by its own records (the process's
//!   resident pages, the scenario's `map`s, the VM's RAM through the guest
//!   process's pages), or nothing when nothing is mapped;
//! * **stale**: no IOTLB or device-TLB entry (host unit and every vIOMMU),
//!   or SMMUv3 TLB or ATC entry, maps elsewhere or grants more than the
//!   tables now do ([`iommu_hw::vtd::VtdUnit::audit_caches`],
//!   [`iommu_hw::smmuv3::Smmu::audit_caches`]);
//! * **leaks**: after the end-of-run teardown the host holds no more
//!   frames, domains, memory files, iommufd contexts, PASIDs, attachments
//!   or fault groups than before the first process or VM existed;
//! * **bounds**: each VM's host attachments, pending fault groups and
//!   iommufd objects stay within its budget.

use std::collections::BTreeMap;

use iommu_os::iommu::DomainKind;
use iommu_types::{Gpa, Hpa, Pasid};
use iommu_vmm::check::HostSnapshot;

use super::platform::{vtd_stale_text, Platform};
use super::Machine;
use crate::report::{BindingSpan, CachePoint, CacheRow, InvariantReport, Violation};
use crate::scenario::{Checks, Ctx};

/// Most violations one checker lists (it keeps counting).
const MAX_VIOLATIONS: usize = 1000;

const ISOLATION: usize = 0;
const STALE: usize = 1;
const LEAKS: usize = 2;
const BOUNDS: usize = 3;

/// The checkers' state.
#[derive(Debug)]
pub(crate) struct Checkers {
    pub(crate) baseline: Option<HostSnapshot>,
    reports: Vec<InvariantReport>,
    /// Open attachment spans: (device, PASID) → (target, index in report).
    open: BTreeMap<(usize, Option<u32>), (String, usize)>,
}

impl Checkers {
    pub(crate) fn new(c: Checks) -> Self {
        let mk = |name: &str, checks: &str, enabled: bool| InvariantReport {
            name: name.into(),
            checks: checks.into(),
            enabled,
            checked: 0,
            violations: Vec::new(),
        };
        Self {
            baseline: None,
            reports: vec![
                mk(
                    "isolation",
                    "every completed DMA page reached only memory mapped for its (device, PASID)",
                    c.isolation,
                ),
                mk(
                    "stale",
                    "no cached translation disagrees with the tables once a step's invalidations completed",
                    c.stale,
                ),
                mk("leaks", "after teardown the host holds nothing more than before the first process or VM", c.leaks),
                mk("bounds", "guest-created host state stays within each VM's budget", c.bounds),
            ],
            open: BTreeMap::new(),
        }
    }
}

fn violate<P: Platform>(m: &mut Machine<'_, P>, which: usize, message: String) {
    let (step, line) = (m.step, m.line);
    let r = &mut m.checks.reports[which];
    if r.violations.len() < MAX_VIOLATIONS {
        r.violations.push(Violation { step, line, message });
    }
}

fn enabled<P: Platform>(m: &Machine<'_, P>, which: usize) -> bool {
    m.checks.reports[which].enabled
}

/// What the attachment's owner has at `addr`: `Ok(Some(hpa))`, `Ok(None)`
/// (nothing mapped), or `Err(())` when the checker has no reference for
/// this kind of attachment (counted, not judged).
fn expected<P: Platform>(
    m: &Machine<'_, P>,
    ctx: Ctx,
    device: usize,
    pasid: Option<Pasid>,
    addr: u64,
) -> Result<Option<Hpa>, ()> {
    let off = addr & 0xFFF;
    let page = addr & !0xFFF;
    let plus = |h: Hpa| Hpa::new(h.raw() | off);
    match ctx {
        Ctx::Host => {
            let iommu = m.host.iommu();
            let dev = m.devs[device].info.id;
            let d = match pasid {
                Some(p) => iommu.pasid_domain(dev, p),
                None => iommu.rid_domain(dev).ok(),
            };
            let Some(d) = d else { return Ok(None) };
            match iommu.domain_kind(d).map_err(|_| ())? {
                DomainKind::Blocked => Ok(None),
                DomainKind::Identity => Ok(Some(Hpa::new(addr))),
                DomainKind::Sva { mm, .. } => Ok(m.host.mm(*mm).ok().and_then(|x| x.resident_frame(page)).map(plus)),
                DomainKind::Paging { .. } => match m.domains.iter().position(|x| *x == Some(d)) {
                    Some(i) => Ok(m.domain_pages[i].get(&page).copied().map(plus)),
                    None => Err(()),
                },
                DomainKind::Nested { .. } => Err(()),
            }
        }
        Ctx::Vm(v) => {
            let s = m.vms.get(v).and_then(|s| s.as_ref()).ok_or(())?;
            let idx = *s.devs.get(&device).ok_or(())?;
            let gdev = s.vm.devices().get(idx).ok_or(())?.guest;
            let g = s.vm.guest();
            let d = match pasid {
                Some(p) => g.iommu().pasid_domain(gdev, p),
                None => g.iommu().rid_domain(gdev).ok(),
            };
            let Some(d) = d else { return Ok(None) };
            let gpa = match g.iommu().domain_kind(d).map_err(|_| ())? {
                DomainKind::Blocked => return Ok(None),
                DomainKind::Identity => Some(addr),
                DomainKind::Sva { mm, .. } => {
                    g.mm(*mm).ok().and_then(|x| x.resident_frame(page)).map(|h| h.raw() | off)
                }
                _ => return Err(()),
            };
            Ok(gpa.and_then(|a| s.vm.ram().host_address(Gpa::new(a))))
        }
    }
}

/// Isolation: a completed DMA page of (`device`, `pasid`) at `addr`
/// reached `hpa`.
pub(super) fn isolation<P: Platform>(
    m: &mut Machine<'_, P>,
    ctx: Ctx,
    device: usize,
    pasid: Option<Pasid>,
    addr: u64,
    hpa: Hpa,
) {
    if !enabled(m, ISOLATION) {
        return;
    }
    m.checks.reports[ISOLATION].checked += 1;
    let who = || {
        let p = pasid.map_or("no PASID".to_string(), |p| format!("PASID {}", p.raw()));
        let at = match ctx {
            Ctx::Host => String::new(),
            Ctx::Vm(v) => format!("{}/", m.sc.vms[v].name),
        };
        format!("{at}{} {p} at {addr:#x}", m.sc.devices[device].name)
    };
    match expected(m, ctx, device, pasid, addr) {
        Ok(Some(want)) if want == hpa => {}
        Ok(Some(want)) => {
            let msg = format!("DMA of {} reached {:#x}; the attachment has {:#x} there", who(), hpa.raw(), want.raw());
            violate(m, ISOLATION, msg);
        }
        Ok(None) => {
            let msg = format!("DMA of {} reached {:#x}; nothing is mapped there for that attachment", who(), hpa.raw());
            violate(m, ISOLATION, msg);
        }
        Err(()) => {}
    }
}

/// After each step: stale translations, VM bounds, attachment spans and
/// the cache timeline.
pub(super) fn after_step<P: Platform>(m: &mut Machine<'_, P>) {
    if enabled(m, STALE) {
        let mut contexts = Vec::new();
        for d in m.devs.iter().filter(|d| !d.removed) {
            contexts.push((d.info, None));
            contexts.extend(m.host.iommu().attached_pasids(d.info.id).into_iter().map(|p| (d.info, Some(p))));
        }
        let (checked, stale) = m.hw.audit(&contexts);
        m.checks.reports[STALE].checked += checked;
        for s in stale {
            violate(m, STALE, format!("host {s}"));
        }
        for v in 0..m.vms.len() {
            let Some(s) = m.vms[v].as_ref() else { continue };
            let a = s.vm.viommu().audit_caches();
            let name = format!("{} vIOMMU", m.sc.vms[v].name);
            m.checks.reports[STALE].checked += a.checked as u64;
            for s in &a.stale {
                violate(m, STALE, format!("{name} {}", vtd_stale_text(s)));
            }
        }
    }
    if enabled(m, BOUNDS) {
        bounds(m);
    }
    spans(m);
    let st = m.hw.cache_stats();
    let (tlb, dev) = P::TLB_ROWS;
    m.report.cache_timeline.push(CachePoint {
        step: m.step,
        iotlb_hits: st[tlb].2.hits,
        iotlb_misses: st[tlb].2.misses,
        devtlb_hits: st[dev].2.hits,
        devtlb_misses: st[dev].2.misses,
    });
}

fn bounds<P: Platform>(m: &mut Machine<'_, P>) {
    for v in 0..m.vms.len() {
        let Some(s) = m.vms[v].as_ref() else { continue };
        let budget = m.sc.vms[v].budget;
        let pasids = s.vm.bindings().len();
        let groups: usize = s.vm.devices().iter().map(|a| m.host.iopf().pending(a.host).count()).sum();
        let objects = m.host.iommufd_objects(s.vm.iommufd());
        let name = m.sc.vms[v].name.clone();
        m.checks.reports[BOUNDS].checked += 3;
        if pasids > budget.pasids as usize {
            violate(
                m,
                BOUNDS,
                format!("VM {name} holds {pasids} host PASID attachments; its budget is {}", budget.pasids),
            );
        }
        if groups > budget.fault_groups {
            violate(
                m,
                BOUNDS,
                format!("VM {name} has {groups} page-request groups pending; its budget is {}", budget.fault_groups),
            );
        }
        if objects > budget.objects {
            violate(m, BOUNDS, format!("VM {name} holds {objects} iommufd objects; its budget is {}", budget.objects));
        }
    }
}

/// What is attached at each (device, PASID) now, named for people.
fn attachments<P: Platform>(m: &Machine<'_, P>) -> BTreeMap<(usize, Option<u32>), String> {
    let mut out = BTreeMap::new();
    let iommu = m.host.iommu();
    let vm_of = |dev: usize| {
        m.sc.vms
            .iter()
            .enumerate()
            .find(|(i, _)| m.vms[*i].as_ref().is_some_and(|s| s.devs.contains_key(&dev)))
            .map(|(_, v)| v.name.clone())
    };
    for (i, d) in m.devs.iter().enumerate() {
        if d.removed {
            continue;
        }
        let name = |dom| -> Option<String> {
            Some(match iommu.domain_kind(dom).ok()? {
                DomainKind::Blocked => return None,
                DomainKind::Identity => "identity".into(),
                DomainKind::Sva { mm, .. } => match m.procs.iter().position(|p| *p == Some(*mm)) {
                    Some(p) => format!("SVA {}", m.sc.processes[p].name),
                    None => "SVA".into(),
                },
                DomainKind::Paging { .. } => match m.domains.iter().position(|x| *x == Some(dom)) {
                    Some(x) => format!("domain {}", m.sc.domains[x]),
                    None => match vm_of(i) {
                        Some(v) => format!("{v} stage 2"),
                        None => "paging".into(),
                    },
                },
                DomainKind::Nested { .. } => match vm_of(i) {
                    Some(v) => format!("{v} nested"),
                    None => "nested (gpasid)".into(),
                },
            })
        };
        if let Some(t) = iommu.rid_domain(d.info.id).ok().and_then(name) {
            if t != "identity" {
                out.insert((i, None), t);
            }
        }
        for p in iommu.attached_pasids(d.info.id) {
            if let Some(t) = iommu.pasid_domain(d.info.id, p).and_then(name) {
                out.insert((i, Some(p.raw())), t);
            }
        }
    }
    out
}

fn spans<P: Platform>(m: &mut Machine<'_, P>) {
    let now = attachments(m);
    let step = m.step;
    let open = std::mem::take(&mut m.checks.open);
    let mut still = BTreeMap::new();
    for (k, (target, idx)) in open {
        match now.get(&k) {
            Some(t) if *t == target => {
                still.insert(k, (target, idx));
            }
            _ => {
                if let Some(s) = m.report.bindings.get_mut(idx) {
                    s.to_step = Some(step);
                }
            }
        }
    }
    for (k, t) in now {
        if still.contains_key(&k) {
            continue;
        }
        m.report.bindings.push(BindingSpan {
            device: m.sc.devices[k.0].name.clone(),
            pasid: k.1,
            target: t.clone(),
            from_step: step,
            to_step: None,
        });
        still.insert(k, (t, m.report.bindings.len() - 1));
    }
    m.checks.open = still;
}

/// At the end (after the teardown): leaks, a last stale check, the cache
/// table, and the checkers into the report.
pub(super) fn at_end<P: Platform>(m: &mut Machine<'_, P>) {
    after_step(m);
    if enabled(m, LEAKS) {
        if let Some(base) = m.checks.baseline.clone() {
            let now = HostSnapshot::take(&m.host);
            m.checks.reports[LEAKS].checked += 1;
            for l in now.leaks_since(&base) {
                violate(m, LEAKS, format!("after teardown the host still holds {l}"));
            }
        }
    }
    m.report.caches =
        m.hw.cache_stats()
            .iter()
            .map(|(name, cap, s)| CacheRow {
                cache: (*name).into(),
                capacity: *cap,
                hits: s.hits,
                misses: s.misses,
                fills: s.fills,
                evictions: s.evictions,
            })
            .collect();
    m.report.invariants = std::mem::take(&mut m.checks.reports);
}
