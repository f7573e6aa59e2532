//! A malicious guest against the VMM: the guest owns its memory (root,
//! context and PASID tables, page tables, invalidation queue) and the
//! vIOMMU's registers. Whatever it writes, the VMM must not panic, must keep
//! the host state it creates for the VM bounded (at most `max_pasids`
//! attachments), no device DMA may reach host memory outside the VM's RAM,
//! and destroying the VM must leave the host as it was.

mod common;

use common::*;
use iommu_format::vtd::inv_desc::{
    ContextCacheScope, InvDescriptor, IotlbScope, PasidCacheScope, PasidIotlbScope, ResponseCode,
};
use iommu_format::vtd::regs::{fsts, offset, Iqa};
use iommu_os::iommu::MmId;
use iommu_os::pasid::DeviceId;
use iommu_os::Errno;
use iommu_types::{DomainId, Gpa, Hpa, Iova, Pasid, Perm, PhysMem, RegisterBus, SourceId, Width};
use iommu_vmm::check::HostSnapshot;
use iommu_vmm::{PasidMode, Vm, VmConfig, VmError, VmmEvent};
use proptest::prelude::*;

const RW: Perm = Perm { read: true, write: true, exec: false };
const VA: u64 = 0x4000_0000;
const VSID: u8 = 3;
/// Where [`Act::Tables`] builds its first-stage tables: guest RAM the guest
/// kernel's frame allocator has not reached in these runs.
const TABLES: u64 = 0xC0_0000;
/// The VM's attachment bound in the random runs: small, so it is reached.
const MAX_PASIDS: u32 = 4;
/// What the sentinel pages hold, every aligned qword.
const SENTINEL: u64 = u64::from_le_bytes(*b"SENTINEL");
/// Host pages that are neither the VM's RAM nor host frames (the host's
/// frame allocator hands out [16 MiB, 128 MiB); the VM's RAM comes from it).
const SENTINEL_PAGES: [u64; 5] = [0x0, 0x80_0000, 0x800_0000, 0xC80_0000, (256 << 20) - 0x1000];

// ---- the world -------------------------------------------------------------

struct World {
    mem: Mem,
    unit: std::sync::Arc<Unit>,
    host: Host,
    vm: Vm,
    hd: DeviceId,
    before: HostSnapshot,
    procs: Vec<MmId>,
    pasids: Vec<Pasid>,
}

/// Host, one assigned device, a VM with `cfg`, and `binds` guest processes
/// bound to the device (each with a page at VA holding "process-N").
fn world(cfg: VmConfig, binds: usize) -> World {
    let (mem, unit, mut host) = host();
    let hd = add_device(&mut host, 1, 1 << 20);
    for p in SENTINEL_PAGES {
        let page: Vec<u8> = std::iter::repeat_n(SENTINEL.to_le_bytes(), 512).flatten().collect();
        mem.write(Hpa::new(p), &page).unwrap();
    }
    let before = HostSnapshot::take(&host);
    let mut vm = Vm::create(&mut host, mem.clone(), cfg).unwrap();
    let dev = vm.assign_device(&mut host, hd, vsid(VSID)).unwrap();
    let gdev = vm.devices()[dev].guest;
    let mut procs = Vec::new();
    let mut pasids = Vec::new();
    for i in 0..binds {
        let tag = format!("process-{i}");
        let (mm, bond) = vm
            .run_guest(&mut host, |g| {
                let mm = g.create_process()?;
                g.mmap(mm, Some(VA), 0x1000, RW)?;
                g.cpu_write(mm, VA, tag.as_bytes())?;
                Ok::<_, Errno>((mm, g.sva_bind(gdev, mm)?))
            })
            .unwrap();
        procs.push(mm);
        pasids.push(bond.pasid);
    }
    World { mem, unit, host, vm, hd, before, procs, pasids }
}

/// Host PASIDs attached for the device that were not before the VM.
fn vm_attachments(w: &World) -> usize {
    let then = w.before.attached.iter().find(|(d, _)| *d == w.hd).map_or(&[][..], |(_, p)| p);
    w.host.iommu().attached_pasids(w.hd).iter().filter(|p| !then.contains(p)).count()
}

