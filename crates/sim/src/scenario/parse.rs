//! TOML → [`Scenario`]. Sections are read with serde (unknown keys are
//! errors); steps are read key by key so that every message can point at
//! the key at fault and list what the operation takes.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use iommu_format::smmuv3::event::EventId;
use iommu_format::vtd::fault::FaultReason;
use iommu_format::vtd::inv_desc::ResponseCode;
use iommu_os::pasid::LocalPolicy;
use iommu_os::Errno;
use iommu_types::{Perm, SourceId};
use iommu_vmm::{HostApi, PasidMode};
use serde::Deserialize;
use toml::{Spanned, Value};

use super::error::Locator;
use super::*;

/// Most steps a scenario may have (a generator step counts once).
pub const MAX_STEPS: usize = 10_000;
/// Most DMAs one `random-dma` step may issue.
pub const MAX_RANDOM_DMAS: u64 = 1_000_000;
/// Largest single DMA or CPU access, in bytes.
pub const MAX_ACCESS: u64 = 1 << 20;
/// Highest group number a scenario may name.
const MAX_GROUP: i64 = 1 << 16;
/// Most devices, processes or VMs.
const MAX_ENTITIES: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    name: Option<String>,
    description: Option<String>,
    machine: Option<MachineToml>,
    checks: Option<ChecksToml>,
    #[serde(default)]
    device: Vec<Spanned<DeviceToml>>,
    #[serde(default)]
    process: Vec<Spanned<ProcessToml>>,
    #[serde(default)]
    vm: Vec<Spanned<VmToml>>,
    #[serde(default)]
    step: Vec<Spanned<BTreeMap<Spanned<String>, Spanned<Value>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineToml {
    iommu: Option<Spanned<String>>,
    memory_mib: Option<Spanned<i64>>,
    pasid_bits: Option<Spanned<i64>>,
    policy: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksToml {
    isolation: Option<bool>,
    stale: Option<bool>,
    leaks: Option<bool>,
    bounds: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceToml {
    name: Spanned<String>,
    bdf: Option<Spanned<String>>,
    parent: Option<Spanned<String>>,
    pasids: Option<Spanned<i64>>,
    ats: Option<bool>,
    pri: Option<bool>,
    bus: Option<Spanned<String>>,
    group: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessToml {
    name: Spanned<String>,
    #[serde(default)]
    maps: Vec<Spanned<MapToml>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MapToml {
    va: Spanned<i64>,
    len: Spanned<i64>,
    perm: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmToml {
    name: Spanned<String>,
    ram_mib: Option<Spanned<i64>>,
    pasid_mode: Option<Spanned<String>>,
    host_api: Option<Spanned<String>>,
    max_pasids: Option<Spanned<i64>>,
    max_fault_groups: Option<Spanned<i64>>,
    #[serde(default)]
    devices: Vec<Spanned<VmDeviceToml>>,
    #[serde(default)]
    processes: Vec<Spanned<ProcessToml>>,
    budget: Option<BudgetToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmDeviceToml {
    device: Spanned<String>,
    bdf: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetToml {
    pasids: Option<Spanned<i64>>,
    fault_groups: Option<Spanned<i64>>,
    objects: Option<Spanned<i64>>,
}

/// Reads and parses a scenario file.
///
/// # Errors
/// The file cannot be read, or [`parse`] fails.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        origin: origin.clone(),
        line: None,
        column: None,
        message: format!("cannot read the scenario: {e}"),
    })?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    parse(&text, &origin, &stem)
}

/// Parses scenario `text` from `origin`; `default_name` names it when the
/// file does not.
///
/// # Errors
/// One [`ScenarioError`]: the first problem found, with its line.
pub fn parse(text: &str, origin: &str, default_name: &str) -> Result<Scenario, ScenarioError> {
    let loc = Locator::new(origin, text);
    let doc: Doc = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim_end().to_string();
        match e.span() {
            Some(s) => loc.at(s, msg),
            None => loc.whole(msg),
        }
    })?;
    Builder::new(loc).build(doc, default_name)
}

struct Builder<'a> {
    loc: Locator<'a>,
    sc: Scenario,
}

fn int_in(loc: &Locator<'_>, v: &Spanned<i64>, what: &str, lo: i64, hi: i64) -> Result<i64, ScenarioError> {
    let x = *v.get_ref();
    if x < lo || x > hi {
        return Err(loc.at(v.span(), format!("{what} = {x} is out of range: expected {lo}..={hi}")));
    }
    Ok(x)
}

fn parse_bdf(loc: &Locator<'_>, s: &Spanned<String>) -> Result<SourceId, ScenarioError> {
    let bad = || {
        loc.at(
            s.span(),
            format!("bdf `{}`: expected BB:DD.F in hex (bus ≤ ff, device ≤ 1f, function ≤ 7)", s.get_ref()),
        )
    };
    let (bus, rest) = s.get_ref().split_once(':').ok_or_else(bad)?;
    let (dev, func) = rest.split_once('.').ok_or_else(bad)?;
    if ![bus, dev, func].iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_hexdigit())) {
        return Err(bad());
    }
    let bus = u8::from_str_radix(bus, 16).map_err(|_| bad())?;
    let dev = u8::from_str_radix(dev, 16).map_err(|_| bad())?;
    let func = u8::from_str_radix(func, 16).map_err(|_| bad())?;
    if dev >= 32 || func >= 8 {
        return Err(bad());
    }
    Ok(SourceId::from_bdf(bus, dev, func))
}

fn parse_perm(loc: &Locator<'_>, span: Range<usize>, s: &str) -> Result<Perm, ScenarioError> {
    let mut p = Perm { read: false, write: false, exec: false };
    for c in s.chars() {
        match c {
            'r' => p.read = true,
            'w' => p.write = true,
            'x' => p.exec = true,
            _ => return Err(loc.at(span, format!("perm `{s}`: expected letters from `rwx`, e.g. \"rw\""))),
        }
    }
    if !p.read && !p.write {
        return Err(loc.at(span, format!("perm `{s}`: expected at least `r` or `w`")));
    }
    Ok(p)
}

