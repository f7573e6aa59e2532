//! The operations of a timeline, each through the kernel's or the VMM's
//! public interface.

use iommu_os::driver::IommuDriver;
use iommu_os::frames::FrameAllocator;
use iommu_os::iommu::{DomainKind, HandleKind, MmId};
use iommu_os::kernel::{GpasidBindData, Kernel, FORMAT_INTEL_VTD, GPASID_BIND_ARGSZ};
use iommu_os::Errno;
use iommu_types::{Gpa, Hpa, Iova, Pasid, PhysMem};
use iommu_vmm::VmError;

use super::platform::Platform;
use super::{Machine, Mapping, Outcome};
use crate::scenario::{Ctx, DmaSpace, Op, ProcessSpec, PteOwner, PteValue, Scenario};

/// Creates a host process with its initial mappings.
pub(super) fn new_process<P: Platform>(host: &mut super::Host<P>, p: &ProcessSpec) -> Result<MmId, Errno> {
    let mm = host.create_process()?;
    for m in &p.maps {
        if let Err(e) = host.mmap(mm, Some(m.va), m.len, m.perm) {
            let _ = host.exit(mm);
            return Err(e);
        }
    }
    Ok(mm)
}

/// Creates a guest process (inside the guest kernel) with its mappings.
pub(super) fn new_guest_process<D, M, F>(g: &mut Kernel<D, M, F>, p: &ProcessSpec) -> Result<MmId, Errno>
where
    D: iommu_os::driver::IommuDriver,
    M: PhysMem,
    F: FrameAllocator,
{
    let mm = g.create_process()?;
    for m in &p.maps {
        if let Err(e) = g.mmap(mm, Some(m.va), m.len, m.perm) {
            let _ = g.exit(mm);
            return Err(e);
        }
    }
    Ok(mm)
}

fn errno(e: Errno) -> Outcome {
    Outcome::Errno(e, String::new())
}

pub(super) fn vm_err(e: VmError) -> Outcome {
    match e {
        VmError::Host(e) => Outcome::Errno(e, "host".into()),
        VmError::Guest(e) => Outcome::Errno(e, "guest".into()),
        VmError::NoDevice(_) => Outcome::Errno(Errno::NoDev, "device not assigned".into()),
        VmError::NoHostPasid(p) => Outcome::Errno(Errno::NoEnt, format!("guest PASID {p} has no host PASID")),
        VmError::Dma(d) => Outcome::Failed(format!("{d:?}")),
    }
}

fn gone(what: &str) -> Outcome {
    Outcome::Errno(Errno::NoEnt, format!("{what} does not exist (an earlier step failed or removed it)"))
}