fn sentinels_intact(mem: &Mem) -> Result<(), String> {
    for p in SENTINEL_PAGES {
        for q in 0..512 {
            let a = p + 8 * q;
            let v = mem.read_u64(Hpa::new(a)).unwrap();
            if v != SENTINEL {
                return Err(format!("host memory at {a:#x} changed: {v:#x}"));
            }
        }
    }
    Ok(())
}

// ---- the guest's tables, as the guest sees them ----------------------------

fn reg(vm: &Vm, off: u64) -> u64 {
    RegisterBus::read(vm.viommu(), off, Width::W64).unwrap_or(0)
}

/// Guest-physical address of the device's scalable context entry (its
/// first qword), if the root entry is there.
fn context_entry(vm: &Vm) -> Option<u64> {
    let rta = reg(vm, offset::RTADDR) & !0xFFF;
    let sid = vsid(VSID);
    let root = rta.wrapping_add(16 * sid.bus() as u64);
    let devfn = (sid.raw() & 0xFF) as u64;
    let half = if devfn < 128 { 0 } else { 8 };
    let r = vm.ram().read_u64(Hpa::new(root.wrapping_add(half))).ok()?;
    (r & 1 != 0).then(|| (r & !0xFFF).wrapping_add(32 * (devfn % 128)))
}

/// Guest-physical address of the PASID directory.
fn pasid_dir(vm: &Vm) -> Option<u64> {
    let ce = context_entry(vm)?;
    let q0 = vm.ram().read_u64(Hpa::new(ce)).ok()?;
    Some(q0 & !0xFFF)
}

/// Guest-physical address of the PASID entry of `p` (or of its directory
/// entry when that is not present).
fn pasid_entry(vm: &Vm, p: u32) -> Option<(u64, bool)> {
    let dir = pasid_dir(vm)?;
    let de = dir.wrapping_add(8 * (p as u64 >> 6));
    let d = vm.ram().read_u64(Hpa::new(de)).ok()?;
    if d & 1 == 0 {
        return Some((de, false));
    }
    Some(((d & !0xFFF).wrapping_add(64 * (p as u64 & 63)), true))
}

// ---- guest actions ---------------------------------------------------------

/// A value the guest writes.
#[derive(Debug, Clone, Copy)]
enum Val {
    Raw(u64),
    /// The old value with one bit flipped.
    Flip(u8),
    /// A guest-physical page (modulo RAM), with low bits.
    Page(u64, u16),
    /// A page near or beyond the end of guest RAM, or a host address.
    Outside(u8, u16),
}

impl Val {
    fn resolve(self, old: u64, ram: u64, host_base: u64) -> u64 {
        match self {
            Val::Raw(v) => v,
            Val::Flip(b) => old ^ 1 << (b % 64),
            Val::Page(p, low) => (p % ram) & !0xFFF | (low & 0xFFF) as u64,
            Val::Outside(k, low) => {
                let page = match k % 6 {
                    0 => ram,
                    1 => ram - 0x1000,
                    2 => host_base,
                    3 => SENTINEL_PAGES[(k / 6) as usize % SENTINEL_PAGES.len()],
                    4 => 1 << 40,
                    _ => 0xFEE0_0000,
                };
                page | (low & 0xFFF) as u64
            }
        }
    }
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        any::<u64>().prop_map(Val::Raw),
        any::<u8>().prop_map(Val::Flip),
        (any::<u64>(), any::<u16>()).prop_map(|(p, l)| Val::Page(p, l)),
        (any::<u8>(), any::<u16>()).prop_map(|(k, l)| Val::Outside(k, l)),
    ]
}

fn pasid() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..8, 1 => 60u32..70, 1 => any::<u32>().prop_map(|p| p & 0xF_FFFF)]
}

/// The invalidation a guest issues after a table write (or not).
#[derive(Debug, Clone, Copy)]
enum Inv {
    None,
    /// PASID-cache invalidation of the PASID just written (global when the
    /// write was not to a PASID entry).
    Own,
    Pasid(u32),
    AllPasids,
    Context,
}