fn choice<T: Copy>(
    loc: &Locator<'_>,
    v: &Spanned<String>,
    what: &str,
    options: &[(&str, T)],
) -> Result<T, ScenarioError> {
    options.iter().find(|(n, _)| *n == v.get_ref()).map(|(_, t)| *t).ok_or_else(|| {
        let names: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        loc.at(v.span(), format!("{what} `{}`: expected one of {}", v.get_ref(), names.join(", ")))
    })
}

fn check_name(loc: &Locator<'_>, n: &Spanned<String>, taken: &[&str], kind: &str) -> Result<String, ScenarioError> {
    let s = n.get_ref();
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(loc.at(n.span(), format!("{kind} name `{s}`: expected 1–64 letters, digits, `-` or `_`")));
    }
    if taken.contains(&s.as_str()) {
        return Err(loc.at(n.span(), format!("{kind} `{s}` is defined twice")));
    }
    Ok(s.clone())
}

impl<'a> Builder<'a> {
    fn new(loc: Locator<'a>) -> Self {
        let sc = Scenario {
            name: String::new(),
            description: String::new(),
            origin: loc.origin.to_string(),
            machine: MachineSpec { iommu: IommuKind::Vtd, memory_mib: 256, pasid_bits: 20, policy: LocalPolicy::V2 },
            checks: Checks::default(),
            devices: Vec::new(),
            processes: Vec::new(),
            vms: Vec::new(),
            bonds: Vec::new(),
            domains: Vec::new(),
            sets: Vec::new(),
            ioasids: Vec::new(),
            steps: Vec::new(),
        };
        Self { loc, sc }
    }

    fn build(mut self, doc: Doc, default_name: &str) -> Result<Scenario, ScenarioError> {
        self.sc.name = doc.name.unwrap_or_else(|| default_name.to_string());
        self.sc.description = doc.description.unwrap_or_default();
        if let Some(m) = doc.machine {
            self.machine(m)?;
        }
        if let Some(c) = doc.checks {
            let d = Checks::default();
            self.sc.checks = Checks {
                isolation: c.isolation.unwrap_or(d.isolation),
                stale: c.stale.unwrap_or(d.stale),
                leaks: c.leaks.unwrap_or(d.leaks),
                bounds: c.bounds.unwrap_or(d.bounds),
            };
        }
        let over = [
            ("devices", doc.device.len(), doc.device.get(MAX_ENTITIES).map(|d| d.span())),
            ("processes", doc.process.len(), doc.process.get(MAX_ENTITIES).map(|p| p.span())),
            ("VMs", doc.vm.len(), doc.vm.get(MAX_ENTITIES).map(|v| v.span())),
        ];
        for (what, n, first_over) in over {
            if let Some(span) = first_over {
                return Err(self.loc.at(span, format!("{n} {what}: at most {MAX_ENTITIES} are allowed")));
            }
        }
        for d in &doc.device {
            self.device(d)?;
        }
        for p in &doc.process {
            let taken: Vec<&str> = self.sc.processes.iter().map(|p| p.name.as_str()).collect();
            let spec = self.process(p.get_ref(), &taken)?;
            self.sc.processes.push(spec);
        }
        for v in &doc.vm {
            self.vm(v)?;
        }
        if let Some(first_over) = doc.step.get(MAX_STEPS) {
            let msg = format!("{} steps: at most {MAX_STEPS} are allowed", doc.step.len());
            return Err(self.loc.at(first_over.span(), msg));
        }
        for s in &doc.step {
            let step = StepReader::new(&mut self, s)?.read()?;
            self.sc.steps.push(step);
        }
        Ok(self.sc)
    }

    fn machine(&mut self, m: MachineToml) -> Result<(), ScenarioError> {
        let loc = &self.loc;
        if let Some(k) = &m.iommu {
            self.sc.machine.iommu = choice(loc, k, "iommu", &[("vtd", IommuKind::Vtd), ("smmuv3", IommuKind::Smmuv3)])?;
        }
        if let Some(v) = &m.memory_mib {
            self.sc.machine.memory_mib = int_in(loc, v, "memory_mib", 64, 16384)? as u64;
        }
        if let Some(v) = &m.pasid_bits {
            self.sc.machine.pasid_bits = int_in(loc, v, "pasid_bits", 1, 20)? as u8;
        }
        if let Some(p) = &m.policy {
            self.sc.machine.policy = choice(loc, p, "policy", &[("v2", LocalPolicy::V2), ("v3", LocalPolicy::V3)])?;
        }
        Ok(())
    }

    fn device(&mut self, d: &Spanned<DeviceToml>) -> Result<(), ScenarioError> {
        let loc = &self.loc;
        let t = d.get_ref();
        let taken: Vec<&str> = self.sc.devices.iter().map(|d| d.name.as_str()).collect();
        let name = check_name(loc, &t.name, &taken, "device")?;
        if let Some(p) = &t.parent {
            return self.mdev(d, name, p);
        }
        let Some(bdf) = &t.bdf else {
            return Err(
                loc.at(d.span(), format!("device `{name}`: missing key `bdf` (or `parent` for a mediated device)"))
            );
        };
        let sid = parse_bdf(loc, bdf)?;
        if let Some(other) = self.sc.devices.iter().find(|o| o.sid == sid && o.parent.is_none()) {
            return Err(loc.at(bdf.span(), format!("bdf {sid} is already device `{}`", other.name)));
        }
        let pasids = t.pasids.as_ref().map(|v| int_in(loc, v, "pasids", 0, 1 << 20)).transpose()?.unwrap_or(1 << 20);
        let pci = match &t.bus {
            Some(b) => choice(loc, b, "bus", &[("pci", true), ("platform", false)])?,
            None => true,
        };
        let group = t.group.as_ref().map(|g| int_in(loc, g, "group", 1, MAX_GROUP)).transpose()?;
        let spec = DeviceSpec {
            name,
            sid,
            pasids: pasids as u32,
            ats: t.ats.unwrap_or(true),
            pri: t.pri.unwrap_or(true),
            pci,
            // A device without a group gets one of its own, numbered above
            // every group a scenario can name.
            group: group.map_or(MAX_GROUP as u32 + 1 + self.sc.devices.len() as u32, |g| g as u32),
            parent: None,
        };
        self.sc.devices.push(spec);
        Ok(())
    }