/// A one-line description of an operation with the scenario's names.
pub(crate) fn summary(sc: &Scenario, op: &Op) -> String {
    let dev = |d: &usize| sc.devices.get(*d).map_or("?", |x| x.name.as_str());
    let bond = |b: &usize| sc.bonds.get(*b).map_or("?", |x| x.1.as_str());
    let dom = |d: &usize| sc.domains.get(*d).map_or("?", |x| x.as_str());
    let proc_ = |ctx: &Ctx, p: &usize| match ctx {
        Ctx::Host => sc.processes.get(*p).map_or("?".to_string(), |x| x.name.clone()),
        Ctx::Vm(v) => sc.vms.get(*v).and_then(|vm| vm.processes.get(*p)).map_or("?".to_string(), |x| x.name.clone()),
    };
    let at = |ctx: &Ctx| match ctx {
        Ctx::Host => String::new(),
        Ctx::Vm(_) => format!("[{}] ", super::ctx_name(sc, *ctx)),
    };
    let space = |s: &DmaSpace| match s {
        DmaSpace::Rid => "no PASID".to_string(),
        DmaSpace::Pasid(p) => format!("PASID {p}"),
        DmaSpace::Bond(b) => format!("bond {}", bond(b)),
    };
    let pasid = |p: &Option<u32>| p.map_or("RID".to_string(), |p| format!("PASID {p}"));
    match op {
        Op::Mmap { ctx, process, map } => {
            format!("{}mmap {} {:#x}+{:#x} {}", at(ctx), proc_(ctx, process), map.va, map.len, map.perm)
        }
        Op::Munmap { ctx, process, va, len } => format!("{}munmap {} {va:#x}+{len:#x}", at(ctx), proc_(ctx, process)),
        Op::CpuWrite { ctx, process, va, data } => {
            format!("{}cpu-write {} {va:#x} {}", at(ctx), proc_(ctx, process), super::show_bytes(data))
        }
        Op::CpuRead { ctx, process, va, len } => {
            format!("{}cpu-read {} {va:#x} {len} bytes", at(ctx), proc_(ctx, process))
        }
        Op::Exit { ctx, process } => format!("{}exit {}", at(ctx), proc_(ctx, process)),
        Op::Enqcmd { process } => format!("enqcmd {}", proc_(&Ctx::Host, process)),
        Op::Bind { ctx, device, process, bond: b } => {
            format!("{}bind {} to {} as {}", at(ctx), dev(device), proc_(ctx, process), bond(b))
        }
        Op::BindDevicePasid { ctx, device, process, pasid, bond: b } => {
            format!(
                "{}bind-device-pasid {} PASID {pasid} to {} as {}",
                at(ctx),
                dev(device),
                proc_(ctx, process),
                bond(b)
            )
        }
        Op::Unbind { ctx, bond: b } => format!("{}unbind {}", at(ctx), bond(b)),
        Op::Dma { ctx, device, space: s, addr, write, len } => match write {
            Some(d) => format!("{}dma-write {} {} {addr:#x} {}", at(ctx), dev(device), space(s), super::show_bytes(d)),
            None => format!("{}dma-read {} {} {addr:#x} {len} bytes", at(ctx), dev(device), space(s)),
        },
        Op::RandomDma { ctx, device, spaces, base, span, count, .. } => {
            format!("{}random-dma {} ×{count} over {base:#x}+{span:#x} ({} spaces)", at(ctx), dev(device), spaces.len())
        }
        Op::PasidAlloc { count } => format!("pasid-alloc {count} (held by other users)"),
        Op::DomainAlloc { domain, second_stage, levels, nest_parent } => format!(
            "domain-alloc {} {}-stage {levels}-level{}",
            dom(domain),
            if *second_stage { "second" } else { "first" },
            if *nest_parent { " nest-parent" } else { "" }
        ),
        Op::DomainFree { domain } => format!("domain-free {}", dom(domain)),
        Op::Map { domain, iova, len, perm } => format!("map {} {iova:#x}+{len:#x} {perm}", dom(domain)),
        Op::Unmap { domain, iova, len } => format!("unmap {} {iova:#x}+{len:#x}", dom(domain)),
        Op::Attach { domain, device, pasid: p } => format!("attach {} to {} {}", dom(domain), dev(device), pasid(p)),
        Op::Replace { domain, device, pasid: p } => {
            format!("replace {} {} with {}", dev(device), pasid(p), dom(domain))
        }
        Op::Detach { domain, device, pasid: p } => {
            format!(
                "detach {}{} {}",
                domain.map_or(String::new(), |d| format!("{} from ", dom(&d))),
                dev(device),
                pasid(p)
            )
        }
        Op::AuxAttach { domain, device, pasid } => {
            format!("aux-attach {} to {} as {}", dom(domain), dev(device), bond(pasid))
        }
        Op::AuxDetach { domain, device } => format!("aux-detach {} from {}", dom(domain), dev(device)),
        Op::IoasidSetAlloc { set, quota } => {
            format!("ioasid-set-alloc {} quota {quota}", sc.sets.get(*set).map_or("?", |s| s))
        }
        Op::IoasidAlloc { set, pasid } => format!(
            "ioasid-alloc {} from {}",
            sc.ioasids.get(*pasid).map_or("?", |s| s),
            sc.sets.get(*set).map_or("?", |s| s)
        ),
        Op::IoasidFree { set, pasid } => format!(
            "ioasid-free {} of {}",
            sc.ioasids.get(*pasid).map_or("?", |s| s),
            sc.sets.get(*set).map_or("?", |s| s)
        ),
        Op::GpasidBind { device, pasid, gpasid, gpgd, .. } => format!(
            "gpasid-bind {} host {} guest PASID {gpasid} gpgd {gpgd:#x}",
            dev(device),
            sc.ioasids.get(*pasid).map_or("?", |s| s)
        ),
        Op::GpasidUnbind { device, pasid } => {
            format!("gpasid-unbind {} host {}", dev(device), sc.ioasids.get(*pasid).map_or("?", |s| s))
        }
        Op::RemoveDevice { device } => format!("remove-device {}", dev(device)),
        Op::CorruptPte { owner, va, value } => {
            let who = match owner {
                PteOwner::Process(p) => proc_(&Ctx::Host, p),
                PteOwner::Domain(d) => dom(d).to_string(),
            };
            let what = match value {
                PteValue::Raw(v) => format!("{v:#x}"),
                PteValue::Redirect(p, a) => format!("the frame of {} {a:#x}", proc_(&Ctx::Host, p)),
            };
            format!("corrupt-pte {who} {va:#x} := {what} (no invalidation)")
        }
        Op::VmRevoke { vm, device, gpasid } => {
            format!("vm-revoke {} {} guest PASID {gpasid}", super::ctx_name(sc, Ctx::Vm(*vm)), dev(device))
        }
        Op::VmUnplug { vm, device } => format!("vm-unplug {} {}", super::ctx_name(sc, Ctx::Vm(*vm)), dev(device)),
        Op::VmDestroy { vm } => format!("vm-destroy {}", super::ctx_name(sc, Ctx::Vm(*vm))),
    }
}

