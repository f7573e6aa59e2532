//! Runs a [`Scenario`] on a simulated machine: the VT-d or SMMUv3 model
//! ([`platform`]), the project's kernel driving it (`iommu-os`), devices
//! that DMA the way ATS/PRI endpoints do, and VMs (`iommu-vmm`, VT-d only). Every step's outcome is compared
//! with its expectation; the invariant checkers ([`checks`]) run after
//! every step; everything lands in a [`Report`].
//!
//! The engine only calls the kernel's and the VMM's public interfaces, and
//! touches memory behind their back only for `corrupt-pte` (fault
//! injection).

mod checks;
mod dma;
mod ops;
mod platform;

use std::collections::BTreeMap;
use std::sync::Arc;

use iommu_os::driver::DeviceInfo;
use iommu_os::driver::DomainRef;
use iommu_os::frames::RangeFrames;
use iommu_os::iommu::{GroupId, Iommu, MmId};
use iommu_os::kernel::memfd::MemfdId;
use iommu_os::kernel::{Bond, IoasidSetId, Kernel};
use iommu_os::pasid::DeviceId;
use iommu_os::Errno;
use iommu_types::{Hpa, PagedMemory, Pasid};
use iommu_vmm::check::HostSnapshot;
use iommu_vmm::{Vm, VmConfig};

use crate::report::{Report, StepRecord, TraceLine, MAX_TRACE};
use crate::scenario::{Ctx, Expect, FaultCode, IommuKind, Scenario, Step};
use platform::Platform;

pub(crate) type Mem = Arc<PagedMemory>;
/// The host kernel of a machine built on `P`.
pub(crate) type Host<P> = Kernel<<P as Platform>::Driver, Mem, RangeFrames>;

/// Where host frames for tables and memory files start (below: reserved).
const FRAMES_START: u64 = 0x100_0000;

/// How to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Keep the ordered log of hardware-visible actions.
    pub trace: bool,
    /// Show a progress bar for long generated steps (only on a terminal).
    pub progress: bool,
}

/// What a step came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Success, with what it produced (a PASID, bytes read).
    Ok(String, Option<Vec<u8>>),
    /// The kernel (or guest kernel, or VMM) refused with this errno.
    Errno(Errno, String),
    /// The IOMMU refused the DMA.
    Fault(Option<FaultCode>, String),
    /// The DMA's page request was answered with this code.
    Response(iommu_format::vtd::inv_desc::ResponseCode),
    /// Something else stopped it.
    Failed(String),
}

impl Outcome {
    fn ok() -> Self {
        Outcome::Ok(String::new(), None)
    }

    fn describe(&self) -> String {
        match self {
            Outcome::Ok(d, _) if d.is_empty() => "ok".into(),
            Outcome::Ok(d, _) => format!("ok ({d})"),
            Outcome::Errno(e, d) if d.is_empty() => e.name().into(),
            Outcome::Errno(e, d) => format!("{} ({d})", e.name()),
            Outcome::Fault(Some(r), d) => format!("fault {r}{}", paren(d)),
            Outcome::Fault(None, d) => format!("fault{}", paren(d)),
            Outcome::Response(c) => format!("page response {c:?}"),
            Outcome::Failed(d) => format!("failed ({d})"),
        }
    }

    fn matches(&self, e: &Expect) -> bool {
        match (e, self) {
            (Expect::Any, _) => true,
            (Expect::Ok, Outcome::Ok(..)) => true,
            (Expect::Errno(a), Outcome::Errno(b, _)) => a == b,
            (Expect::Fault(None), Outcome::Fault(..)) => true,
            (Expect::Fault(Some(a)), Outcome::Fault(Some(b), _)) => a == b,
            (Expect::Response(a), Outcome::Response(b)) => a == b,
            _ => false,
        }
    }
}

fn paren(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" ({d})")
    }
}

fn expect_text(e: &Expect) -> String {
    match e {
        Expect::Ok => "ok".into(),
        Expect::Any => "any".into(),
        Expect::Errno(e) => e.name().into(),
        Expect::Fault(None) => "fault".into(),
        Expect::Fault(Some(r)) => format!("fault {r}"),
        Expect::Response(c) => format!("page response {c:?}"),
    }
}