    /// A mediated device: a name and its parent, nothing else (it has the
    /// parent's requester ID and capabilities).
    fn mdev(&mut self, d: &Spanned<DeviceToml>, name: String, p: &Spanned<String>) -> Result<(), ScenarioError> {
        let loc = &self.loc;
        let t = d.get_ref();
        // Where the offending key is, when its value carries a span.
        let extra = [
            ("bdf", t.bdf.as_ref().map(|v| Some(v.span()))),
            ("pasids", t.pasids.as_ref().map(|v| Some(v.span()))),
            ("ats", t.ats.map(|_| None)),
            ("pri", t.pri.map(|_| None)),
            ("bus", t.bus.as_ref().map(|v| Some(v.span()))),
            ("group", t.group.as_ref().map(|v| Some(v.span()))),
        ];
        if let Some((k, Some(at))) = extra.into_iter().find(|(_, set)| set.is_some()) {
            return Err(loc.at(
                at.unwrap_or_else(|| d.span()),
                format!("device `{name}`: a mediated device (with `parent`) takes only `name` and `parent`, not `{k}`"),
            ));
        }
        let Some(pi) = self.sc.devices.iter().position(|x| &x.name == p.get_ref()) else {
            return Err(
                loc.at(p.span(), format!("parent `{}`: expected the name of an earlier [[device]]", p.get_ref()))
            );
        };
        let parent = &self.sc.devices[pi];
        if parent.parent.is_some() {
            return Err(loc.at(p.span(), format!("parent `{}` is itself a mediated device", p.get_ref())));
        }
        let spec = DeviceSpec { name, parent: Some(pi), ..parent.clone() };
        self.sc.devices.push(spec);
        Ok(())
    }

    fn map(&self, m: &Spanned<MapToml>) -> Result<MapSpec, ScenarioError> {
        let loc = &self.loc;
        let t = m.get_ref();
        let va = int_in(loc, &t.va, "va", 0, (1 << 47) - 1)? as u64;
        if va % 4096 != 0 {
            return Err(loc.at(t.va.span(), format!("va = {va:#x}: expected a 4 KiB aligned address")));
        }
        let len = int_in(loc, &t.len, "len", 1, 1 << 36)? as u64;
        let perm = match &t.perm {
            Some(p) => parse_perm(loc, p.span(), p.get_ref())?,
            None => Perm { read: true, write: true, exec: false },
        };
        Ok(MapSpec { va, len, perm })
    }

    fn process(&self, p: &ProcessToml, taken: &[&str]) -> Result<ProcessSpec, ScenarioError> {
        let name = check_name(&self.loc, &p.name, taken, "process")?;
        let maps = p.maps.iter().map(|m| self.map(m)).collect::<Result<_, _>>()?;
        Ok(ProcessSpec { name, maps })
    }

    fn vm(&mut self, v: &Spanned<VmToml>) -> Result<(), ScenarioError> {
        let loc = &self.loc;
        let t = v.get_ref();
        if self.sc.machine.iommu != IommuKind::Vtd {
            return Err(
                loc.at(v.span(), "[[vm]] needs `iommu = \"vtd\"`: the VMM's vIOMMU is a VT-d one, over a VT-d host")
            );
        }
        let taken: Vec<&str> = self.sc.vms.iter().map(|v| v.name.as_str()).collect();
        let name = check_name(loc, &t.name, &taken, "VM")?;
        let ram_mib = t.ram_mib.as_ref().map(|r| int_in(loc, r, "ram_mib", 2, 1024)).transpose()?.unwrap_or(16) as u64;
        let pasid_mode = match &t.pasid_mode {
            Some(m) => choice(
                loc,
                m,
                "pasid_mode",
                &[("identity", PasidMode::Identity), ("translated", PasidMode::Translated)],
            )?,
            None => PasidMode::Identity,
        };
        let host_api = match &t.host_api {
            Some(m) => {
                choice(loc, m, "host_api", &[("iommufd", HostApi::Iommufd), ("bind-gpasid", HostApi::BindGpasid)])?
            }
            None => HostApi::Iommufd,
        };
        if host_api == HostApi::BindGpasid && pasid_mode != PasidMode::Translated {
            let span = t.host_api.as_ref().map_or(v.span(), |s| s.span());
            return Err(loc.at(span, "host_api = \"bind-gpasid\" needs pasid_mode = \"translated\" (host PASIDs come from the VM's IOASID set)"));
        }
        let max_pasids =
            t.max_pasids.as_ref().map(|m| int_in(loc, m, "max_pasids", 1, 1 << 16)).transpose()?.unwrap_or(64) as u32;
        let max_fault_groups = t
            .max_fault_groups
            .as_ref()
            .map(|m| int_in(loc, m, "max_fault_groups", 1, 1 << 16))
            .transpose()?
            .unwrap_or(256) as usize;
        let mut devices = Vec::new();
        for d in &t.devices {
            let dt = d.get_ref();
            let idx = self.sc.devices.iter().position(|x| &x.name == dt.device.get_ref()).ok_or_else(|| {
                loc.at(
                    dt.device.span(),
                    format!("unknown device `{}`: expected one of the [[device]] names", dt.device.get_ref()),
                )
            })?;
            if self.sc.devices[idx].parent.is_some() {
                return Err(loc.at(
                    dt.device.span(),
                    format!(
                        "device `{}` is a mediated device: only physical devices are assigned",
                        dt.device.get_ref()
                    ),
                ));
            }
            if devices.iter().any(|(i, _)| *i == idx) {
                return Err(loc.at(dt.device.span(), format!("device `{}` is assigned twice", dt.device.get_ref())));
            }
            if self.sc.vms.iter().any(|vm| vm.devices.iter().any(|(i, _)| *i == idx)) {
                return Err(loc.at(
                    dt.device.span(),
                    format!("device `{}` is already assigned to another VM", dt.device.get_ref()),
                ));
            }
            let gsid = parse_bdf(loc, &dt.bdf)?;
            if devices.iter().any(|(_, s)| *s == gsid) {
                return Err(loc.at(dt.bdf.span(), format!("guest bdf {gsid} is used twice in this VM")));
            }
            devices.push((idx, gsid));
        }
        let mut processes: Vec<ProcessSpec> = Vec::new();
        for p in &t.processes {
            let taken: Vec<&str> = processes.iter().map(|p| p.name.as_str()).collect();
            processes.push(self.process(p.get_ref(), &taken)?);
        }
        let b = t.budget.as_ref();
        let get = |f: Option<&Spanned<i64>>, what: &str, default: i64| -> Result<i64, ScenarioError> {
            f.map(|v| int_in(loc, v, what, 0, 1 << 20)).transpose().map(|x| x.unwrap_or(default))
        };
        let budget = Budget {
            pasids: get(b.and_then(|b| b.pasids.as_ref()), "budget.pasids", i64::from(max_pasids))? as u32,
            fault_groups: get(b.and_then(|b| b.fault_groups.as_ref()), "budget.fault_groups", max_fault_groups as i64)?
                as usize,
            objects: get(b.and_then(|b| b.objects.as_ref()), "budget.objects", 16 + 4 * i64::from(max_pasids))?
                as usize,
        };
        self.sc.vms.push(VmSpec {
            name,
            ram_mib,
            pasid_mode,
            host_api,
            max_pasids,
            max_fault_groups,
            devices,
            processes,
            budget,
        });
        Ok(())
    }
}