/// Mostly a PGTT the vIOMMU offers (first stage, pass-through).
fn pgtt() -> impl Strategy<Value = u8> {
    prop_oneof![3 => Just(1u8), 2 => Just(4u8), 1 => 0u8..8]
}

fn inv() -> impl Strategy<Value = Inv> {
    prop_oneof![
        1 => Just(Inv::None),
        4 => Just(Inv::Own),
        1 => pasid().prop_map(Inv::Pasid),
        1 => Just(Inv::AllPasids),
        1 => Just(Inv::Context),
    ]
}

#[derive(Debug, Clone)]
enum Act {
    /// One qword of a PASID entry.
    EntryQword { pasid: u32, q: u8, val: Val, inv: Inv },
    /// A whole PASID entry: P, PGTT, first-stage root; with `junk`, `bits`
    /// ORed into qwords 0-2 (else only the paging mode, FSPM, from them).
    Entry { pasid: u32, pgtt: u8, root: Val, bits: [u64; 3], junk: bool, inv: Inv },
    /// A first-stage table chain built at [`TABLES`] mapping [`VA`] to
    /// `leaf` with a page of `1 << (12 + 9 * level)` bytes (leaf PTE bits
    /// flipped by `flip`), and the PASID entry pointing at it.
    Tables { pasid: u32, leaf: Val, level: u8, flip: u8, inv: Inv },
    /// A PASID directory entry.
    DirEntry { idx: u16, val: Val, inv: Inv },
    /// The device's context entry.
    Context { q: u8, val: Val, inv: Inv },
    /// Anywhere in guest memory, mostly where the guest kernel's tables are.
    Scribble { gpa: u64, val: Val, inv: Inv },
    /// Raw descriptors into the invalidation queue, then IQT.
    RawQueue { clear: bool, descs: Vec<[u64; 4]> },
    /// Well-formed descriptors into the invalidation queue, then IQT.
    Queue { clear: bool, descs: Vec<InvDescriptor> },
    /// A vIOMMU register.
    Reg { off: u64, wide: bool, val: Val },
}

fn descriptor() -> impl Strategy<Value = InvDescriptor> {
    let did = any::<u16>().prop_map(DomainId::new);
    prop_oneof![
        (did.clone(), pasid(), 0u8..3).prop_map(|(did, p, g)| InvDescriptor::PasidCache {
            did,
            scope: match g {
                0 => PasidCacheScope::Pasid(Pasid::new_truncate(p as u64)),
                1 => PasidCacheScope::Domain,
                _ => PasidCacheScope::Global,
            },
        }),
        (did.clone(), pasid(), any::<u64>(), 0u8..64, any::<bool>(), any::<bool>()).prop_map(
            |(did, p, a, am, ih, all)| InvDescriptor::PasidIotlb {
                did,
                pasid: Pasid::new_truncate(p as u64),
                scope: if all {
                    PasidIotlbScope::AllNonGlobal
                } else {
                    PasidIotlbScope::Page { addr: Iova::new(a & !0xFFF), am, ih }
                },
            }
        ),
        (pasid(), any::<bool>(), any::<u64>(), any::<bool>(), any::<bool>()).prop_map(|(p, global, a, size, mine)| {
            InvDescriptor::PasidDeviceTlb {
                sid: if mine { vsid(VSID) } else { SourceId::new(a as u16) },
                pfsid: 0,
                qdep: 0,
                pasid: Pasid::new_truncate(p as u64),
                global,
                addr: Iova::new(a & !0xFFF),
                size,
            }
        }),
        (did.clone(), any::<u16>(), 0u8..4, any::<bool>()).prop_map(|(did, sid, fm, mine)| {
            InvDescriptor::ContextCache(if mine {
                ContextCacheScope::Global
            } else {
                ContextCacheScope::Device { did, sid: SourceId::new(sid), fm }
            })
        }),
        (did.clone(), any::<u64>(), 0u8..64, any::<bool>()).prop_map(|(did, a, am, global)| InvDescriptor::Iotlb {
            scope: if global {
                IotlbScope::Global
            } else {
                IotlbScope::Page { did, addr: Iova::new(a & !0xFFF), am, ih: false }
            },
            dr: true,
            dw: true,
        }),
        (any::<u64>(), any::<bool>()).prop_map(|(a, size)| InvDescriptor::DeviceTlb {
            sid: vsid(VSID),
            pfsid: 0,
            qdep: 0,
            addr: Iova::new(a & !0xFFF),
            size,
        }),
        (val(), any::<u32>(), any::<bool>()).prop_map(|(at, data, pd)| InvDescriptor::Wait {
            interrupt: false,
            // 16 MiB: the VM's RAM.
            status: Some((Hpa::new(at.resolve(0, 16 << 20, 0) & !3), data)),
            fence: true,
            drain_page_requests: pd,
        }),
        (pasid(), any::<u16>(), any::<bool>()).prop_map(|(p, prgi, ok)| InvDescriptor::PageGroupResponse {
            rid: vsid(VSID),
            pasid: Some(Pasid::new_truncate(p as u64)),
            code: if ok { ResponseCode::Success } else { ResponseCode::InvalidRequest },
            lpig: true,
            prgi: prgi & 0x1FF,
            private: None,
        }),
    ]
}