/// What an `aux-attach` name stands for: the PASID, for that scenario
/// domain and device (a later detach of that pair retires the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuxName {
    pub(crate) pasid: Pasid,
    pub(crate) domain: usize,
    pub(crate) device: usize,
}

/// A device of the machine.
#[derive(Debug)]
pub(crate) struct Dev<P: Platform> {
    /// The physical device (the parent, for a mediated device).
    pub(crate) info: DeviceInfo,
    /// The id kernel calls name: a mediated device's own id, else `info.id`.
    pub(crate) kernel_id: DeviceId,
    pub(crate) endpoint: P::Endpoint,
    pub(crate) removed: bool,
}

/// A VM and the engine's names for its parts.
#[derive(Debug)]
pub(crate) struct VmState {
    pub(crate) vm: Vm,
    /// Guest processes (scenario index → guest mm).
    pub(crate) procs: Vec<Option<MmId>>,
    /// Scenario device index → the VM's assigned-device index.
    pub(crate) devs: BTreeMap<usize, usize>,
    /// VMM events already traced.
    pub(crate) events_seen: usize,
}

/// A `map` of a paging domain: its backing memory file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mapping {
    pub(crate) domain: usize,
    pub(crate) iova: u64,
    pub(crate) len: u64,
    pub(crate) memfd: MemfdId,
}

/// The machine and everything the scenario named.
pub(crate) struct Machine<'s, P: Platform> {
    pub(crate) sc: &'s Scenario,
    pub(crate) mem: Mem,
    pub(crate) hw: P,
    pub(crate) host: Host<P>,
    pub(crate) devs: Vec<Dev<P>>,
    pub(crate) procs: Vec<Option<MmId>>,
    pub(crate) vms: Vec<Option<VmState>>,
    pub(crate) bonds: Vec<Option<Bond>>,
    /// PASIDs of aux-domain attachments, by the same names as bonds.
    pub(crate) aux: Vec<Option<AuxName>>,
    pub(crate) domains: Vec<Option<DomainRef>>,
    /// Reference page maps of the scenario's paging domains (page → frame).
    pub(crate) domain_pages: Vec<BTreeMap<u64, Hpa>>,
    pub(crate) mappings: Vec<Mapping>,
    pub(crate) sets: Vec<Option<IoasidSetId>>,
    pub(crate) ioasids: Vec<Option<Pasid>>,
    /// Global PASIDs held by "other users" (`pasid-alloc`).
    pub(crate) held: Vec<Pasid>,
    pub(crate) report: Report,
    pub(crate) opts: RunOptions,
    /// The step running (1-based; 0: setup).
    pub(crate) step: usize,
    pub(crate) line: usize,
    pub(crate) checks: checks::Checkers,
}

impl<P: Platform> std::fmt::Debug for Machine<'_, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine").field("scenario", &self.sc.name).field("step", &self.step).finish_non_exhaustive()
    }
}

/// A report naming `sc`, with nothing run yet.
fn empty_report(sc: &Scenario) -> Report {
    Report {
        scenario: sc.name.clone(),
        origin: sc.origin.clone(),
        description: sc.description.clone(),
        ..Report::default()
    }
}

/// Runs `sc` and returns its report (never panics on any scenario the
/// parser accepted; failures are in the report).
pub fn run(sc: &Scenario, opts: RunOptions) -> Report {
    match sc.machine.iommu {
        IommuKind::Vtd => run_on::<platform::Vtd>(sc, opts),
        IommuKind::Smmuv3 => run_on::<platform::Smmuv3>(sc, opts),
    }
}

fn run_on<P: Platform>(sc: &Scenario, opts: RunOptions) -> Report {
    let mut report = empty_report(sc);
    let mut m = match Machine::<P>::build(sc, opts) {
        Ok(m) => m,
        Err(e) => {
            report.setup_errors.push(e);
            return report;
        }
    };
    m.setup();
    for (i, step) in sc.steps.iter().enumerate() {
        m.step = i + 1;
        m.line = step.line;
        m.run_step(step);
        m.after_step();
    }
    m.finish()
}