/// The names every operation takes, for "it takes: …" messages.
const OPS: &[(&str, &str)] = &[
    ("mmap", "vm, process, va, len, perm"),
    ("munmap", "vm, process, va, len"),
    ("cpu-write", "vm, process, va, data"),
    ("cpu-read", "vm, process, va, len, expect_data"),
    ("exit", "vm, process"),
    ("enqcmd", "process"),
    ("bind", "vm, device, process, as"),
    ("bind-device-pasid", "vm, device, process, pasid, as"),
    ("unbind", "vm, bond"),
    ("dma-write", "vm, device, pasid | bond, addr, data"),
    ("dma-read", "vm, device, pasid | bond, addr, len, expect_data"),
    ("random-dma", "vm, device, bonds | pasids, base, span, count, seed, write_percent"),
    ("pasid-alloc", "count"),
    ("domain-alloc", "as, format, levels, nest_parent"),
    ("domain-free", "domain"),
    ("map", "domain, iova, len, perm"),
    ("unmap", "domain, iova, len"),
    ("attach", "domain, device, pasid"),
    ("replace", "domain, device, pasid"),
    ("detach", "domain, device, pasid"),
    ("aux-attach", "domain, device, as"),
    ("aux-detach", "domain, device"),
    ("ioasid-set-alloc", "as, quota"),
    ("ioasid-alloc", "set, as"),
    ("ioasid-free", "set, pasid"),
    ("gpasid-bind", "device, set, pasid, gpasid, gpgd"),
    ("gpasid-unbind", "device, pasid"),
    ("remove-device", "device"),
    ("corrupt-pte", "process | domain, va, value | redirect_process + redirect_va"),
    ("vm-revoke", "vm, device, gpasid"),
    ("vm-unplug", "vm, device"),
    ("vm-destroy", "vm"),
];

/// Keys every step may carry.
const COMMON: &[&str] = &["op", "expect", "expect_data", "note"];

struct StepReader<'b, 'a> {
    b: &'b mut Builder<'a>,
    span: Range<usize>,
    keys: BTreeMap<String, (Range<usize>, Spanned<Value>)>,
    used: BTreeSet<String>,
    op: (String, Range<usize>),
}

impl<'b, 'a> StepReader<'b, 'a> {
    fn new(
        b: &'b mut Builder<'a>,
        s: &Spanned<BTreeMap<Spanned<String>, Spanned<Value>>>,
    ) -> Result<Self, ScenarioError> {
        let keys: BTreeMap<String, (Range<usize>, Spanned<Value>)> =
            s.get_ref().iter().map(|(k, v)| (k.get_ref().clone(), (k.span(), v.clone()))).collect();
        let op = match keys.get("op") {
            Some((_, v)) => match v.get_ref() {
                Value::String(o) => (o.clone(), v.span()),
                _ => return Err(b.loc.at(v.span(), "op: expected a string, e.g. op = \"bind\"")),
            },
            None => return Err(b.loc.at(s.span(), "step without `op`: expected e.g. op = \"bind\"")),
        };
        if !OPS.iter().any(|(n, _)| *n == op.0) {
            let names: Vec<&str> = OPS.iter().map(|(n, _)| *n).collect();
            return Err(b.loc.at(op.1.clone(), format!("unknown op `{}`: expected one of {}", op.0, names.join(", "))));
        }
        Ok(Self { b, span: s.span(), keys, used: COMMON.iter().map(|k| k.to_string()).collect(), op })
    }

    fn err_at(&self, span: Range<usize>, msg: impl Into<String>) -> ScenarioError {
        self.b.loc.at(span, format!("step `{}`: {}", self.op.0, msg.into()))
    }

