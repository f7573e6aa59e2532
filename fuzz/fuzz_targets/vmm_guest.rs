//! The VMM (`iommu-vmm`) under a malicious guest: the guest owns its memory
//! (root, context and PASID tables, page tables, invalidation queue) and the
//! vIOMMU's registers. A host with one device, a VM with the device
//! assigned and up to three guest processes bound to it through SVA; then
//! arbitrary guest actions, each followed by the VMM handling the guest's
//! invalidations.
//!
//! Input format:
//! ```text
//! byte 0   bit 0: translated PASIDs (else identity); bits 2:1: guest
//!          processes bound before the run (0-3); bits 5:3: the VM's
//!          attachment bound - 1 (1-8)
//! then     operations until the input ends (at most 128), each a kind byte
//!          followed by its arguments (little-endian):
//!   kind % 10 = 0  guest memory write  gpa:u32 value:u64 (8-byte aligned;
//!                  gpa modulo guest RAM + 4 KiB; kind bit 7: 1 MiB + gpa
//!                  modulo 256 KiB, where the guest kernel's tables are)
//!               1  PASID entry         pasid:u32 q0:u64 q2:u64 (then a
//!                  PASID-cache invalidation of it unless kind bit 7)
//!               2  PASID directory entry  index:u16 value:u64
//!               3  context entry qword    q:u8 value:u64
//!               4  invalidation queue  n:u8 then (n % 4 + 1) × 4 u64 descriptors
//!                  written at the tail, then IQT moved past them (kind bit 7:
//!                  clear FSTS and write at IQH first, as a guest recovering)
//!               5  PASID-cache invalidation  g:u8 pasid:u32 (g % 3: PASID,
//!                  domain, global; g bit 7: context-cache global instead)
//!               6  vIOMMU register write  reg:u8 value:u64 (kind bit 7: 64-bit)
//!               7  device DMA  flags:u8 pasid:u32 addr:u64 data:u64 (flags
//!                  bit 0: write, bit 1: with PASID, bit 2: addr is VA + addr % 1 GiB)
//!               8  first-stage tables at 1.75 MiB mapping VA  pasid:u32 leaf:u64
//!                  level:u8 (leaf of 4 KiB, 2 MiB or 1 GiB) and the PASID
//!                  entry pointing at them, invalidated
//!               9  the VMM's fault loop (`Vm::pump`)
//! ```
//! pasid values are taken modulo 2^20.
//!
//! Properties: nothing panics; the VM never holds more host attachments than
//! its bound; no DMA reads or writes host memory outside the VM's RAM
//! (sentinel pages); after `Vm::destroy` the host holds nothing of the VM.
#![no_main]

use std::sync::Arc;

use iommu_format::vtd::inv_desc::{ContextCacheScope, InvDescriptor, PasidCacheScope};
use iommu_format::vtd::regs::{fsts, offset as o, Iqa};
use iommu_fuzz::Input;
use iommu_hw::vtd::{VtdConfig, VtdUnit};
use iommu_os::driver::vtd::VtdDriver;
use iommu_os::driver::DeviceInfo;
use iommu_os::frames::RangeFrames;
use iommu_os::iommu::{GroupId, Iommu};
use iommu_os::kernel::Kernel;
use iommu_os::pasid::{DeviceId, LocalPolicy};
use iommu_types::{DomainId, Hpa, NullInterrupts, PagedMemory, Pasid, Perm, PhysMem, RegisterBus, SourceId, Width};
use iommu_vmm::check::HostSnapshot;
use iommu_vmm::{PasidMode, Vm, VmConfig};
use libfuzzer_sys::fuzz_target;

const MEM: u64 = 64 << 20;
const VA: u64 = 0x4000_0000;
/// Guest RAM in pages: 2 MiB (the host zeroes it on every run); the guest
/// kernel's frames come from its second MiB.
const RAM_PAGES: u64 = 512;
/// Where operation 8 builds first-stage tables (guest RAM above the guest
/// kernel's few frames).
const TABLES: u64 = 0x1C_0000;
const SENTINEL: u64 = u64::from_le_bytes(*b"SENTINEL");
/// Host pages outside the host's frames [16 MiB, 48 MiB), the VM's RAM
/// among them.
const SENTINEL_PAGES: [u64; 4] = [0, 0x80_0000, 0x300_0000, MEM - 0x1000];
const REGS: [u64; 14] = [
    o::GCMD,
    o::RTADDR,
    o::CCMD,
    o::FSTS,
    o::IQH,
    o::IQT,
    o::IQA,
    o::ICS,
    o::IECTL,
    o::PQH,
    o::PQT,
    o::PQA,
    o::PRS,
    o::FECTL,
];

fn reg(vm: &Vm, off: u64) -> u64 {
    RegisterBus::read(vm.viommu(), off, Width::W64).unwrap_or(0)
}

/// Guest-physical address of the assigned device's context entry.
fn context_entry(vm: &Vm, sid: SourceId) -> Option<u64> {
    let rta = reg(vm, o::RTADDR) & !0xFFF;
    let devfn = (sid.raw() & 0xFF) as u64;
    let root = rta.wrapping_add(16 * sid.bus() as u64 + if devfn < 128 { 0 } else { 8 });
    let r = vm.ram().read_u64(Hpa::new(root)).ok()?;
    (r & 1 != 0).then(|| (r & !0xFFF).wrapping_add(32 * (devfn % 128)))
}