impl<P: Platform> Machine<'_, P> {
    fn proc_mm(&self, ctx: Ctx, p: usize) -> Option<MmId> {
        match ctx {
            Ctx::Host => self.procs.get(p).copied().flatten(),
            Ctx::Vm(v) => self.vms.get(v)?.as_ref()?.procs.get(p).copied().flatten(),
        }
    }

    /// Runs `f` on the kernel of `ctx` (the guest kernel through its VM, so
    /// that the VMM sees the guest's invalidations afterwards).
    fn in_kernel<R>(
        &mut self,
        ctx: Ctx,
        host_f: impl FnOnce(&mut super::Host<P>) -> R,
        guest_f: impl FnOnce(&mut iommu_vmm::vm::GuestOs) -> R,
    ) -> Option<R> {
        match ctx {
            Ctx::Host => Some(host_f(&mut self.host)),
            Ctx::Vm(v) => {
                let s = self.vms.get_mut(v)?.as_mut()?;
                Some(s.vm.run_guest(&mut self.host, guest_f))
            }
        }
    }

    /// The kernel's device id for scenario device `d` in `ctx`.
    fn dev_id(&self, ctx: Ctx, d: usize) -> Option<iommu_os::pasid::DeviceId> {
        match ctx {
            Ctx::Host => self.devs.get(d).map(|x| x.kernel_id),
            Ctx::Vm(v) => {
                let s = self.vms.get(v)?.as_ref()?;
                let idx = *s.devs.get(&d)?;
                s.vm.devices().get(idx).map(|a| a.guest)
            }
        }
    }

    pub(super) fn exec(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Mmap { ctx, process, map } => {
                let Some(mm) = self.proc_mm(*ctx, *process) else { return gone("the process") };
                let m = *map;
                let r = self.in_kernel(
                    *ctx,
                    |h| h.mmap(mm, Some(m.va), m.len, m.perm),
                    |g| g.mmap(mm, Some(m.va), m.len, m.perm),
                );
                unit(r.map(|r| r.map(|_| ())))
            }
            Op::Munmap { ctx, process, va, len } => {
                let Some(mm) = self.proc_mm(*ctx, *process) else { return gone("the process") };
                unit(self.in_kernel(*ctx, |h| h.munmap(mm, *va, *len), |g| g.munmap(mm, *va, *len)))
            }
            Op::CpuWrite { ctx, process, va, data } => {
                let Some(mm) = self.proc_mm(*ctx, *process) else { return gone("the process") };
                unit(self.in_kernel(*ctx, |h| h.cpu_write(mm, *va, data), |g| g.cpu_write(mm, *va, data)))
            }
            Op::CpuRead { ctx, process, va, len } => {
                let Some(mm) = self.proc_mm(*ctx, *process) else { return gone("the process") };
                let mut buf = vec![0u8; *len];
                let r = match *ctx {
                    Ctx::Host => Some(self.host.cpu_read(mm, *va, &mut buf)),
                    Ctx::Vm(v) => self
                        .vms
                        .get_mut(v)
                        .and_then(|s| s.as_mut())
                        .map(|s| s.vm.run_guest(&mut self.host, |g| g.cpu_read(mm, *va, &mut buf))),
                };
                match r {
                    Some(Ok(())) => Outcome::Ok(String::new(), Some(buf)),
                    Some(Err(e)) => errno(e),
                    None => gone("the VM"),
                }
            }
            Op::Exit { ctx, process } => {
                let Some(mm) = self.proc_mm(*ctx, *process) else { return gone("the process") };
                unit(self.in_kernel(*ctx, |h| h.exit(mm), |g| g.exit(mm)))
            }
            Op::Enqcmd { process } => {
                let Some(mm) = self.procs[*process] else { return gone("the process") };
                match self.host.enqcmd(mm, 0) {
                    Ok(p) => Outcome::Ok(format!("PASID {}", p.raw()), None),
                    Err(e) => errno(e),
                }
            }
            Op::Bind { ctx, device, process, bond } => self.bind(*ctx, *device, *process, None, *bond),
            Op::BindDevicePasid { ctx, device, process, pasid, bond } => {
                self.bind(*ctx, *device, *process, Some(*pasid), *bond)
            }
            Op::Unbind { ctx, bond } => {
                let Some(b) = self.bonds.get(*bond).copied().flatten() else { return gone("the bond") };
                let r = self.in_kernel(*ctx, |h| h.sva_unbind(&b), |g| g.sva_unbind(&b));
                if r.is_none() {
                    return gone("the VM");
                }
                self.bonds[*bond] = None;
                Outcome::ok()
            }
            Op::Dma { ctx, device, space, addr, write, len } => {
                self.dma_op(*ctx, *device, *space, *addr, write.as_deref(), *len)
            }
            Op::RandomDma { ctx, device, spaces, base, span, count, seed, write_percent } => {
                self.random_dma(*ctx, *device, spaces, *base, *span, *count, *seed, *write_percent)
            }
            Op::PasidAlloc { count } => {
                let mut got = Vec::new();
                for _ in 0..*count {
                    match self.host.global_pasids_mut().alloc(1 << 20) {
                        Ok(p) => {
                            got.push(p.raw());
                            self.held.push(p);
                        }
                        Err(e) => return errno(e.into()),
                    }
                }
                Outcome::Ok(format!("PASIDs {got:?}"), None)
            }
            Op::DomainAlloc { domain, second_stage, levels, nest_parent } => {
                let format = self.host.iommu_mut().driver().table_format(*second_stage, *levels);
                match self.host.iommu_mut().alloc_paging(format, *nest_parent) {
                    Ok(d) => {
                        self.domains[*domain] = Some(d);
                        self.domain_pages[*domain].clear();
                        Outcome::ok()
                    }
                    Err(e) => errno(e),
                }
            }
            Op::DomainFree { domain } => {
                let Some(d) = self.domains[*domain] else { return gone("the domain") };
                match self.host.iommu_mut().free_domain(d) {
                    Ok(()) => {
                        self.domains[*domain] = None;
                        self.domain_pages[*domain].clear();
                        let mine: Vec<Mapping> =
                            self.mappings.iter().filter(|m| m.domain == *domain).copied().collect();
                        self.mappings.retain(|m| m.domain != *domain);
                        for m in mine {
                            let _ = self.host.memfd_close(m.memfd);
                        }
                        Outcome::ok()
                    }
                    Err(e) => errno(e),
                }
            }
            Op::Map { domain, iova, len, perm } => self.map(*domain, *iova, *len, *perm),
            Op::Unmap { domain, iova, len } => self.unmap(*domain, *iova, *len),
            Op::Attach { domain, device, pasid } | Op::Replace { domain, device, pasid } => {
                let Some(d) = self.domains[*domain] else { return gone("the domain") };
                let dev = self.devs[*device].kernel_id;
                let replace = matches!(op, Op::Replace { .. });
                let iommu = self.host.iommu_mut();
                let r = match (pasid, replace) {
                    (None, false) => return unit(Some(self.host.attach_normal(d, dev))),
                    (None, true) => iommu.replace_rid(d, dev),
                    (Some(p), false) => iommu.attach_dev_pasid(d, dev, Pasid::new(*p), None),
                    (Some(p), true) => iommu.replace_dev_pasid(d, dev, Pasid::new(*p), HandleKind::User(0)),
                };
                unit(Some(r))
            }
            Op::Detach { domain, device, pasid } => {
                let dev = self.devs[*device].kernel_id;
                match (pasid, domain) {
                    (Some(p), Some(d)) => {
                        let Some(d) = self.domains[*d] else { return gone("the domain") };
                        if self.host.iommu().pasid_domain(dev, Pasid::new(*p)) != Some(d) {
                            return Outcome::Errno(Errno::NoEnt, "not attached there".into());
                        }
                        self.host.iommu_mut().detach_dev_pasid(d, dev, Pasid::new(*p));
                        Outcome::ok()
                    }
                    (None, Some(d)) => {
                        let Some(d) = self.domains[*d] else { return gone("the domain") };
                        if self.host.iommu().rid_domain(dev) != Ok(d) {
                            return Outcome::Errno(Errno::NoEnt, "not attached at the RID".into());
                        }
                        unit(Some(self.host.iommu_mut().detach_rid(dev)))
                    }
                    _ => unit(Some(self.host.iommu_mut().detach_rid(dev))),
                }
            }
            Op::AuxAttach { domain, device, pasid } => {
                let Some(d) = self.domains[*domain] else { return gone("the domain") };
                match self.host.aux_attach(d, self.devs[*device].kernel_id) {
                    Ok(p) => {
                        self.aux[*pasid] = Some(super::AuxName { pasid: p, domain: *domain, device: *device });
                        Outcome::Ok(format!("PASID {}", p.raw()), None)
                    }
                    Err(e) => errno(e),
                }
            }
            Op::AuxDetach { domain, device } => {
                let Some(d) = self.domains[*domain] else { return gone("the domain") };
                let dev = self.devs[*device].kernel_id;
                let r = self.host.aux_detach(d, dev);
                if r.is_ok() {
                    // The device's names no longer stand for a PASID.
                    for a in
                        self.aux.iter_mut().filter(|a| a.is_some_and(|a| (a.domain, a.device) == (*domain, *device)))
                    {
                        *a = None;
                    }
                }
                unit(Some(r))
            }
            Op::IoasidSetAlloc { set, quota } => match self.host.ioasid_set_alloc(*quota) {
                Ok(s) => {
                    self.sets[*set] = Some(s);
                    Outcome::ok()
                }
                Err(e) => errno(e),
            },
            Op::IoasidAlloc { set, pasid } => {
                let Some(s) = self.sets[*set] else { return gone("the IOASID set") };
                match self.host.ioasid_alloc(s) {
                    Ok(p) => {
                        self.ioasids[*pasid] = Some(p);
                        Outcome::Ok(format!("PASID {}", p.raw()), None)
                    }
                    Err(e) => errno(e),
                }
            }
            Op::IoasidFree { set, pasid } => {
                let (Some(s), Some(p)) = (self.sets[*set], self.ioasids[*pasid]) else { return gone("the IOASID") };
                let r = self.host.ioasid_free(s, p);
                if r.is_ok() {
                    self.ioasids[*pasid] = None;
                }
                unit(Some(r))
            }
            Op::GpasidBind { device, set, pasid, gpasid, gpgd } => {
                let (Some(s), Some(p)) = (self.sets[*set], self.ioasids[*pasid]) else { return gone("the IOASID") };
                let data = GpasidBindData {
                    argsz: GPASID_BIND_ARGSZ,
                    format: FORMAT_INTEL_VTD,
                    flags: iommu_os::kernel::gpasid_flags::GPASID_VAL,
                    hpasid: u64::from(p.raw()),
                    gpasid: u64::from(*gpasid),
                    gpgd: Gpa::new(*gpgd),
                    addr_width: 48,
                };
                unit(Some(self.host.bind_gpasid(self.devs[*device].kernel_id, s, &data)))
            }
            Op::GpasidUnbind { device, pasid } => {
                let Some(p) = self.ioasids[*pasid] else { return gone("the IOASID") };
                unit(Some(self.host.unbind_gpasid(self.devs[*device].kernel_id, p)))
            }
            Op::RemoveDevice { device } => {
                let r = self.host.remove_device(self.devs[*device].kernel_id);
                if r.is_ok() {
                    self.devs[*device].removed = true;
                }
                unit(Some(r))
            }
            Op::CorruptPte { owner, va, value } => self.corrupt_pte(*owner, *va, *value),
            Op::VmRevoke { vm, device, gpasid } => {
                let Some(s) = self.vms.get_mut(*vm).and_then(|s| s.as_mut()) else { return gone("the VM") };
                let Some(idx) = s.devs.get(device).copied() else { return gone("the device") };
                match s.vm.revoke_pasid(&mut self.host, idx, Pasid::new(*gpasid)) {
                    Ok(()) => Outcome::ok(),
                    Err(e) => vm_err(e),
                }
            }
            Op::VmUnplug { vm, device } => {
                let Some(s) = self.vms.get_mut(*vm).and_then(|s| s.as_mut()) else { return gone("the VM") };
                let Some(idx) = s.devs.get(device).copied() else { return gone("the device") };
                match s.vm.unplug(&mut self.host, idx) {
                    Ok(()) => Outcome::ok(),
                    Err(e) => vm_err(e),
                }
            }
            Op::VmDestroy { vm } => {
                let Some(s) = self.vms.get_mut(*vm).and_then(|s| s.take()) else { return gone("the VM") };
                s.vm.destroy(&mut self.host);
                Outcome::ok()
            }
        }
    }

    fn bind(&mut self, ctx: Ctx, device: usize, process: usize, pasid: Option<u32>, bond: usize) -> Outcome {
        let Some(mm) = self.proc_mm(ctx, process) else { return gone("the process") };
        let Some(dev) = self.dev_id(ctx, device) else { return gone("the device") };
        let r = self.in_kernel(
            ctx,
            |h| match pasid {
                Some(p) => h.sva_bind_device_pasid(dev, mm, Pasid::new(p)),
                None => h.sva_bind(dev, mm),
            },
            |g| match pasid {
                Some(p) => g.sva_bind_device_pasid(dev, mm, Pasid::new(p)),
                None => g.sva_bind(dev, mm),
            },
        );
        match r {
            Some(Ok(b)) => {
                self.bonds[bond] = Some(b);
                Outcome::Ok(format!("PASID {}", b.pasid.raw()), None)
            }
            Some(Err(e)) => errno(e),
            None => gone("the VM"),
        }
    }

    fn map(&mut self, domain: usize, iova: u64, len: u64, perm: iommu_types::Perm) -> Outcome {
        let Some(d) = self.domains[domain] else { return gone("the domain") };
        if iova % 4096 != 0 {
            return Outcome::Errno(Errno::Inval, "iova not page aligned".into());
        }
        let pages = len.div_ceil(4096);
        let memfd = match self.host.memfd_create(pages) {
            Ok(m) => m,
            Err(e) => return Outcome::Errno(e, "backing memory".into()),
        };
        let Ok((base, _)) = self.host.memfd_range(memfd) else { return Outcome::Failed("memory file vanished".into()) };
        let r = self
            .host
            .iommu_mut()
            .map(d, Iova::new(iova), base, pages * 4096, perm)
            .and_then(|f| self.host.iommu_mut().flush(f));
        match r {
            Ok(()) => {
                for i in 0..pages {
                    self.domain_pages[domain].insert(iova + i * 4096, Hpa::new(base.raw() + i * 4096));
                }
                self.mappings.push(Mapping { domain, iova, len: pages * 4096, memfd });
                Outcome::Ok(format!("backed at {:#x}", base.raw()), None)
            }
            Err(e) => {
                let _ = self.host.memfd_close(memfd);
                errno(e)
            }
        }
    }

    fn unmap(&mut self, domain: usize, iova: u64, len: u64) -> Outcome {
        let Some(d) = self.domains[domain] else { return gone("the domain") };
        let r = self.host.iommu_mut().unmap(d, Iova::new(iova), len).and_then(|f| self.host.iommu_mut().flush(f));
        if let Err(e) = r {
            return errno(e);
        }
        let end = iova.saturating_add(len);
        let pages = &mut self.domain_pages[domain];
        let gone_pages: Vec<u64> = pages.range(iova..end).map(|(k, _)| *k).collect();
        for p in gone_pages {
            pages.remove(&p);
        }
        // A memory file whose whole mapping is gone is closed.
        let (closed, kept): (Vec<Mapping>, Vec<Mapping>) =
            self.mappings.iter().partition(|m| m.domain == domain && m.iova >= iova && m.iova + m.len <= end);
        self.mappings = kept;
        for m in closed {
            let _ = self.host.memfd_close(m.memfd);
        }
        Outcome::ok()
    }

    fn corrupt_pte(&mut self, owner: PteOwner, va: u64, value: PteValue) -> Outcome {
        let mem: &dyn PhysMem = &*self.mem;
        let slot = match owner {
            PteOwner::Process(p) => {
                let Some(mm) = self.procs[p] else { return gone("the process") };
                self.host.mm(mm).ok().and_then(|m| m.leaf_entry(mem, va))
            }
            PteOwner::Domain(d) => {
                let Some(d) = self.domains[d] else { return gone("the domain") };
                match self.host.iommu().domain_kind(d) {
                    Ok(DomainKind::Paging { table, .. }) => table.leaf_entry(mem, Iova::new(va)),
                    _ => None,
                }
            }
        };
        let Some(slot) = slot else { return Outcome::Errno(Errno::NoEnt, "no leaf entry maps that address".into()) };
        let Ok(old) = self.mem.read_u64(slot) else { return Outcome::Failed("entry unreadable".into()) };
        let new = match value {
            PteValue::Raw(v) => v,
            PteValue::Redirect(p, a) => {
                let Some(mm) = self.procs[p] else { return gone("the redirect process") };
                let Some(frame) = self.host.mm(mm).ok().and_then(|m| m.resident_frame(a)) else {
                    return Outcome::Errno(Errno::NoEnt, "the redirect page is not resident".into());
                };
                (old & (0xFFF | 1 << 63)) | frame.raw()
            }
        };
        match self.mem.write_u64(slot, new) {
            Ok(()) => {
                self.trace(
                    "fault injection",
                    format!("PTE at {:#x}: {old:#x} → {new:#x}, no invalidation", slot.raw()),
                );
                Outcome::Ok(format!("PTE at {:#x}", slot.raw()), None)
            }
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

fn unit(r: Option<Result<(), Errno>>) -> Outcome {
    match r {
        Some(Ok(())) => Outcome::ok(),
        Some(Err(e)) => errno(e),
        None => gone("the VM"),
    }
}

/// What the engine releases at the end, as a shutdown would: bonds
/// unbound, processes exited, VMs destroyed, PASIDs held for "other
/// users" returned. Domains, IOASID sets and mappings the scenario made
/// are its own to free: a scenario that forgets them fails the leak check.
pub(super) fn teardown<P: Platform>(m: &mut Machine<'_, P>) {
    for v in 0..m.vms.len() {
        if let Some(s) = m.vms[v].take() {
            s.vm.destroy(&mut m.host);
        }
    }
    for (i, b) in m.bonds.iter_mut().enumerate() {
        if let (Some(bond), Some((Ctx::Host, _))) = (b.take(), m.sc.bonds.get(i)) {
            m.host.sva_unbind(&bond);
        }
    }
    for p in m.procs.iter_mut() {
        if let Some(mm) = p.take() {
            let _ = m.host.exit(mm);
        }
    }
    for p in std::mem::take(&mut m.held) {
        let _ = m.host.global_pasids_mut().free(p);
    }
}