const REGS: [u64; 14] = [
    offset::GCMD,
    offset::RTADDR,
    offset::CCMD,
    offset::FSTS,
    offset::IQH,
    offset::IQT,
    offset::IQA,
    offset::ICS,
    offset::IECTL,
    offset::PQH,
    offset::PQT,
    offset::PQA,
    offset::PRS,
    offset::FECTL,
];

fn act() -> impl Strategy<Value = Act> {
    let low_gpa = prop_oneof![0x10_0000u64..0x20_0000, 0u64..0x40_0000, 0u64..(16 << 20)];
    prop_oneof![
        4 => (pasid(), 0u8..8, val(), inv()).prop_map(|(pasid, q, val, inv)| Act::EntryQword { pasid, q, val, inv }),
        6 => (pasid(), pgtt(), val(), any::<[u64; 3]>(), any::<bool>(), inv()).prop_map(
            |(pasid, pgtt, root, bits, junk, inv)| Act::Entry { pasid, pgtt, root, bits, junk, inv }
        ),
        4 => (pasid(), val(), 0u8..3, prop_oneof![3 => Just(0u8), 1 => any::<u8>()], inv())
            .prop_map(|(pasid, leaf, level, flip, inv)| Act::Tables { pasid, leaf, level, flip, inv }),
        2 => (0u16..32, val(), inv()).prop_map(|(idx, val, inv)| Act::DirEntry { idx, val, inv }),
        1 => (0u8..4, val(), inv()).prop_map(|(q, val, inv)| Act::Context { q, val, inv }),
        3 => (low_gpa, val(), inv()).prop_map(|(gpa, val, inv)| Act::Scribble { gpa, val, inv }),
        2 => (any::<bool>(), prop::collection::vec(any::<[u64; 4]>(), 1..4))
            .prop_map(|(clear, descs)| Act::RawQueue { clear, descs }),
        4 => (any::<bool>(), prop::collection::vec(descriptor(), 1..4))
            .prop_map(|(clear, descs)| Act::Queue { clear, descs }),
        1 => (0..REGS.len(), any::<bool>(), val())
            .prop_map(|(i, wide, val)| Act::Reg { off: REGS[i], wide, val }),
    ]
}

/// A device DMA the test attempts after each action.
#[derive(Debug, Clone, Copy)]
struct Dma {
    /// `Some(None)`: the PASID the last action wrote an entry for.
    pasid: Option<Option<u32>>,
    addr: Val,
    /// An address above [`VA`]: (page, far): near VA, or up to 1 GiB above.
    va: Option<(u16, bool)>,
    write: Option<u64>,
}

fn dma() -> impl Strategy<Value = Dma> {
    (
        prop::option::weighted(0.8, prop::option::weighted(0.6, pasid())),
        val(),
        prop::option::weighted(0.6, any::<(u16, bool)>()),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(pasid, addr, va, write)| Dma { pasid, addr, va, write })
}