impl<'s, P: Platform> Machine<'s, P> {
    fn build(sc: &'s Scenario, opts: RunOptions) -> Result<Self, String> {
        let size = sc.machine.memory_mib << 20;
        let mem: Mem = Arc::new(PagedMemory::new(size));
        let mut frames = RangeFrames::new(Hpa::new(FRAMES_START), Hpa::new(size));
        let (hw, driver) = P::build(sc, &mem, &mut frames)?;
        let host = Kernel::new(Iommu::new(0, driver, mem.clone(), frames), sc.machine.policy);
        let checks = checks::Checkers::new(sc.checks);
        let report = empty_report(sc);
        Ok(Self {
            sc,
            mem,
            hw,
            host,
            devs: Vec::new(),
            procs: vec![None; sc.processes.len()],
            vms: Vec::new(),
            bonds: vec![None; sc.bonds.len()],
            aux: vec![None; sc.bonds.len()],
            domains: vec![None; sc.domains.len()],
            domain_pages: vec![BTreeMap::new(); sc.domains.len()],
            mappings: Vec::new(),
            sets: vec![None; sc.sets.len()],
            ioasids: vec![None; sc.ioasids.len()],
            held: Vec::new(),
            report,
            opts,
            step: 0,
            line: 0,
            checks,
        })
    }

    /// Devices, then the leak baseline, then processes and VMs.
    fn setup(&mut self) {
        for d in &self.sc.devices {
            if let Some(pi) = d.parent {
                // A mediated device: the parent's identity, its own kernel id.
                let info = self.devs[pi].info;
                let kernel_id = match self.host.add_mdev(info.id) {
                    Ok(id) => id,
                    Err(e) => {
                        self.report.setup_errors.push(format!("device `{}`: add_mdev: {e}", d.name));
                        info.id
                    }
                };
                let endpoint = self.hw.endpoint(&info);
                self.devs.push(Dev { info, kernel_id, endpoint, removed: false });
                continue;
            }
            let info = DeviceInfo {
                id: DeviceId(self.devs.len() as u32 + 1),
                sid: d.sid,
                // A device's PASID width is capped by the IOMMU's (ECAP.PSS).
                max_pasids: d.pasids.min(1 << self.sc.machine.pasid_bits),
                ats: d.ats,
                pri: d.pri,
                pci: d.pci,
            };
            if let Err(e) = self.host.add_device(info, GroupId(d.group)) {
                self.report.setup_errors.push(format!("device `{}`: add_device: {e}", d.name));
            }
            let endpoint = self.hw.endpoint(&info);
            self.devs.push(Dev { info, kernel_id: info.id, endpoint, removed: false });
        }
        self.checks.baseline = Some(HostSnapshot::take(&self.host));
        for (i, p) in self.sc.processes.iter().enumerate() {
            match ops::new_process::<P>(&mut self.host, p) {
                Ok(mm) => self.procs[i] = Some(mm),
                Err(e) => self.report.setup_errors.push(format!("process `{}`: {e}", p.name)),
            }
        }
        for (i, v) in self.sc.vms.iter().enumerate() {
            match self.new_vm(i) {
                Ok(s) => self.vms.push(Some(s)),
                Err(e) => {
                    self.report.setup_errors.push(format!("VM `{}`: {e}", v.name));
                    self.vms.push(None);
                }
            }
        }
        self.after_step();
    }

    fn new_vm(&mut self, i: usize) -> Result<VmState, String> {
        let spec = &self.sc.vms[i];
        let cfg = VmConfig {
            ram_pages: spec.ram_mib * 256,
            pasid_mode: spec.pasid_mode,
            max_pasids: spec.max_pasids,
            max_fault_groups: spec.max_fault_groups,
            host_api: spec.host_api,
        };
        let mut vm = Vm::create(&mut self.host, self.mem.clone(), cfg).map_err(|e| e.to_string())?;
        let mut devs = BTreeMap::new();
        for (d, gsid) in &spec.devices {
            let idx = vm.assign_device(&mut self.host, self.devs[*d].kernel_id, *gsid);
            match idx {
                Ok(x) => {
                    devs.insert(*d, x);
                }
                Err(e) => {
                    vm.destroy(&mut self.host);
                    return Err(format!("assign `{}`: {e}", self.sc.devices[*d].name));
                }
            }
        }
        let mut procs = Vec::new();
        for p in &spec.processes {
            match vm.run_guest(&mut self.host, |g| ops::new_guest_process(g, p)) {
                Ok(mm) => procs.push(Some(mm)),
                Err(e) => {
                    vm.destroy(&mut self.host);
                    return Err(format!("guest process `{}`: {e}", p.name));
                }
            }
        }
        Ok(VmState { vm, procs, devs, events_seen: 0 })
    }

