//! Invariants of the host around a VM's life: after the VM is gone the
//! host holds nothing of it (no attachment, PASID, fault group, table page,
//! domain, memory file or iommufd context), compared against a snapshot
//! taken before the VM was created.

use iommu_os::driver::IommuDriver;
use iommu_os::frames::FrameAllocator;
use iommu_os::kernel::Kernel;
use iommu_os::pasid::DeviceId;
use iommu_types::{Pasid, PhysMem};

/// What the host holds, in counts and per-device lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSnapshot {
    /// Frames allocated (tables, queues, memory files, processes).
    pub frames: usize,
    /// Domains.
    pub domains: usize,
    /// Memory files alive.
    pub memfds: usize,
    /// iommufd contexts open.
    pub contexts: usize,
    /// Global PASIDs allocated.
    pub pasids: u32,
    /// Attached PASIDs per device.
    pub attached: Vec<(DeviceId, Vec<Pasid>)>,
    /// Pending page-request groups per device.
    pub fault_groups: Vec<(DeviceId, usize)>,
}

impl HostSnapshot {
    /// Takes a snapshot.
    pub fn take<D: IommuDriver, M: PhysMem, F: FrameAllocator>(host: &Kernel<D, M, F>) -> Self {
        let devs: Vec<DeviceId> = host.iommu().devices().map(|i| i.id).collect();
        Self {
            frames: host.iommu().frames().in_use(),
            domains: host.iommu().domain_count(),
            memfds: host.memfd_count(),
            contexts: host.iommufd_contexts(),
            pasids: host.global_pasids().in_use(),
            attached: devs.iter().map(|d| (*d, host.iommu().attached_pasids(*d))).collect(),
            fault_groups: devs.iter().map(|d| (*d, host.iopf().pending(*d).count())).collect(),
        }
    }

    /// What `self` holds that `before` did not, one line each (empty: clean).
    pub fn leaks_since(&self, before: &HostSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        let mut more = |what: &str, now: u64, then: u64| {
            if now > then {
                out.push(format!("{what}: {then} before, {now} after"));
            }
        };
        more("frames", self.frames as u64, before.frames as u64);
        more("domains", self.domains as u64, before.domains as u64);
        more("memory files", self.memfds as u64, before.memfds as u64);
        more("iommufd contexts", self.contexts as u64, before.contexts as u64);
        more("global PASIDs", self.pasids as u64, before.pasids as u64);
        for (dev, now) in &self.attached {
            let then = before.attached.iter().find(|(d, _)| d == dev).map_or(&[][..], |(_, p)| p);
            let extra: Vec<u32> = now.iter().filter(|p| !then.contains(p)).map(|p| p.raw()).collect();
            if !extra.is_empty() {
                out.push(format!("device {}: PASIDs {extra:?} still attached", dev.0));
            }
        }
        for (dev, now) in &self.fault_groups {
            let then = before.fault_groups.iter().find(|(d, _)| d == dev).map_or(0, |(_, n)| *n);
            if *now > then {
                out.push(format!("device {}: {} fault groups pending", dev.0, now - then));
            }
        }
        out
    }
}
