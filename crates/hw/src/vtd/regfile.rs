//! The register file, VT-d chapter 11: access semantics (RO, RW, RW1C,
//! write-only commands), 32/64-bit access rules and the side effects of
//! command registers (GCMD→GSTS handshakes, CCMD, IOTLB, IQT).

use std::sync::atomic::Ordering;

use iommu_format::vtd::inv_desc::{ContextCacheScope, IotlbScope};
use iommu_format::vtd::regs::{fsts, gcmd, offset as o, prs, Ccmd, IotlbReg, Iva, Rtaddr};
use iommu_types::{BusError, DomainId, InterruptSink, Iova, PhysMem, RegisterBus, SourceId, Width};

use super::config::IqeRestart;
use super::translate::TE_BIT;
use super::{event_block, Regs, VtdUnit};

/// Size of the register window (4 KiB, VT-d §11.2).
pub const REGISTER_WINDOW: u64 = 0x1000;

/// Natural size in bytes of the register at `off`, or `None` for a gap.
fn reg_size<M, I>(u: &VtdUnit<M, I>, off: u64) -> Option<u64> {
    let iro = u.caps.iotlb_offset();
    let fro = u.caps.fault_record_offset();
    let nfr = u.caps.fault_record_count() as u64;
    match off {
        o::VER
        | o::GCMD
        | o::GSTS
        | o::FSTS
        | o::FECTL
        | o::FEDATA
        | o::FEADDR
        | o::FEUADDR
        | o::ICS
        | o::IECTL
        | o::IEDATA
        | o::IEADDR
        | o::IEUADDR
        | o::PRS
        | o::PECTL
        | o::PEDATA
        | o::PEADDR
        | o::PEUADDR => Some(4),
        o::CAP | o::ECAP | o::RTADDR | o::CCMD | o::IQH | o::IQT | o::IQA | o::IQERCD | o::PQH | o::PQT | o::PQA => {
            Some(8)
        }
        x if x == iro || x == iro + 8 => Some(8),
        x if x >= fro && x < fro + 16 * nfr && x % 8 == 0 => Some(8),
        _ => None,
    }
}

impl<M: PhysMem, I: InterruptSink> VtdUnit<M, I> {
    /// The full value of the register at `off` (its natural size).
    fn read_reg(&self, r: &Regs, off: u64) -> u64 {
        let iro = self.caps.iotlb_offset();
        let fro = self.caps.fault_record_offset();
        if let Some((block, index)) = event_block(off) {
            return r.events(block).read(index) as u64;
        }
        match off {
            o::VER => 0x40,
            o::CAP => self.cfg.cap,
            o::ECAP => self.cfg.ecap,
            o::GSTS => r.gsts as u64,
            o::RTADDR => r.rtaddr,
            o::CCMD => r.ccmd,
            o::FSTS => Self::fsts_value(r) as u64,
            o::IQH => r.iqh,
            o::IQT => r.iqt,
            o::IQA => r.iqa,
            o::ICS => r.ics as u64,
            o::IQERCD => r.iqercd,
            o::PQH => r.pqh,
            o::PQT => r.pqt,
            o::PQA => r.pqa,
            o::PRS => r.prs as u64,
            x if x == iro => r.iva,
            x if x == iro + 8 => r.iotlb,
            x if x >= fro => {
                let i = ((x - fro) / 16) as usize;
                r.frcd.get(i).map_or(0, |f| f[((x - fro) / 8 % 2) as usize])
            }
            _ => 0, // GCMD and gaps read as zero
        }
    }