/// Writes descriptors at the vIOMMU's queue tail and moves IQT past them.
fn submit(vm: &Vm, clear: bool, descs: &[[u64; 4]]) {
    let u = vm.viommu();
    if clear {
        let _ = RegisterBus::write(u, offset::FSTS, Width::W32, (fsts::IQE | fsts::ITE | fsts::ICE) as u64);
    }
    let iqa = Iqa::from_words([reg(vm, offset::IQA)]);
    let base = iqa.0[0] & !0xFFF;
    let size = 4096u64 << iqa.get(Iqa::QS);
    let dsz = if iqa.get(Iqa::DW) != 0 { 32 } else { 16 };
    // After an error the guest overwrites the descriptor at the head.
    let mut tail = (reg(vm, if clear { offset::IQH } else { offset::IQT }) % size) & !(dsz - 1);
    for d in descs {
        for (i, w) in d.iter().take(dsz as usize / 8).enumerate() {
            let _ = vm.ram().write_u64(Hpa::new(base.wrapping_add(tail + 8 * i as u64)), *w);
        }
        tail = (tail + dsz) % size;
    }
    let _ = RegisterBus::write(u, offset::IQT, Width::W64, tail);
}

/// Issues `inv` after a write to the entry of PASID `own` (if it was one).
fn invalidate(vm: &Vm, inv: Inv, own: Option<u32>) {
    let inv = match (inv, own) {
        (Inv::Own, Some(p)) => Inv::Pasid(p),
        (Inv::Own, None) => Inv::AllPasids,
        (i, _) => i,
    };
    let d = match inv {
        Inv::None | Inv::Own => return,
        Inv::Pasid(p) => InvDescriptor::PasidCache {
            did: DomainId::new(0),
            scope: PasidCacheScope::Pasid(Pasid::new_truncate(p as u64)),
        },
        Inv::AllPasids => InvDescriptor::PasidCache { did: DomainId::new(0), scope: PasidCacheScope::Global },
        Inv::Context => InvDescriptor::ContextCache(ContextCacheScope::Global),
    };
    submit(vm, true, &[d.encode().words()]);
}

fn poke(vm: &Vm, at: Option<u64>, val: Val) {
    let Some(at) = at else { return };
    let at = Hpa::new(at & !7);
    let ram = vm.ram().size();
    let host_base = vm.ram().host_address(Gpa::new(0)).map_or(0, |h| h.raw());
    let old = vm.ram().read_u64(at).unwrap_or(0);
    let _ = vm.ram().write_u64(at, val.resolve(old, ram, host_base));
}

/// Writes the PASID entry of `p` (qwords 0-2; the rest zero), when its
/// directory entry is present.
fn write_entry(vm: &Vm, p: u32, q0: u64, q1: u64, q2: u64) {
    if let Some((e, true)) = pasid_entry(vm, p) {
        for (i, w) in [q0, q1, q2, 0, 0, 0, 0, 0].iter().enumerate() {
            let _ = vm.ram().write_u64(Hpa::new(e + 8 * i as u64), *w);
        }
    }
}

