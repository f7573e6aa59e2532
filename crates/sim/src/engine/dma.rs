//! Device DMA as devices do it. An ATS/PRI device asks for a translation,
//! caches it in its device TLB, and on a missing page sends a page request,
//! waits for the kernel's page group response and retries. A device
//! without ATS sends untranslated requests that the unit translates (and
//! faults). A DMA is split at 4 KiB boundaries; every completed page is
//! shown to the isolation checker with the host-physical address it
//! reached.

use iommu_types::{Hpa, Pasid};
use iommu_vmm::{DmaAccess, DmaFailure, VmError};

use super::platform::{Answer, Attempt, Platform};
use super::{checks, Machine, Outcome};
use crate::report::{DmaRow, FaultRow, MAX_ROWS};
use crate::scenario::{Ctx, DmaSpace};

/// Page requests one page of a DMA may send before it gives up.
const RETRIES: usize = 4;

/// Deterministic xorshift64* stream for generated workloads.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

enum Buf<'a> {
    Write(&'a [u8]),
    Read(&'a mut [u8]),
}

impl<P: Platform> Machine<'_, P> {
    /// The PASID a DMA of `ctx` carries (a guest PASID inside a VM).
    fn dma_pasid(&self, space: DmaSpace) -> Result<Option<Pasid>, Outcome> {
        match space {
            DmaSpace::Rid => Ok(None),
            DmaSpace::Pasid(p) => Ok(Some(Pasid::new(p))),
            DmaSpace::Bond(b) => {
                let aux = self.aux.get(b).copied().flatten().map(|a| a.pasid);
                match self.bonds.get(b).copied().flatten().map(|x| x.pasid).or(aux) {
                    Some(pasid) => Ok(Some(pasid)),
                    None => Err(Outcome::Errno(iommu_os::Errno::NoEnt, "the bond is not bound".into())),
                }
            }
        }
    }

    pub(super) fn dma_op(
        &mut self,
        ctx: Ctx,
        device: usize,
        space: DmaSpace,
        addr: u64,
        write: Option<&[u8]>,
        len: usize,
    ) -> Outcome {
        let pasid = match self.dma_pasid(space) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let mut buf = vec![0u8; len];
        let out = match write {
            Some(d) => self.dma(ctx, device, pasid, addr, Buf::Write(d)),
            None => self.dma(ctx, device, pasid, addr, Buf::Read(&mut buf)),
        };
        match out {
            Outcome::Ok(d, _) if write.is_none() => Outcome::Ok(d, Some(buf)),
            o => o,
        }
    }

    /// One DMA: records its row, its fault, and checks isolation per page.
    fn dma(&mut self, ctx: Ctx, device: usize, pasid: Option<Pasid>, addr: u64, mut buf: Buf<'_>) -> Outcome {
        let (len, is_write) = match &buf {
            Buf::Write(d) => (d.len(), true),
            Buf::Read(b) => (b.len(), false),
        };
        let mut done = 0usize;
        let mut first_hpa = None;
        let mut outcome = Outcome::ok();
        while done < len {
            let Some(a) = addr.checked_add(done as u64) else {
                outcome = Outcome::Failed("address overflow".into());
                break;
            };
            let n = ((4096 - (a & 0xFFF)) as usize).min(len - done);
            let r = match &mut buf {
                Buf::Write(d) => self.dma_page(ctx, device, pasid, a, DmaAccess::Write(&d[done..done + n])),
                Buf::Read(b) => self.dma_page(ctx, device, pasid, a, DmaAccess::Read(&mut b[done..done + n])),
            };
            match r {
                Ok(hpa) => {
                    first_hpa.get_or_insert(hpa);
                    checks::isolation(self, ctx, device, pasid, a, hpa);
                }
                Err(o) => {
                    outcome = o;
                    break;
                }
            }
            done += n;
        }
        self.record_dma(ctx, device, pasid, addr, len, is_write, &outcome, first_hpa);
        outcome
    }

    /// One access within a page; the host-physical address it reached.
    fn dma_page(
        &mut self,
        ctx: Ctx,
        device: usize,
        pasid: Option<Pasid>,
        addr: u64,
        mut access: DmaAccess<'_>,
    ) -> Result<Hpa, Outcome> {
        if self.devs[device].removed {
            return Err(Outcome::Failed("the device was removed".into()));
        }
        if let Ctx::Vm(v) = ctx {
            let Some(s) = self.vms.get_mut(v).and_then(|s| s.as_mut()) else {
                return Err(Outcome::Failed("the VM is gone".into()));
            };
            let Some(idx) = s.devs.get(&device).copied() else { return Err(Outcome::Failed("not assigned".into())) };
            let Some(unit) = self.hw.vtd() else { return Err(Outcome::Failed("VMs need a VT-d host".into())) };
            let sent = unit.stats.page_requests.load(std::sync::atomic::Ordering::Relaxed);
            let r = s.vm.dma_access(&mut self.host, unit, idx, pasid, addr, access);
            let now = unit.stats.page_requests.load(std::sync::atomic::Ordering::Relaxed);
            self.report.page_requests.sent += now - sent;
            return match r {
                Ok(h) => {
                    self.report.page_requests.success += now - sent;
                    Ok(h)
                }
                Err(VmError::Dma(DmaFailure::Answered(c))) => {
                    self.report.page_requests.refused += 1;
                    Err(Outcome::Response(c))
                }
                Err(VmError::Dma(DmaFailure::Fault)) => Err(Outcome::Fault(None, "translation refused".into())),
                Err(e) => Err(super::ops::vm_err(e)),
            };
        }
        let info = self.devs[device].info;
        for _ in 0..RETRIES {
            let r = self.hw.access(&mut self.devs[device].endpoint, &info, pasid, addr, &mut access);
            let (token, id, what) = match r {
                Attempt::Done(h) => return Ok(h),
                Attempt::Fault(code, d) => return Err(Outcome::Fault(code, d)),
                Attempt::Failed(d) => return Err(Outcome::Failed(d)),
                Attempt::Waiting { token, id, what } => (token, id, what),
            };
            self.report.page_requests.sent += 1;
            let name = self.sc.devices[device].name.clone();
            self.trace(name.clone(), format!("{what} {id} for {addr:#x}"));
            if let Err(e) = self.host.service_page_requests() {
                self.trace("host", format!("servicing page requests: {e}"));
            }
            let answer = self.hw.answer(&mut self.devs[device].endpoint, &info, token);
            let said = match answer {
                Answer::Retry => "Success, retrying".to_string(),
                Answer::Refused(c) => format!("{c:?}"),
                Answer::None => "no answer".to_string(),
            };
            self.trace(name, format!("{what} {id}: {said}"));
            match answer {
                Answer::Retry => self.report.page_requests.success += 1,
                Answer::Refused(c) => {
                    self.report.page_requests.refused += 1;
                    return Err(Outcome::Response(c));
                }
                Answer::None => {
                    self.report.page_requests.refused += 1;
                    return Err(Outcome::Failed(format!("no answer to the {what}")));
                }
            }
        }
        Err(Outcome::Failed("still not translated after retries".into()))
    }

    #[allow(clippy::too_many_arguments)]
    fn record_dma(
        &mut self,
        ctx: Ctx,
        device: usize,
        pasid: Option<Pasid>,
        addr: u64,
        len: usize,
        write: bool,
        o: &Outcome,
        hpa: Option<Hpa>,
    ) {
        let ok = matches!(o, Outcome::Ok(..));
        let name = match ctx {
            Ctx::Host => self.sc.devices[device].name.clone(),
            Ctx::Vm(v) => format!("{}/{}", self.sc.vms[v].name, self.sc.devices[device].name),
        };
        let outcome = o.describe();
        if self.opts.trace {
            let what = if write { "write" } else { "read" };
            let p = pasid.map_or("no PASID".to_string(), |p| format!("PASID {}", p.raw()));
            let at = hpa.map_or(String::new(), |h| format!(" → {:#x}", h.raw()));
            self.trace(name.clone(), format!("DMA {what} {p} {addr:#x}+{len}: {outcome}{at}"));
        }
        let d = &mut self.report.dma;
        d.total += 1;
        if ok {
            d.completed += 1;
            d.bytes += len as u64;
        } else {
            d.refused += 1;
        }
        if d.rows.len() < MAX_ROWS {
            d.rows.push(DmaRow {
                step: self.step,
                device: name.clone(),
                pasid: pasid.map(|p| p.raw()),
                addr,
                len,
                write,
                outcome: outcome.clone(),
                hpa: hpa.map(|h| h.raw()),
                ok,
            });
        }
        if !ok && self.report.faults.len() < MAX_ROWS {
            self.report.faults.push(FaultRow {
                step: self.step,
                device: name,
                pasid: pasid.map(|p| p.raw()),
                addr,
                reason: outcome,
            });
        }
    }

    /// A seeded random workload: `count` 8-byte DMAs at random offsets of
    /// `[base, base + span)`, over the given address spaces.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn random_dma(
        &mut self,
        ctx: Ctx,
        device: usize,
        spaces: &[DmaSpace],
        base: u64,
        span: u64,
        count: u64,
        seed: u64,
        write_percent: u8,
    ) -> Outcome {
        let bar = (self.opts.progress && count >= 10_000).then(|| {
            let b = indicatif::ProgressBar::new(count);
            b.set_message(format!("step {}: random DMA", self.step));
            b
        });
        let mut rng = Rng::new(seed);
        let mut refused = 0u64;
        for i in 0..count {
            let space = spaces[(rng.next() % spaces.len() as u64) as usize];
            let off = (rng.next() % span) & !7;
            let Some(addr) = base.checked_add(off) else { continue };
            let write = rng.next() % 100 < u64::from(write_percent);
            let pasid = match self.dma_pasid(space) {
                Ok(p) => p,
                Err(_) => {
                    refused += 1;
                    continue;
                }
            };
            let o = if write {
                let data = rng.next().to_le_bytes();
                self.dma(ctx, device, pasid, addr, Buf::Write(&data))
            } else {
                let mut b = [0u8; 8];
                self.dma(ctx, device, pasid, addr, Buf::Read(&mut b))
            };
            if !matches!(o, Outcome::Ok(..)) {
                refused += 1;
            }
            if let Some(b) = &bar {
                if i % 1024 == 0 {
                    b.set_position(i);
                }
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if refused == 0 {
            Outcome::Ok(format!("{count} DMAs completed"), None)
        } else {
            Outcome::Fault(None, format!("{refused} of {count} DMAs refused"))
        }
    }
}