    /// Writes the full value of the register at `off`, with its side effects.
    fn write_reg(&self, r: &mut Regs, off: u64, v: u64) {
        let iro = self.caps.iotlb_offset();
        let fro = self.caps.fault_record_offset();
        let v32 = v as u32;
        if let Some((block, index)) = event_block(off) {
            return r.events_mut(block).write(index, v32, &self.irq);
        }
        match off {
            o::GCMD => self.global_command(r, v32),
            o::RTADDR => r.rtaddr = v & (Rtaddr::RTA.mask_in_word() | Rtaddr::TTM.mask_in_word()),
            o::CCMD => {
                r.ccmd = v;
                let c = Ccmd([v]);
                if c.get(Ccmd::ICC) != 0 {
                    let gran = c.get(Ccmd::CIRG);
                    // Register-based invalidation is ignored while queued
                    // invalidation is enabled (VT-d §6.5.1); the command
                    // still completes.
                    if r.gsts & gcmd::QIE == 0 {
                        self.invalidate_context(match gran {
                            2 => ContextCacheScope::Domain(DomainId::new(c.get(Ccmd::DID) as u16)),
                            3 => ContextCacheScope::Device {
                                did: DomainId::new(c.get(Ccmd::DID) as u16),
                                sid: SourceId::new(c.get(Ccmd::SID) as u16),
                                fm: c.get(Ccmd::FM) as u8,
                            },
                            _ => ContextCacheScope::Global,
                        });
                    }
                    r.ccmd = c.with(Ccmd::ICC, 0).with(Ccmd::CAIG, gran).0[0];
                }
            }
            o::FSTS => {
                let cleared_iqe = v32 & fsts::IQE != 0 && r.fsts & fsts::IQE != 0;
                r.fsts &= !(v32 & fsts::RW1C);
                if cleared_iqe && self.cfg.choices.iqe_restart == IqeRestart::OnClear && r.gsts & gcmd::QIE != 0 {
                    self.process_queue(r);
                }
            }
            o::IQT => {
                r.iqt = v & 0x7_FFF0;
                if r.gsts & gcmd::QIE != 0 && r.fsts & (fsts::IQE | fsts::ITE) == 0 {
                    self.process_queue(r);
                }
            }
            // IQA may only change while queued invalidation is disabled.
            o::IQA if r.gsts & gcmd::QIE == 0 => r.iqa = v & !0x7F8,
            o::ICS => r.ics &= !(v32 & 1),
            o::PQH => r.pqh = v & 0x7_FFE0,
            o::PQA => r.pqa = v & !0xFF8,
            o::PRS => r.prs &= !(v32 & (prs::PPR | prs::PRO)),
            x if x == iro => r.iva = v,
            x if x == iro + 8 => self.iotlb_command(r, v),
            x if x >= fro && (x - fro) % 16 == 8 => {
                // F (bit 127) is write-1-to-clear; the rest is read-only.
                let i = ((x - fro) / 16) as usize;
                if let Some(f) = r.frcd.get_mut(i) {
                    if v >> 63 != 0 {
                        f[1] &= !(1 << 63);
                    }
                }
            }
            _ => {} // read-only registers and gaps ignore writes
        }
    }

    /// GCMD write: VT-d §11.4.4.1. Software writes the persistent enables
    /// (TE, QIE, IRE, CFI, EAFL) with every command; one-shot commands (SRTP,
    /// SFL, WBF, SIRTP) take effect and complete immediately.
    fn global_command(&self, r: &mut Regs, v: u32) {
        if v & gcmd::SRTP != 0 {
            let rt = r.rtaddr;
            let te = (r.gsts & gcmd::TE != 0) as u64;
            self.active.store(rt | (te * TE_BIT), Ordering::Release);
            r.gsts |= gcmd::SRTP;
        }
        let qie_on = v & gcmd::QIE != 0;
        if qie_on && r.gsts & gcmd::QIE == 0 {
            r.iqh = 0;
            r.gsts |= gcmd::QIE;
            if r.iqt != 0 {
                self.process_queue(r);
            }
        } else if !qie_on {
            r.gsts &= !gcmd::QIE;
        }
        let te = v & gcmd::TE != 0;
        let rt = self.active.load(Ordering::Acquire) & !TE_BIT;
        self.active.store(rt | ((te as u64) * TE_BIT), Ordering::Release);
        r.gsts = if te { r.gsts | gcmd::TE } else { r.gsts & !gcmd::TE };
        for bit in [gcmd::IRE, gcmd::CFI] {
            r.gsts = if v & bit != 0 { r.gsts | bit } else { r.gsts & !bit };
        }
        if v & gcmd::SIRTP != 0 {
            r.gsts |= gcmd::SIRTP;
        }
        // WBF completes at once (no write buffer is modelled): WBFS stays clear.
    }