    fn takes(&self) -> &'static str {
        OPS.iter().find(|(n, _)| *n == self.op.0).map_or("", |(_, t)| *t)
    }

    fn value(&mut self, key: &str) -> Option<Spanned<Value>> {
        self.used.insert(key.to_string());
        self.keys.get(key).map(|(_, v)| v.clone())
    }

    fn missing(&self, key: &str) -> ScenarioError {
        self.err_at(self.span.clone(), format!("missing `{key}` (it takes: {})", self.takes()))
    }

    fn opt_u64(&mut self, key: &str, lo: u64, hi: u64) -> Result<Option<u64>, ScenarioError> {
        let Some(v) = self.value(key) else { return Ok(None) };
        match v.get_ref() {
            Value::Integer(i) if *i >= 0 && (*i as u64) >= lo && (*i as u64) <= hi => Ok(Some(*i as u64)),
            Value::Integer(i) => {
                Err(self.err_at(v.span(), format!("{key} = {i} is out of range: expected {lo:#x}..={hi:#x}")))
            }
            other => Err(self.err_at(v.span(), format!("{key}: expected an integer, found {}", other.type_str()))),
        }
    }

    fn u64(&mut self, key: &str, lo: u64, hi: u64) -> Result<u64, ScenarioError> {
        self.opt_u64(key, lo, hi)?.ok_or_else(|| self.missing(key))
    }

    fn addr(&mut self, key: &str) -> Result<u64, ScenarioError> {
        self.u64(key, 0, i64::MAX as u64)
    }

    fn opt_str(&mut self, key: &str) -> Result<Option<Spanned<String>>, ScenarioError> {
        let Some(v) = self.value(key) else { return Ok(None) };
        match v.get_ref() {
            Value::String(s) => Ok(Some(Spanned::new(v.span(), s.clone()))),
            other => Err(self.err_at(v.span(), format!("{key}: expected a string, found {}", other.type_str()))),
        }
    }

    fn str(&mut self, key: &str) -> Result<Spanned<String>, ScenarioError> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, ScenarioError> {
        let Some(v) = self.value(key) else { return Ok(None) };
        match v.get_ref() {
            Value::Boolean(b) => Ok(Some(*b)),
            other => Err(self.err_at(v.span(), format!("{key}: expected true or false, found {}", other.type_str()))),
        }
    }

    fn data(&mut self, key: &str) -> Result<Option<Vec<u8>>, ScenarioError> {
        let Some(v) = self.value(key) else { return Ok(None) };
        let bytes = match v.get_ref() {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len().min(MAX_ACCESS as usize));
                for x in a {
                    match x {
                        Value::Integer(i) if (0..=255).contains(i) => out.push(*i as u8),
                        _ => return Err(self.err_at(v.span(), format!("{key}: expected bytes 0..=255 in the array"))),
                    }
                }
                out
            }
            other => {
                return Err(self.err_at(
                    v.span(),
                    format!("{key}: expected a string or an array of bytes, found {}", other.type_str()),
                ))
            }
        };
        if bytes.is_empty() || bytes.len() as u64 > MAX_ACCESS {
            return Err(self.err_at(v.span(), format!("{key}: expected 1..={MAX_ACCESS} bytes")));
        }
        Ok(Some(bytes))
    }

    fn perm(&mut self, key: &str) -> Result<Perm, ScenarioError> {
        match self.opt_str(key)? {
            Some(s) => parse_perm(&self.b.loc, s.span(), s.get_ref()).map_err(|e| self.prefix(e)),
            None => Ok(Perm { read: true, write: true, exec: false }),
        }
    }

    fn prefix(&self, mut e: ScenarioError) -> ScenarioError {
        e.message = format!("step `{}`: {}", self.op.0, e.message);
        e
    }

    fn ctx(&mut self) -> Result<Ctx, ScenarioError> {
        match self.opt_str("vm")? {
            None => Ok(Ctx::Host),
            Some(n) => self.b.sc.vms.iter().position(|v| &v.name == n.get_ref()).map(Ctx::Vm).ok_or_else(|| {
                self.err_at(n.span(), format!("unknown VM `{}`: expected one of the [[vm]] names", n.get_ref()))
            }),
        }
    }

    fn vm(&mut self) -> Result<usize, ScenarioError> {
        match self.ctx()? {
            Ctx::Vm(v) => Ok(v),
            Ctx::Host => Err(self.missing("vm")),
        }
    }

    fn host_only(&self, ctx: Ctx) -> Result<(), ScenarioError> {
        match ctx {
            Ctx::Host => Ok(()),
            Ctx::Vm(_) => {
                let span = self.keys.get("vm").map_or(self.op.1.clone(), |(_, v)| v.span());
                Err(self.err_at(span, "runs on the host only; remove `vm`"))
            }
        }
    }

    fn device(&mut self, ctx: Ctx) -> Result<usize, ScenarioError> {
        let n = self.str("device")?;
        let idx = self.b.sc.devices.iter().position(|d| &d.name == n.get_ref()).ok_or_else(|| {
            self.err_at(n.span(), format!("unknown device `{}`: expected one of the [[device]] names", n.get_ref()))
        })?;
        if let Ctx::Vm(v) = ctx {
            let vm = &self.b.sc.vms[v];
            if !vm.devices.iter().any(|(i, _)| *i == idx) {
                return Err(
                    self.err_at(n.span(), format!("device `{}` is not assigned to VM `{}`", n.get_ref(), vm.name))
                );
            }
        }
        Ok(idx)
    }

    fn process(&mut self, ctx: Ctx) -> Result<usize, ScenarioError> {
        let n = self.str("process")?;
        let list = match ctx {
            Ctx::Host => &self.b.sc.processes,
            Ctx::Vm(v) => &self.b.sc.vms[v].processes,
        };
        list.iter().position(|p| &p.name == n.get_ref()).ok_or_else(|| {
            let place = match ctx {
                Ctx::Host => "the [[process]] names".to_string(),
                Ctx::Vm(v) => format!("the processes of VM `{}`", self.b.sc.vms[v].name),
            };
            self.err_at(n.span(), format!("unknown process `{}`: expected one of {place}", n.get_ref()))
        })
    }

    /// Resolves a name defined by an earlier `as`.
    fn named(
        &mut self,
        key: &str,
        kind: &str,
        pick: fn(&Scenario, Ctx) -> Vec<String>,
        ctx: Ctx,
    ) -> Result<usize, ScenarioError> {
        let n = self.str(key)?;
        self.resolve(&n, kind, pick, ctx)
    }

    fn resolve(
        &self,
        n: &Spanned<String>,
        kind: &str,
        pick: fn(&Scenario, Ctx) -> Vec<String>,
        ctx: Ctx,
    ) -> Result<usize, ScenarioError> {
        pick(&self.b.sc, ctx).iter().position(|x| x == n.get_ref()).ok_or_else(|| {
            self.err_at(
                n.span(),
                format!("unknown {kind} `{}`: a {kind} is named by `as` on an earlier step", n.get_ref()),
            )
        })
    }

    /// Defines a host-wide name with `as` in `list`; returns its index.
    fn define(&mut self, kind: &str, list: fn(&mut Scenario) -> &mut Vec<String>) -> Result<usize, ScenarioError> {
        let n = self.str("as")?;
        let taken = list(&mut self.b.sc).clone();
        let tk: Vec<&str> = taken.iter().map(|s| s.as_str()).collect();
        let name = check_name(&self.b.loc, &n, &tk, kind).map_err(|e| self.prefix(e))?;
        let l = list(&mut self.b.sc);
        l.push(name);
        Ok(l.len() - 1)
    }

    fn define_bond(&mut self, ctx: Ctx) -> Result<usize, ScenarioError> {
        let n = self.str("as")?;
        let taken: Vec<&str> = self.b.sc.bonds.iter().filter(|(c, _)| *c == ctx).map(|(_, s)| s.as_str()).collect();
        let name = check_name(&self.b.loc, &n, &taken, "bond").map_err(|e| self.prefix(e))?;
        self.b.sc.bonds.push((ctx, name));
        Ok(self.b.sc.bonds.len() - 1)
    }

    fn bond(&mut self, key: &str, ctx: Ctx) -> Result<Option<usize>, ScenarioError> {
        let Some(n) = self.opt_str(key)? else { return Ok(None) };
        self.bond_named(&n, ctx).map(Some)
    }

    fn bond_named(&self, n: &Spanned<String>, ctx: Ctx) -> Result<usize, ScenarioError> {
        self.b.sc.bonds.iter().position(|(c, s)| *c == ctx && s == n.get_ref()).ok_or_else(|| {
            self.err_at(
                n.span(),
                format!(
                    "unknown bond `{}`: a bond is named by `as` on an earlier bind step in the same kernel",
                    n.get_ref()
                ),
            )
        })
    }

    fn space(&mut self, ctx: Ctx) -> Result<DmaSpace, ScenarioError> {
        let p = self.opt_u64("pasid", 0, (1 << 20) - 1)?;
        let b = self.bond("bond", ctx)?;
        match (p, b) {
            (Some(_), Some(_)) => Err(self.err_at(self.span.clone(), "give `pasid` or `bond`, not both")),
            (Some(p), None) => Ok(DmaSpace::Pasid(p as u32)),
            (None, Some(b)) => Ok(DmaSpace::Bond(b)),
            (None, None) => Ok(DmaSpace::Rid),
        }
    }

    fn expect(&mut self) -> Result<Expect, ScenarioError> {
        let Some(s) = self.opt_str("expect")? else { return Ok(Expect::Ok) };
        let t = s.get_ref().as_str();
        if let Some(e) = Errno::ALL.iter().find(|e| e.name() == t) {
            return Ok(Expect::Errno(*e));
        }
        let e = match t {
            "ok" => Expect::Ok,
            "any" => Expect::Any,
            "fault" => Expect::Fault(None),
            "invalid-request" => Expect::Response(ResponseCode::InvalidRequest),
            "response-failure" => Expect::Response(ResponseCode::ResponseFailure),
            _ => match t.strip_prefix("fault:") {
                Some(r) => Expect::Fault(Some(parse_reason(self.b.sc.machine.iommu, r).ok_or_else(|| {
                    let eg = match self.b.sc.machine.iommu {
                        IommuKind::Vtd => "fault:0x71 or fault:SmPteNotPresent",
                        IommuKind::Smmuv3 => "fault:0x10 or fault:F_TRANSLATION",
                    };
                    self.err_at(s.span(), format!("expect `{t}`: expected fault:0xNN or fault:<reason name> of this machine's IOMMU (e.g. {eg})"))
                })?)),
                None => {
                    return Err(self.err_at(
                        s.span(),
                        format!("expect `{t}`: expected \"ok\", \"any\", an errno name (\"EBUSY\"), \"fault\", \"fault:0xNN\", \"invalid-request\" or \"response-failure\""),
                    ))
                }
            },
        };
        Ok(e)
    }

    fn unknown_key(&self, k: &str, span: Range<usize>) -> ScenarioError {
        self.err_at(span, format!("unknown key `{k}` (it takes: {}; any step: expect, note)", self.takes()))
    }

    fn read(mut self) -> Result<Step, ScenarioError> {
        let (line, _) = self.b.loc.line_col(self.span.start);
        // Keys the op does not take are reported before keys it misses (a
        // misspelt key is the likelier mistake).
        let takes: BTreeSet<&str> =
            self.takes().split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
        let common = ["op", "expect", "note", "vm"];
        if let Some((k, (span, _))) =
            self.keys.iter().find(|(k, _)| !takes.contains(k.as_str()) && !common.contains(&k.as_str()))
        {
            return Err(self.unknown_key(k, span.clone()));
        }
        let op = self.op()?;
        let expect = self.expect()?;
        let expect_data = self.data("expect_data")?;
        let note = self.opt_str("note")?.map(|s| s.into_inner());
        if let Some((k, (span, v))) = self.keys.iter().find(|(k, _)| !self.used.contains(*k)) {
            if k == "vm" {
                return Err(self.err_at(v.span(), "runs on the host only; remove `vm`"));
            }
            return Err(self.unknown_key(k, span.clone()));
        }
        Ok(Step { line, op, expect, expect_data, note })
    }

    fn op(&mut self) -> Result<Op, ScenarioError> {
        let name = self.op.0.clone();
        let max_len = MAX_ACCESS;
        Ok(match name.as_str() {
            "mmap" => {
                let ctx = self.ctx()?;
                let process = self.process(ctx)?;
                let va = self.u64("va", 0, (1 << 47) - 1)?;
                let len = self.u64("len", 1, 1 << 36)?;
                let perm = self.perm("perm")?;
                Op::Mmap { ctx, process, map: MapSpec { va, len, perm } }
            }
            "munmap" => {
                let ctx = self.ctx()?;
                let process = self.process(ctx)?;
                Op::Munmap { ctx, process, va: self.addr("va")?, len: self.u64("len", 1, 1 << 47)? }
            }
            "cpu-write" => {
                let ctx = self.ctx()?;
                let process = self.process(ctx)?;
                let va = self.addr("va")?;
                let data = self.data("data")?.ok_or_else(|| self.missing("data"))?;
                Op::CpuWrite { ctx, process, va, data }
            }
            "cpu-read" => {
                let ctx = self.ctx()?;
                let process = self.process(ctx)?;
                let va = self.addr("va")?;
                let len = self.read_len()?;
                Op::CpuRead { ctx, process, va, len }
            }
            "enqcmd" => {
                let ctx = self.ctx()?;
                self.host_only(ctx)?;
                Op::Enqcmd { process: self.process(Ctx::Host)? }
            }
            "exit" => {
                let ctx = self.ctx()?;
                Op::Exit { ctx, process: self.process(ctx)? }
            }
            "bind" => {
                let ctx = self.ctx()?;
                let device = self.device(ctx)?;
                let process = self.process(ctx)?;
                Op::Bind { ctx, device, process, bond: self.define_bond(ctx)? }
            }
            "bind-device-pasid" => {
                let ctx = self.ctx()?;
                let device = self.device(ctx)?;
                let process = self.process(ctx)?;
                let pasid = self.u64("pasid", 1, (1 << 20) - 1)? as u32;
                Op::BindDevicePasid { ctx, device, process, pasid, bond: self.define_bond(ctx)? }
            }
            "unbind" => {
                let ctx = self.ctx()?;
                let bond = self.bond("bond", ctx)?.ok_or_else(|| self.missing("bond"))?;
                Op::Unbind { ctx, bond }
            }
            "dma-write" | "dma-read" => {
                let ctx = self.ctx()?;
                let device = self.device(ctx)?;
                let space = self.space(ctx)?;
                let addr = self.addr("addr")?;
                if name == "dma-write" {
                    let data = self.data("data")?.ok_or_else(|| self.missing("data"))?;
                    Op::Dma { ctx, device, space, addr, len: data.len(), write: Some(data) }
                } else {
                    let len = self.read_len()?;
                    Op::Dma { ctx, device, space, addr, len, write: None }
                }
            }
            "random-dma" => {
                let ctx = self.ctx()?;
                let device = self.device(ctx)?;
                let mut spaces = Vec::new();
                if let Some(v) = self.value("bonds") {
                    let Value::Array(a) = v.get_ref() else {
                        return Err(self.err_at(v.span(), "bonds: expected an array of bond names"));
                    };
                    for x in a {
                        let Value::String(s) = x else {
                            return Err(self.err_at(v.span(), "bonds: expected an array of bond names"));
                        };
                        spaces.push(DmaSpace::Bond(self.bond_named(&Spanned::new(v.span(), s.clone()), ctx)?));
                    }
                }
                if let Some(v) = self.value("pasids") {
                    let Value::Array(a) = v.get_ref() else {
                        return Err(self.err_at(v.span(), "pasids: expected an array of PASID values"));
                    };
                    for x in a {
                        match x {
                            Value::Integer(p) if (0..1 << 20).contains(p) => spaces.push(DmaSpace::Pasid(*p as u32)),
                            _ => return Err(self.err_at(v.span(), "pasids: expected PASID values 0..=0xFFFFF")),
                        }
                    }
                }
                if spaces.is_empty() {
                    spaces.push(DmaSpace::Rid);
                }
                let base = self.addr("base")?;
                let span = self.u64("span", 1, 1 << 40)?;
                let count = self.u64("count", 1, MAX_RANDOM_DMAS)?;
                let seed = self.opt_u64("seed", 0, i64::MAX as u64)?.unwrap_or(1);
                let write_percent = self.opt_u64("write_percent", 0, 100)?.unwrap_or(50) as u8;
                Op::RandomDma { ctx, device, spaces, base, span, count, seed, write_percent }
            }
            "pasid-alloc" => Op::PasidAlloc { count: self.u64("count", 1, 1 << 20)? as u32 },
            "domain-alloc" => {
                let ctx = self.ctx()?;
                self.host_only(ctx)?;
                let domain = self.define("domain", |s| &mut s.domains)?;
                let second_stage = match self.opt_str("format")? {
                    None => true,
                    Some(f) => choice(&self.b.loc, &f, "format", &[("second-stage", true), ("first-stage", false)])
                        .map_err(|e| self.prefix(e))?,
                };
                let levels = self.opt_u64("levels", 3, 5)?.unwrap_or(4) as u8;
                let nest_parent = self.opt_bool("nest_parent")?.unwrap_or(false);
                Op::DomainAlloc { domain, second_stage, levels, nest_parent }
            }
            "domain-free" => Op::DomainFree { domain: self.domain()? },
            "map" | "unmap" => {
                let domain = self.domain()?;
                let iova = self.addr("iova")?;
                let len = self.u64("len", 1, max_len * 64)?;
                if name == "map" {
                    Op::Map { domain, iova, len, perm: self.perm("perm")? }
                } else {
                    Op::Unmap { domain, iova, len }
                }
            }
            "attach" | "replace" => {
                let domain = self.domain()?;
                let device = self.device(Ctx::Host)?;
                let pasid = self.opt_u64("pasid", 1, (1 << 20) - 1)?.map(|p| p as u32);
                if name == "attach" {
                    Op::Attach { domain, device, pasid }
                } else {
                    Op::Replace { domain, device, pasid }
                }
            }
            "detach" => {
                let domain = match self.opt_str("domain")? {
                    Some(n) => Some(self.resolve(&n, "domain", |s, _| s.domains.clone(), Ctx::Host)?),
                    None => None,
                };
                let device = self.device(Ctx::Host)?;
                let pasid = self.opt_u64("pasid", 1, (1 << 20) - 1)?.map(|p| p as u32);
                if pasid.is_some() && domain.is_none() {
                    return Err(self.missing("domain"));
                }
                Op::Detach { domain, device, pasid }
            }
            "aux-attach" | "aux-detach" => {
                let domain = self.domain()?;
                let device = self.device(Ctx::Host)?;
                if name == "aux-attach" {
                    Op::AuxAttach { domain, device, pasid: self.define_bond(Ctx::Host)? }
                } else {
                    Op::AuxDetach { domain, device }
                }
            }
            "ioasid-set-alloc" => {
                let set = self.define("IOASID set", |s| &mut s.sets)?;
                Op::IoasidSetAlloc { set, quota: self.u64("quota", 1, 1 << 20)? as u32 }
            }
            "ioasid-alloc" => {
                let set = self.named("set", "IOASID set", |s, _| s.sets.clone(), Ctx::Host)?;
                Op::IoasidAlloc { set, pasid: self.define("IOASID", |s| &mut s.ioasids)? }
            }
            "ioasid-free" => {
                let set = self.named("set", "IOASID set", |s, _| s.sets.clone(), Ctx::Host)?;
                Op::IoasidFree { set, pasid: self.named("pasid", "IOASID", |s, _| s.ioasids.clone(), Ctx::Host)? }
            }
            "gpasid-bind" => {
                let device = self.device(Ctx::Host)?;
                let set = self.named("set", "IOASID set", |s, _| s.sets.clone(), Ctx::Host)?;
                let pasid = self.named("pasid", "IOASID", |s, _| s.ioasids.clone(), Ctx::Host)?;
                let gpasid = self.u64("gpasid", 0, (1 << 20) - 1)? as u32;
                let gpgd = self.opt_u64("gpgd", 0, (1 << 52) - 1)?.unwrap_or(0x20_0000);
                Op::GpasidBind { device, set, pasid, gpasid, gpgd }
            }
            "gpasid-unbind" => {
                let device = self.device(Ctx::Host)?;
                Op::GpasidUnbind { device, pasid: self.named("pasid", "IOASID", |s, _| s.ioasids.clone(), Ctx::Host)? }
            }
            "remove-device" => Op::RemoveDevice { device: self.device(Ctx::Host)? },
            "corrupt-pte" => {
                let owner = match (self.opt_str("process")?, self.opt_str("domain")?) {
                    (Some(p), None) => PteOwner::Process(self.host_process_named(&p)?),
                    (None, Some(d)) => {
                        PteOwner::Domain(self.resolve(&d, "domain", |s, _| s.domains.clone(), Ctx::Host)?)
                    }
                    _ => return Err(self.err_at(self.span.clone(), "give exactly one of `process` or `domain`")),
                };
                let va = self.addr("va")?;
                let value = match (self.opt_u64("value", 0, i64::MAX as u64)?, self.opt_str("redirect_process")?) {
                    (Some(v), None) => PteValue::Raw(v),
                    (None, Some(p)) => PteValue::Redirect(self.host_process_named(&p)?, self.addr("redirect_va")?),
                    _ => {
                        return Err(self.err_at(
                            self.span.clone(),
                            "give exactly one of `value` or `redirect_process` (with `redirect_va`)",
                        ))
                    }
                };
                Op::CorruptPte { owner, va, value }
            }
            "vm-revoke" => {
                let vm = self.vm()?;
                let device = self.device(Ctx::Vm(vm))?;
                Op::VmRevoke { vm, device, gpasid: self.u64("gpasid", 1, (1 << 20) - 1)? as u32 }
            }
            "vm-unplug" => {
                let vm = self.vm()?;
                Op::VmUnplug { vm, device: self.device(Ctx::Vm(vm))? }
            }
            "vm-destroy" => Op::VmDestroy { vm: self.vm()? },
            other => return Err(self.err_at(self.op.1.clone(), format!("unknown op `{other}`"))),
        })
    }

    fn host_process_named(&self, n: &Spanned<String>) -> Result<usize, ScenarioError> {
        self.b.sc.processes.iter().position(|p| &p.name == n.get_ref()).ok_or_else(|| {
            self.err_at(n.span(), format!("unknown process `{}`: expected one of the [[process]] names", n.get_ref()))
        })
    }

    fn domain(&mut self) -> Result<usize, ScenarioError> {
        self.named("domain", "domain", |s, _| s.domains.clone(), Ctx::Host)
    }

    fn read_len(&mut self) -> Result<usize, ScenarioError> {
        let len = self.opt_u64("len", 1, MAX_ACCESS)?;
        let want = self.keys.get("expect_data").map(|(_, v)| match v.get_ref() {
            Value::String(s) => s.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        });
        match (len, want) {
            (Some(l), _) => Ok(l as usize),
            (None, Some(w)) if w > 0 => Ok(w),
            _ => Err(self.missing("len")),
        }
    }
}

/// A fault reason by code (`0x71`) or by name (`SmFirstStageNotPresent`).
/// A fault code of `iommu`: a number, or a VT-d reason name (`SmPteNotPresent`)
/// or an SMMUv3 event name (`F_TRANSLATION`).
fn parse_reason(iommu: IommuKind, s: &str) -> Option<FaultCode> {
    let num = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).map(|h| u8::from_str_radix(h, 16));
    match iommu {
        IommuKind::Vtd => {
            if let Some(n) = num {
                return n.ok().map(|n| FaultCode::Vtd(FaultReason::from(n)));
            }
            (0..=255u8)
                .map(FaultReason::from)
                .find(|r| !matches!(r, FaultReason::Unknown(_)) && format!("{r:?}") == s)
                .map(FaultCode::Vtd)
        }
        IommuKind::Smmuv3 => {
            let id = match num {
                Some(n) => EventId::from_u8(n.ok()?),
                None => (0..=255u8).filter_map(EventId::from_u8).find(|e| e.name() == s),
            };
            id.map(FaultCode::Smmu)
        }
    }
}