    fn run_step(&mut self, step: &Step) {
        let outcome = self.exec(&step.op);
        let mut ok = outcome.matches(&step.expect);
        let mut got = outcome.describe();
        if let (Some(want), Outcome::Ok(_, Some(data))) = (&step.expect_data, &outcome) {
            got = format!("ok reading {}", show_bytes(data));
            if want != data {
                ok = false;
            }
        } else if step.expect_data.is_some() && matches!(outcome, Outcome::Ok(..)) {
            ok = false;
            got = "no data was read".into();
        }
        let expected = match &step.expect_data {
            Some(d) => format!("{} reading {}", expect_text(&step.expect), show_bytes(d)),
            None => expect_text(&step.expect),
        };
        if !ok {
            self.report.failed_steps += 1;
        }
        self.report.steps.push(StepRecord {
            step: self.step,
            line: step.line,
            op: ops::summary(self.sc, &step.op),
            expected,
            got,
            ok,
            note: step.note.clone(),
        });
    }

    /// Appends a trace line (kept only with `--trace`, bounded).
    pub(crate) fn trace(&mut self, actor: impl Into<String>, event: impl Into<String>) {
        if !self.opts.trace {
            return;
        }
        let actor = actor.into();
        if actor != "host" {
            // What the host driver did so far comes first, so that the log
            // keeps the order in which the hardware saw things.
            for a in P::take_log(self.host.iommu_mut().driver_mut()) {
                self.push_trace("host".into(), a);
            }
        }
        self.push_trace(actor, event.into());
    }

    fn push_trace(&mut self, actor: String, event: String) {
        if self.report.trace.len() >= MAX_TRACE {
            self.report.trace_dropped += 1;
            return;
        }
        self.report.trace.push(TraceLine { step: self.step, actor, event });
    }

    /// Collects what the drivers and VMMs did, then runs the checkers.
    fn after_step(&mut self) {
        for a in P::take_log(self.host.iommu_mut().driver_mut()) {
            self.trace("host", a);
        }
        for i in 0..self.vms.len() {
            let Some(mut s) = self.vms[i].take() else { continue };
            let log = s.vm.run_guest(&mut self.host, |g| g.iommu_mut().driver_mut().take_log());
            let name = self.sc.vms[i].name.clone();
            for a in log {
                self.trace(format!("{name} guest"), format!("{a:?}"));
            }
            let events: Vec<String> = s.vm.events().skip(s.events_seen).map(|e| format!("{e:?}")).collect();
            s.events_seen += events.len();
            for e in events {
                self.trace(format!("{name} VMM"), e);
            }
            self.vms[i] = Some(s);
        }
        checks::after_step(self);
    }

    fn finish(mut self) -> Report {
        self.step = self.sc.steps.len() + 1;
        self.line = 0;
        ops::teardown(&mut self);
        for a in P::take_log(self.host.iommu_mut().driver_mut()) {
            self.trace("host", a);
        }
        checks::at_end(&mut self);
        let mut r = self.report;
        r.page_requests.faults_recorded = self.hw.faults_recorded();
        r.ok = r.setup_errors.is_empty() && r.failed_steps == 0 && r.violations() == 0;
        r
    }
}

/// Bytes as text when printable, else hex.
pub(crate) fn show_bytes(b: &[u8]) -> String {
    if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("\"{}\"", String::from_utf8_lossy(b))
    } else if b.len() <= 32 {
        let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
        format!("[{}]", hex.join(" "))
    } else {
        format!("{} bytes", b.len())
    }
}

/// The name of a step's kernel: `host` or the VM's name.
pub(crate) fn ctx_name(sc: &Scenario, ctx: Ctx) -> String {
    match ctx {
        Ctx::Host => "host".into(),
        Ctx::Vm(v) => sc.vms.get(v).map_or_else(|| "?".into(), |x| x.name.clone()),
    }
}