fn apply(vm: &Vm, a: &Act) {
    let ram = vm.ram().size();
    let host_base = vm.ram().host_address(Gpa::new(0)).map_or(0, |h| h.raw());
    match a {
        Act::EntryQword { pasid, q, val, inv } => {
            let at = pasid_entry(vm, *pasid).map(|(e, table)| if table { e + 8 * *q as u64 } else { e });
            poke(vm, at, *val);
            invalidate(vm, *inv, Some(*pasid));
        }
        Act::Entry { pasid, pgtt, root, bits, junk, inv } => {
            let root = root.resolve(0, ram, host_base) & !0xFFF;
            let [q0, q1, q2] = if *junk { *bits } else { [0, 0, bits[2] & 0x0C] };
            write_entry(vm, *pasid, 1 | (*pgtt as u64) << 6 | q0 & !0x1C1, q1, root | q2);
            invalidate(vm, *inv, Some(*pasid));
        }
        Act::Tables { pasid, leaf, level, flip, inv } => {
            let size = 1u64 << (12 + 9 * (*level as u64 % 3));
            let leaf = leaf.resolve(0, ram, host_base) & !(size - 1) & ((1 << 52) - 1);
            // P, R/W, U/S, A, D; PS on a large leaf.
            let flags = 0x67 | if size > 0x1000 { 0x80 } else { 0 };
            let mut at = TABLES;
            for l in (1..=4u64).rev() {
                let idx = (VA >> (12 + 9 * (l - 1))) & 511;
                let slot = Hpa::new(at + 8 * idx);
                if 1u64 << (12 + 9 * (l - 1)) == size {
                    let _ = vm.ram().write_u64(slot, (leaf | flags) ^ (*flip as u64));
                    break;
                }
                let _ = vm.ram().write_u64(slot, (at + 0x1000) | 0x27);
                at += 0x1000;
            }
            write_entry(vm, *pasid, 1 | 1 << 6, 0, TABLES);
            invalidate(vm, *inv, Some(*pasid));
        }
        Act::DirEntry { idx, val, inv } => {
            poke(vm, pasid_dir(vm).map(|d| d + 8 * *idx as u64), *val);
            invalidate(vm, *inv, None);
        }
        Act::Context { q, val, inv } => {
            poke(vm, context_entry(vm).map(|c| c + 8 * *q as u64), *val);
            invalidate(vm, *inv, None);
        }
        Act::Scribble { gpa, val, inv } => {
            poke(vm, Some(*gpa), *val);
            invalidate(vm, *inv, None);
        }
        Act::RawQueue { clear, descs } => submit(vm, *clear, descs),
        Act::Queue { clear, descs } => {
            let words: Vec<[u64; 4]> = descs.iter().map(|d| d.encode().words()).collect();
            submit(vm, *clear, &words);
        }
        Act::Reg { off, wide, val } => {
            let w = if *wide { Width::W64 } else { Width::W32 };
            let old = RegisterBus::read(vm.viommu(), *off, w).unwrap_or(0);
            let v = val.resolve(old, ram, host_base);
            let _ = RegisterBus::write(vm.viommu(), *off, w, if *wide { v } else { v & 0xFFFF_FFFF });
        }
    }
}

/// Attempts the DMA; a completed read must not return host memory.
fn attempt(w: &mut World, d: Dma, last: u32) -> Result<(), String> {
    let ram = w.vm.ram().size();
    let host_base = w.vm.ram().host_address(Gpa::new(0)).map_or(0, |h| h.raw());
    let addr = match d.va {
        Some((page, false)) => VA + (page as u64 & 0x1FFF),
        Some((page, true)) => VA + page as u64 * 0x4000,
        None => d.addr.resolve(0, ram, host_base),
    } & !7;
    let pasid = d.pasid.map(|p| Pasid::new_truncate(p.unwrap_or(last) as u64));
    match d.write {
        Some(v) => {
            let _ = w.vm.dma_write(&mut w.host, &w.unit, 0, pasid, addr, &v.to_le_bytes());
        }
        None => {
            if let Ok(got) = w.vm.dma_read(&mut w.host, &w.unit, 0, pasid, addr, 8) {
                let got = u64::from_le_bytes(got.try_into().unwrap());
                if got == SENTINEL {
                    return Err(format!("DMA read of {addr:#x} (PASID {pasid:?}) returned host memory"));
                }
            }
        }
    }
    Ok(())
}

fn check_bounds(w: &World) -> Result<(), String> {
    let max = w.vm.config().max_pasids as usize;
    let b = w.vm.bindings().len();
    if b > max {
        return Err(format!("{b} bindings, bound {max}"));
    }
    let a = vm_attachments(w);
    if a > max {
        return Err(format!("{a} host attachments, bound {max}"));
    }
    Ok(())
}