fn pasid_dir(vm: &Vm, sid: SourceId) -> Option<u64> {
    Some(vm.ram().read_u64(Hpa::new(context_entry(vm, sid)?)).ok()? & !0xFFF)
}

/// Guest-physical address of the PASID entry of `p`, when its directory
/// entry is present.
fn pasid_entry(vm: &Vm, sid: SourceId, p: u32) -> Option<u64> {
    let de = pasid_dir(vm, sid)?.wrapping_add(8 * (p as u64 >> 6));
    let d = vm.ram().read_u64(Hpa::new(de)).ok()?;
    (d & 1 != 0).then(|| (d & !0xFFF).wrapping_add(64 * (p as u64 & 63)))
}

fn write_entry(vm: &Vm, sid: SourceId, p: u32, q0: u64, q2: u64) {
    if let Some(e) = pasid_entry(vm, sid, p) {
        for (i, w) in [q0, 0, q2, 0, 0, 0, 0, 0].iter().enumerate() {
            let _ = vm.ram().write_u64(Hpa::new(e + 8 * i as u64), *w);
        }
    }
}

/// Writes descriptors at the queue tail (or at the head after clearing the
/// error bits) and moves IQT past them.
fn submit(vm: &Vm, recover: bool, descs: &[[u64; 4]]) {
    let u = vm.viommu();
    if recover {
        let _ = RegisterBus::write(u, o::FSTS, Width::W32, (fsts::IQE | fsts::ITE | fsts::ICE) as u64);
    }
    let iqa = Iqa::from_words([reg(vm, o::IQA)]);
    let base = iqa.0[0] & !0xFFF;
    let size = 4096u64 << iqa.get(Iqa::QS);
    let dsz = if iqa.get(Iqa::DW) != 0 { 32 } else { 16 };
    let mut tail = (reg(vm, if recover { o::IQH } else { o::IQT }) % size) & !(dsz - 1);
    for d in descs {
        for (i, w) in d.iter().take(dsz as usize / 8).enumerate() {
            let _ = vm.ram().write_u64(Hpa::new(base.wrapping_add(tail + 8 * i as u64)), *w);
        }
        tail = (tail + dsz) % size;
    }
    let _ = RegisterBus::write(u, o::IQT, Width::W64, tail);
}

fn pasid_cache(vm: &Vm, scope: PasidCacheScope) {
    submit(vm, true, &[InvDescriptor::PasidCache { did: DomainId::new(0), scope }.encode().words()]);
}