    /// IOTLB register write: VT-d §11.4.8.1 (register-based invalidation).
    fn iotlb_command(&self, r: &mut Regs, v: u64) {
        let c = IotlbReg([v]);
        r.iotlb = v;
        if c.get(IotlbReg::IVT) == 0 {
            return;
        }
        let gran = c.get(IotlbReg::IIRG);
        let did = DomainId::new(c.get(IotlbReg::DID) as u16);
        let iva = Iva([r.iva]);
        let scope = match gran {
            1 => Some(IotlbScope::Global),
            2 => Some(IotlbScope::Domain(did)),
            3 => Some(IotlbScope::Page {
                did,
                addr: Iova::new(iva.get_in_place(Iva::ADDR)),
                am: iva.get(Iva::AM) as u8,
                ih: iva.get(Iva::IH) != 0,
            }),
            _ => None,
        };
        let done = match scope {
            Some(s) if r.gsts & gcmd::QIE == 0 => self.invalidate_iotlb(s).is_ok(),
            Some(_) => true,
            None => false,
        };
        // IAIG reports the granularity performed, 0 when the request was refused.
        r.iotlb = c.with(IotlbReg::IVT, 0).with(IotlbReg::IAIG, if done { gran } else { 0 }).0[0];
    }
}

impl<M: PhysMem, I: InterruptSink> RegisterBus for VtdUnit<M, I> {
    /// 32-bit accesses may address either half of a 64-bit register; 64-bit
    /// accesses must address a 64-bit register or a pair of 32-bit ones.
    fn read(&self, off: u64, width: Width) -> Result<u64, BusError> {
        check(off, width)?;
        let r = self.regs();
        let dword = |d: u64| -> u64 {
            match reg_size(self, d) {
                Some(4) => self.read_reg(&r, d) & 0xFFFF_FFFF,
                Some(_) => self.read_reg(&r, d) & 0xFFFF_FFFF,
                None => match reg_size(self, d - 4) {
                    Some(8) => self.read_reg(&r, d - 4) >> 32,
                    _ => 0,
                },
            }
        };
        Ok(match width {
            Width::W32 => dword(off),
            Width::W64 => match reg_size(self, off) {
                Some(8) => self.read_reg(&r, off),
                _ => dword(off) | dword(off + 4) << 32,
            },
        })
    }

    fn write(&self, off: u64, width: Width, value: u64) -> Result<(), BusError> {
        check(off, width)?;
        let value = value & width.mask();
        let mut r = self.regs();
        match (width, reg_size(self, off)) {
            (Width::W64, Some(8)) | (Width::W32, Some(4)) => self.write_reg(&mut r, off, value),
            (Width::W64, _) => {
                // A 64-bit write to a pair of 32-bit registers.
                if reg_size(self, off) == Some(4) {
                    self.write_reg(&mut r, off, value & 0xFFFF_FFFF);
                }
                if reg_size(self, off + 4) == Some(4) {
                    self.write_reg(&mut r, off + 4, value >> 32);
                }
            }
            (Width::W32, Some(_)) => {
                // Low half of a 64-bit register: merge and apply.
                let old = self.read_reg(&r, off);
                self.write_reg(&mut r, off, (old & !0xFFFF_FFFF) | value);
            }
            (Width::W32, None) => {
                if off >= 4 && reg_size(self, off - 4) == Some(8) {
                    let old = self.read_reg(&r, off - 4);
                    self.write_reg(&mut r, off - 4, (old & 0xFFFF_FFFF) | value << 32);
                }
            }
        }
        Ok(())
    }
}

fn check(off: u64, width: Width) -> Result<(), BusError> {
    crate::check_access(off, width, REGISTER_WINDOW)
}