fn run(mode: PasidMode, steps: &[(Act, Dma)]) -> Result<(), TestCaseError> {
    let cfg = VmConfig { pasid_mode: mode, max_pasids: MAX_PASIDS, ..VmConfig::default() };
    let mut w = world(cfg, 2);
    let mut last = w.pasids[0].raw();
    for (i, (a, d)) in steps.iter().enumerate() {
        apply(&w.vm, a);
        w.vm.handle_invalidations(&mut w.host);
        check_bounds(&w).map_err(|e| TestCaseError::fail(format!("step {i} ({a:?}): {e}")))?;
        if let Act::EntryQword { pasid, .. } | Act::Entry { pasid, .. } | Act::Tables { pasid, .. } = a {
            last = *pasid;
        }
        attempt(&mut w, *d, last).map_err(|e| TestCaseError::fail(format!("step {i}: {e}")))?;
        check_bounds(&w).map_err(|e| TestCaseError::fail(format!("step {i} after DMA: {e}")))?;
    }
    sentinels_intact(&w.mem).map_err(TestCaseError::fail)?;
    let World { mut host, vm, before, unit, pasids, .. } = w;
    vm.destroy(&mut host);
    let leaks = HostSnapshot::take(&host).leaks_since(&before);
    prop_assert!(leaks.is_empty(), "leaks after destroy: {leaks:?}");
    let mut buf = [0u8; 8];
    for p in pasids {
        prop_assert!(unit.dma_read(SourceId::from_bdf(0, 1, 0), Some(p), Iova::new(VA), &mut buf).is_err());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, max_shrink_iters: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_guest_pasid_entries_never_panic_and_leave_the_host_clean(
        translated in any::<bool>(),
        steps in prop::collection::vec((act(), dma()), 1..24),
    ) {
        run(if translated { PasidMode::Translated } else { PasidMode::Identity }, &steps)?;
    }
}

// ---- the PASID bound -------------------------------------------------------

fn bound_case(mode: PasidMode) {
    let cfg = VmConfig { pasid_mode: mode, max_pasids: 3, ..VmConfig::default() };
    let mut w = world(cfg, 5);
    let pasids = w.pasids.clone();
    assert_eq!(w.vm.bindings().len(), 3, "{mode:?}");
    assert_eq!(vm_attachments(&w), 3, "{mode:?}: host attachments");
    if mode == PasidMode::Translated {
        assert_eq!(HostSnapshot::take(&w.host).pasids - w.before.pasids, 3, "global PASIDs");
    }
    let refused: Vec<u32> =
        w.vm.events()
            .filter_map(|e| match e {
                VmmEvent::Refused { gpasid, errno: Errno::NoSpc, .. } => Some(*gpasid),
                _ => None,
            })
            .collect();
    assert_eq!(refused, vec![pasids[3].raw(), pasids[4].raw()], "{mode:?}");
    for (i, p) in pasids.iter().enumerate() {
        let tag = format!("process-{i}");
        let got = w.vm.dma_read(&mut w.host, &w.unit, 0, Some(*p), VA, tag.len());
        if i < 3 {
            assert_eq!(got.as_deref(), Ok(tag.as_bytes()), "{mode:?}: bound PASID {p:?}");
        } else {
            assert!(got.is_err(), "{mode:?}: refused PASID {p:?} read {got:?}");
            let r = w.vm.dma_write(&mut w.host, &w.unit, 0, Some(*p), VA, b"overwritten");
            assert!(matches!(r, Err(VmError::Dma(_) | VmError::NoHostPasid(_))), "{mode:?}: {r:?}");
            let mm = w.procs[i];
            let mut buf = vec![0u8; tag.len()];
            w.vm.run_guest(&mut w.host, |g| g.cpu_read(mm, VA, &mut buf)).unwrap();
            assert_eq!(buf, tag.as_bytes(), "{mode:?}: the refused PASID's page changed");
        }
    }
    assert!(vm_attachments(&w) <= 3);
    let World { mut host, vm, before, .. } = w;
    vm.destroy(&mut host);
    assert_eq!(HostSnapshot::take(&host).leaks_since(&before), Vec::<String>::new());
}

#[test]
fn guest_cannot_exceed_its_pasid_bound() {
    bound_case(PasidMode::Identity);
    bound_case(PasidMode::Translated);
}