fn pasid(v: u32) -> u32 {
    v & 0xF_FFFF
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let cfg_byte = input.u8();

    let mem = Arc::new(PagedMemory::new(MEM));
    let unit = Arc::new(VtdUnit::new(VtdConfig::full_featured(), mem.clone(), NullInterrupts));
    let mut frames = RangeFrames::new(Hpa::new(0x100_0000), Hpa::new(0x300_0000));
    let driver = VtdDriver::probe(unit.clone(), &*mem, &mut frames).expect("probe");
    let mut host = Kernel::new(Iommu::new(0, driver, mem.clone(), frames), LocalPolicy::V2);
    let info = DeviceInfo {
        id: DeviceId(1),
        sid: SourceId::from_bdf(0, 1, 0),
        max_pasids: 1 << 20,
        ats: true,
        pri: true,
        pci: true,
    };
    host.add_device(info, GroupId(1)).expect("add_device");
    let page: Vec<u8> = std::iter::repeat_n(SENTINEL.to_le_bytes(), 512).flatten().collect();
    for p in SENTINEL_PAGES {
        mem.write(Hpa::new(p), &page).expect("sentinel");
    }
    let before = HostSnapshot::take(&host);

    let cfg = VmConfig {
        pasid_mode: if cfg_byte & 1 != 0 { PasidMode::Translated } else { PasidMode::Identity },
        max_pasids: 1 + ((cfg_byte as u32 >> 3) & 7),
        ram_pages: RAM_PAGES,
        ..VmConfig::default()
    };
    let mut vm = Vm::create(&mut host, mem.clone(), cfg).expect("VM");
    let vsid = SourceId::from_bdf(0, 3, 0);
    let dev = vm.assign_device(&mut host, info.id, vsid).expect("assign");
    let gdev = vm.devices()[dev].guest;
    let rw = Perm { read: true, write: true, exec: false };
    for _ in 0..((cfg_byte >> 1) & 3) {
        let _ = vm.run_guest(&mut host, |g| {
            let mm = g.create_process()?;
            g.mmap(mm, Some(VA), 0x1000, rw)?;
            g.cpu_write(mm, VA, b"guest data")?;
            g.sva_bind(gdev, mm).map(|_| ())
        });
    }
    let then = before.attached.iter().find(|(d, _)| *d == info.id).map_or(Vec::new(), |(_, p)| p.clone());

    for _ in 0..128 {
        if input.is_empty() {
            break;
        }
        let kind = input.u8();
        match kind % 10 {
            0 => {
                let gpa = input.u32() as u64;
                let gpa = if kind & 0x80 != 0 { (1 << 20) + gpa % (256 << 10) } else { gpa % ((RAM_PAGES + 1) << 12) };
                let _ = vm.ram().write_u64(Hpa::new(gpa & !7), input.u64());
            }
            1 => {
                let p = pasid(input.u32());
                let (q0, q2) = (input.u64(), input.u64());
                write_entry(&vm, vsid, p, q0, q2);
                if kind & 0x80 == 0 {
                    pasid_cache(&vm, PasidCacheScope::Pasid(Pasid::new_truncate(p as u64)));
                }
            }
            2 => {
                let i = input.u16() as u64;
                let v = input.u64();
                if let Some(dir) = pasid_dir(&vm, vsid) {
                    let _ = vm.ram().write_u64(Hpa::new(dir.wrapping_add(8 * i)), v);
                }
            }
            3 => {
                let q = (input.u8() % 4) as u64;
                let v = input.u64();
                if let Some(ce) = context_entry(&vm, vsid) {
                    let _ = vm.ram().write_u64(Hpa::new(ce + 8 * q), v);
                }
            }
            4 => {
                let n = input.u8() % 4 + 1;
                let descs: Vec<[u64; 4]> =
                    (0..n).map(|_| [input.u64(), input.u64(), input.u64(), input.u64()]).collect();
                submit(&vm, kind & 0x80 != 0, &descs);
            }
            5 => {
                let g = input.u8();
                let p = Pasid::new_truncate(pasid(input.u32()) as u64);
                if g & 0x80 != 0 {
                    let d = InvDescriptor::ContextCache(ContextCacheScope::Global);
                    submit(&vm, true, &[d.encode().words()]);
                } else {
                    let scope = [PasidCacheScope::Pasid(p), PasidCacheScope::Domain, PasidCacheScope::Global];
                    pasid_cache(&vm, scope[(g % 3) as usize]);
                }
            }
            6 => {
                let off = REGS[input.u8() as usize % REGS.len()];
                let v = input.u64();
                let (w, v) = if kind & 0x80 != 0 { (Width::W64, v) } else { (Width::W32, v & 0xFFFF_FFFF) };
                let _ = RegisterBus::write(vm.viommu(), off, w, v);
            }
            7 => {
                let flags = input.u8();
                let p = (flags & 2 != 0).then(|| Pasid::new_truncate(pasid(input.u32()) as u64));
                let raw = input.u64();
                let addr = if flags & 4 != 0 { VA + raw % (1 << 30) } else { raw } & !7;
                let v = input.u64();
                if flags & 1 != 0 {
                    let _ = vm.dma_write(&mut host, &unit, dev, p, addr, &v.to_le_bytes());
                } else if let Ok(got) = vm.dma_read(&mut host, &unit, dev, p, addr, 8) {
                    let got = u64::from_le_bytes(got.try_into().expect("8 bytes"));
                    assert_ne!(got, SENTINEL, "DMA read of {addr:#x} ({p:?}) returned host memory");
                }
            }
            8 => {
                let p = pasid(input.u32());
                let leaf = input.u64();
                let level = (input.u8() % 3) as u64;
                let size = 1u64 << (12 + 9 * level);
                let mut at = TABLES;
                for l in (1..=4u64).rev() {
                    let slot = Hpa::new(at + 8 * ((VA >> (12 + 9 * (l - 1))) & 511));
                    if 1u64 << (12 + 9 * (l - 1)) == size {
                        // P, R/W, U/S, A, D; PS above 4 KiB.
                        let flags = if level != 0 { 0xE7 } else { 0x67 };
                        let _ = vm.ram().write_u64(slot, leaf & !(size - 1) & ((1 << 52) - 1) | flags);
                        break;
                    }
                    let _ = vm.ram().write_u64(slot, (at + 0x1000) | 0x27);
                    at += 0x1000;
                }
                write_entry(&vm, vsid, p, 1 | 1 << 6, TABLES);
                pasid_cache(&vm, PasidCacheScope::Pasid(Pasid::new_truncate(p as u64)));
            }
            _ => vm.pump(&mut host),
        }
        vm.handle_invalidations(&mut host);
        let max = vm.config().max_pasids as usize;
        assert!(vm.bindings().len() <= max, "{} bindings over a bound of {max}", vm.bindings().len());
        let n = host.iommu().attached_pasids(info.id).iter().filter(|p| !then.contains(p)).count();
        assert!(n <= max, "{n} host attachments over a bound of {max}");
    }
    for p in SENTINEL_PAGES {
        for q in 0..512 {
            let v = mem.read_u64(Hpa::new(p + 8 * q)).expect("sentinel read");
            assert_eq!(v, SENTINEL, "host memory at {:#x} changed", p + 8 * q);
        }
    }
    vm.destroy(&mut host);
    let leaks = HostSnapshot::take(&host).leaks_since(&before);
    assert!(leaks.is_empty(), "the VM left {leaks:?}");
});
