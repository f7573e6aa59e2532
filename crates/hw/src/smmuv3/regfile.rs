//! The register file (SMMUv3 chapter 6): register semantics, the CR0 →
//! CR0ACK handshake (completed at once), GBPA updates, the global error
//! handshake (GERROR/GERRORN) and the queue registers.
//!
//! Writes to a queue's base, or to the index register software does not
//! own, take effect only while that queue is disabled; STRTAB_BASE and
//! STRTAB_BASE_CFG only while SMMUEN = 0 (§6.3.23, §6.3.24: other writes
//! are CONSTRAINED UNPREDICTABLE, and this model ignores them). Reserved
//! offsets read as zero and ignore writes; ID registers are read-only.

use std::sync::atomic::Ordering;

use iommu_format::bits::Field;
use iommu_format::smmuv3::regs::{offset as o, Cr0, Cr2, Gbpa, Gerror, IrqCtrl, QueueIndex};
use iommu_types::{BusError, InterruptSink, PhysMem, RegisterBus, Width};

use super::{Smmu, SmmuConfig};

/// Size of the MMIO window: register pages 0 and 1 (§6.1).
pub const REGISTER_WINDOW: u64 = 0x2_0000;

/// A 32-bit register field's mask, from the format's field table.
const fn m(f: Field) -> u32 {
    f.mask_in_word() as u32
}

/// CR0 bits (§6.3.9).
pub(super) mod cr0 {
    use super::{m, Cr0};
    pub const SMMUEN: u32 = m(Cr0::SMMUEN);
    pub const PRIQEN: u32 = m(Cr0::PRIQEN);
    pub const EVENTQEN: u32 = m(Cr0::EVENTQEN);
    pub const CMDQEN: u32 = m(Cr0::CMDQEN);
    pub const ATSCHK: u32 = m(Cr0::ATSCHK);
    pub const VMW: u32 = m(Cr0::VMW);
}

/// The control bits this SMMU implements; the others are RES0 and read as
/// zero whatever is written (§6.3.9 CR0: PRIQEN needs IDR0.PRI, ATSCHK
/// IDR0.ATS, VMW IDR0.VMW; §6.3.12 CR2: E2H needs IDR0.HYP, PTM IDR0.BTM,
/// REC_CFG_ATS is not implemented; §6.3.16 IRQ_CTRL: PRIQ_IRQEN needs
/// IDR0.PRI).
#[derive(Debug, Clone, Copy)]
struct Writable {
    cr0: u32,
    cr2: u32,
    irq_ctrl: u32,
}

impl Writable {
    fn of(c: &SmmuConfig) -> Self {
        let f = c.features();
        let when = |cond: bool, bits: u32| if cond { bits } else { 0 };
        Self {
            cr0: cr0::SMMUEN
                | cr0::EVENTQEN
                | cr0::CMDQEN
                | when(f.pri, cr0::PRIQEN)
                | when(f.ats, cr0::ATSCHK)
                | when(c.vmw(), cr0::VMW),
            cr2: m(Cr2::RECINVSID) | when(f.hyp, m(Cr2::E2H)) | when(c.btm(), m(Cr2::PTM)),
            irq_ctrl: m(IrqCtrl::GERROR_IRQEN) | m(IrqCtrl::EVENTQ_IRQEN) | when(f.pri, m(IrqCtrl::PRIQ_IRQEN)),
        }
    }
}

/// GERROR/GERRORN bits (§6.3.15, §6.3.16).
pub(super) mod gerror {
    use super::{m, Gerror};
    pub const CMDQ_ERR: u32 = m(Gerror::CMDQ_ERR);
    pub const EVENTQ_ABT_ERR: u32 = m(Gerror::EVENTQ_ABT_ERR);
    pub const PRIQ_ABT_ERR: u32 = m(Gerror::PRIQ_ABT_ERR);
    /// The errors an SMMUv3.1 without MSIs-on-error extensions reports.
    pub const ALL: u32 = CMDQ_ERR
        | EVENTQ_ABT_ERR
        | PRIQ_ABT_ERR
        | m(Gerror::MSI_CMDQ_ABT_ERR)
        | m(Gerror::MSI_EVENTQ_ABT_ERR)
        | m(Gerror::MSI_PRIQ_ABT_ERR)
        | m(Gerror::MSI_GERROR_ABT_ERR)
        | m(Gerror::SFM_ERR);
}

/// EVENTQ_PROD.OVFLG / EVENTQ_CONS.OVACKFLG (and the PRI queue's).
pub(super) const OVFLG: u32 = m(QueueIndex::OVFLG);
/// CMDQ_CONS.ERR.
pub(super) const CONS_ERR_MASK: u32 = m(QueueIndex::ERR);
/// GBPA.UPDATE and ABORT; the fields an update copies (§6.3.14).
const GBPA_UPDATE: u32 = m(Gbpa::UPDATE);
const GBPA_ABORT: u32 = m(Gbpa::ABORT);
const GBPA_FIELDS: u32 = m(Gbpa::MEMATTR)
    | m(Gbpa::MTCFG)
    | m(Gbpa::ALLOCCFG)
    | m(Gbpa::SHCFG)
    | m(Gbpa::PRIVCFG)
    | m(Gbpa::INSTCFG)
    | GBPA_ABORT;
/// Reset value of GBPA: SHCFG = 0b01 (use incoming), bypass (§6.3.14).
const GBPA_RESET: u32 = 1 << 12;

/// One queue's registers (§6.3.25–§6.3.30, §6.3.33–§6.3.37).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Queue {
    /// Q_BASE: RA/WA hint bit 62, ADDR 51:5, LOG2SIZE 4:0.
    pub base: u64,
    pub prod: u32,
    pub cons: u32,
    /// IRQ_CFG0 (MSI address), CFG1 (data), CFG2 (attributes).
    pub irq_cfg: (u64, u32, u32),
}

impl Queue {
    const BASE_MASK: u64 = 1 << 62 | 0x000F_FFFF_FFFF_FFE0 | 0x1F;

    /// LOG2SIZE, capped to the implementation's maximum.
    pub fn log2(&self, max: u32) -> u32 {
        ((self.base & 0x1F) as u32).min(max)
    }

    /// Base address, aligned to the queue size (at least 32 bytes).
    pub fn addr(&self, entry: u64, log2: u32) -> u64 {
        let size = (entry << log2).max(32);
        self.base & 0x000F_FFFF_FFFF_FFE0 & !(size - 1)
    }

    fn index_mask(&self, max: u32) -> u32 {
        (2u32 << self.log2(max)) - 1
    }

    /// Whether the queue is full (same index, different wrap flags, §3.5).
    pub fn full(&self, log2: u32) -> bool {
        iommu_format::smmuv3::regs::queue_full(QueueIndex([self.prod as u64]), QueueIndex([self.cons as u64]), log2)
    }

    /// Whether the queue is empty (same index and wrap flag).
    pub fn empty(&self, log2: u32) -> bool {
        iommu_format::smmuv3::regs::queue_empty(QueueIndex([self.prod as u64]), QueueIndex([self.cons as u64]), log2)
    }

    /// `index` advanced by one entry (wrap toggled at the end); ERR and
    /// OVFLG kept.
    pub fn next(index: u32, log2: u32) -> u32 {
        QueueIndex([index as u64]).incremented(log2).0[0] as u32
    }
}

/// Register state behind the register-file lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Regs {
    pub cr0: u32,
    pub cr1: u32,
    pub cr2: u32,
    pub gbpa: u32,
    pub irq_ctrl: u32,
    pub gerror: u32,
    pub gerrorn: u32,
    pub gerror_irq_cfg: (u64, u32, u32),
    pub strtab_base: u64,
    pub strtab_base_cfg: u32,
    pub cmdq: Queue,
    pub eventq: Queue,
    pub priq: Queue,
}

impl Regs {
    pub(super) const fn reset() -> Self {
        const Q: Queue = Queue { base: 0, prod: 0, cons: 0, irq_cfg: (0, 0, 0) };
        Self {
            cr0: 0,
            cr1: 0,
            cr2: 0,
            gbpa: GBPA_RESET,
            irq_ctrl: 0,
            gerror: 0,
            gerrorn: 0,
            gerror_irq_cfg: (0, 0, 0),
            strtab_base: 0,
            strtab_base_cfg: 0,
            cmdq: Q,
            eventq: Q,
            priq: Q,
        }
    }

    pub fn eventq_enabled(&self) -> bool {
        self.cr0 & cr0::EVENTQEN != 0
    }

    pub fn cmdq_enabled(&self) -> bool {
        self.cr0 & cr0::CMDQEN != 0
    }

    /// Whether global error `bit` is active (GERROR differs from GERRORN).
    pub fn gerror_active(&self, bit: u32) -> bool {
        (self.gerror ^ self.gerrorn) & bit != 0
    }

    /// Activates global error `bit` unless it already is (§7.5).
    pub fn activate_gerror(&mut self, bit: u32) {
        if !self.gerror_active(bit) {
            self.gerror ^= bit;
        }
    }
}

fn check(off: u64, width: Width) -> Result<(), BusError> {
    crate::check_access(off, width, REGISTER_WINDOW)
}

/// 64-bit registers (the rest are 32-bit).
fn is_64(off: u64) -> bool {
    matches!(
        off,
        o::GERROR_IRQ_CFG0
            | o::STRTAB_BASE
            | o::CMDQ_BASE
            | o::EVENTQ_BASE
            | o::EVENTQ_IRQ_CFG0
            | o::PRIQ_BASE
            | o::PRIQ_IRQ_CFG0
    )
}

impl<M: PhysMem, I: InterruptSink> Smmu<M, I> {
    fn read_reg(&self, r: &Regs, off: u64) -> u64 {
        let c = &self.config;
        match off {
            o::IDR0 => c.idr[0] as u64,
            o::IDR1 => c.idr[1] as u64,
            o::IDR2 => c.idr[2] as u64,
            o::IDR3 => c.idr[3] as u64,
            o::IDR4 => c.idr[4] as u64,
            o::IDR5 => c.idr[5] as u64,
            o::IIDR => c.iidr as u64,
            o::AIDR => c.aidr as u64,
            // The CR0 handshake completes at once: CR0ACK mirrors CR0.
            o::CR0 | o::CR0ACK => r.cr0 as u64,
            o::CR1 => r.cr1 as u64,
            o::CR2 => r.cr2 as u64,
            o::GBPA => r.gbpa as u64,
            o::IRQ_CTRL | o::IRQ_CTRLACK => r.irq_ctrl as u64,
            o::GERROR => r.gerror as u64,
            o::GERRORN => r.gerrorn as u64,
            o::GERROR_IRQ_CFG0 => r.gerror_irq_cfg.0,
            o::GERROR_IRQ_CFG1 => r.gerror_irq_cfg.1 as u64,
            o::GERROR_IRQ_CFG2 => r.gerror_irq_cfg.2 as u64,
            o::STRTAB_BASE => r.strtab_base,
            o::STRTAB_BASE_CFG => r.strtab_base_cfg as u64,
            o::CMDQ_BASE => r.cmdq.base,
            o::CMDQ_PROD => r.cmdq.prod as u64,
            o::CMDQ_CONS => r.cmdq.cons as u64,
            o::EVENTQ_BASE => r.eventq.base,
            o::EVENTQ_PROD => r.eventq.prod as u64,
            o::EVENTQ_CONS => r.eventq.cons as u64,
            o::EVENTQ_IRQ_CFG0 => r.eventq.irq_cfg.0,
            o::EVENTQ_IRQ_CFG1 => r.eventq.irq_cfg.1 as u64,
            o::EVENTQ_IRQ_CFG2 => r.eventq.irq_cfg.2 as u64,
            o::PRIQ_BASE => r.priq.base,
            o::PRIQ_PROD => r.priq.prod as u64,
            o::PRIQ_CONS => r.priq.cons as u64,
            o::PRIQ_IRQ_CFG0 => r.priq.irq_cfg.0,
            o::PRIQ_IRQ_CFG1 => r.priq.irq_cfg.1 as u64,
            o::PRIQ_IRQ_CFG2 => r.priq.irq_cfg.2 as u64,
            _ => 0,
        }
    }

    fn write_reg(&self, r: &mut Regs, off: u64, v: u64) {
        let v32 = v as u32;
        let smmuen = r.cr0 & cr0::SMMUEN != 0;
        let c = self.config;
        let msi_addr = |v: u64| v & 0x000F_FFFF_FFFF_FFFC;
        match off {
            o::CR0 => {
                r.cr0 = v32 & Writable::of(&c).cr0;
                self.process_cmdq(r);
            }
            o::CR1 if !smmuen => r.cr1 = v32 & 0x3F,
            o::CR2 if !smmuen => r.cr2 = v32 & Writable::of(&c).cr2,
            o::GBPA if v32 & GBPA_UPDATE != 0 => r.gbpa = v32 & GBPA_FIELDS,
            o::IRQ_CTRL => r.irq_ctrl = v32 & Writable::of(&c).irq_ctrl,
            o::GERRORN => {
                r.gerrorn = v32 & gerror::ALL;
                self.process_cmdq(r);
            }
            o::GERROR_IRQ_CFG0 => r.gerror_irq_cfg.0 = msi_addr(v),
            o::GERROR_IRQ_CFG1 => r.gerror_irq_cfg.1 = v32,
            o::GERROR_IRQ_CFG2 => r.gerror_irq_cfg.2 = v32 & 0x3F,
            o::STRTAB_BASE if !smmuen => r.strtab_base = v & (1 << 62 | 0x000F_FFFF_FFFF_FFC0),
            o::STRTAB_BASE_CFG if !smmuen => r.strtab_base_cfg = v32 & (3 << 16 | 0x1F << 6 | 0x3F),
            o::CMDQ_BASE if !r.cmdq_enabled() => r.cmdq.base = v & Queue::BASE_MASK,
            o::CMDQ_PROD => {
                r.cmdq.prod = v32 & r.cmdq.index_mask(c.cmdq_max());
                self.process_cmdq(r);
            }
            o::CMDQ_CONS if !r.cmdq_enabled() => r.cmdq.cons = v32 & (CONS_ERR_MASK | r.cmdq.index_mask(c.cmdq_max())),
            o::EVENTQ_BASE if !r.eventq_enabled() => r.eventq.base = v & Queue::BASE_MASK,
            o::EVENTQ_PROD if !r.eventq_enabled() => {
                r.eventq.prod = v32 & (OVFLG | r.eventq.index_mask(c.eventq_max()));
            }
            o::EVENTQ_CONS => r.eventq.cons = v32 & (OVFLG | r.eventq.index_mask(c.eventq_max())),
            o::EVENTQ_IRQ_CFG0 => r.eventq.irq_cfg.0 = msi_addr(v),
            o::EVENTQ_IRQ_CFG1 => r.eventq.irq_cfg.1 = v32,
            o::EVENTQ_IRQ_CFG2 => r.eventq.irq_cfg.2 = v32 & 0x3F,
            o::PRIQ_BASE if r.cr0 & cr0::PRIQEN == 0 => r.priq.base = v & Queue::BASE_MASK,
            o::PRIQ_PROD if r.cr0 & cr0::PRIQEN == 0 => {
                r.priq.prod = v32 & (OVFLG | r.priq.index_mask(c.priq_max()));
            }
            o::PRIQ_CONS => r.priq.cons = v32 & (OVFLG | r.priq.index_mask(c.priq_max())),
            o::PRIQ_IRQ_CFG0 => r.priq.irq_cfg.0 = msi_addr(v),
            o::PRIQ_IRQ_CFG1 => r.priq.irq_cfg.1 = v32,
            o::PRIQ_IRQ_CFG2 => r.priq.irq_cfg.2 = v32 & 0x3F,
            _ => {}
        }
        self.publish(r);
    }

    /// Publishes what `translate` reads to the atomics.
    fn publish(&self, r: &Regs) {
        let w = (r.cr0 & cr0::SMMUEN != 0) as u64
            | ((r.gbpa & GBPA_ABORT != 0) as u64) << 1
            | ((r.cr2 & 2 != 0) as u64) << 2
            | (r.strtab_base_cfg as u64) << 16;
        self.strtab_base.store(r.strtab_base & 0x000F_FFFF_FFFF_FFC0, Ordering::Release);
        self.ctl_word.store(w, Ordering::Release);
    }
}

impl<M: PhysMem, I: InterruptSink> RegisterBus for Smmu<M, I> {
    /// 32-bit accesses may address either half of a 64-bit register; 64-bit
    /// accesses must address a 64-bit register or a pair of 32-bit ones.
    fn read(&self, off: u64, width: Width) -> Result<u64, BusError> {
        check(off, width)?;
        let r = self.regs();
        let dword = |d: u64| -> u64 {
            if is_64(d & !7) && d % 8 == 4 {
                self.read_reg(&r, d - 4) >> 32
            } else {
                self.read_reg(&r, d) & 0xFFFF_FFFF
            }
        };
        Ok(match width {
            Width::W32 => dword(off),
            Width::W64 if is_64(off) => self.read_reg(&r, off),
            Width::W64 => dword(off) | dword(off + 4) << 32,
        })
    }

    fn write(&self, off: u64, width: Width, value: u64) -> Result<(), BusError> {
        check(off, width)?;
        let mut r = self.regs();
        let value = value & width.mask();
        match width {
            Width::W64 if is_64(off) => self.write_reg(&mut r, off, value),
            Width::W64 => {
                self.write_reg(&mut r, off, value & 0xFFFF_FFFF);
                self.write_reg(&mut r, off + 4, value >> 32);
            }
            Width::W32 if is_64(off & !7) => {
                let base = off & !7;
                let old = self.read_reg(&r, base);
                let new = if off % 8 == 0 { (old & !0xFFFF_FFFF) | value } else { (old & 0xFFFF_FFFF) | value << 32 };
                self.write_reg(&mut r, base, new);
            }
            Width::W32 => self.write_reg(&mut r, off, value),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use iommu_types::{NullInterrupts, PagedMemory, RegisterBus, Width};

    use super::o;
    use crate::smmuv3::{QemuStages, Smmu, SmmuConfig};

    fn write_then_read(config: SmmuConfig, off: u64, v: u64) -> u64 {
        let smmu = Smmu::new(config, PagedMemory::new(1 << 20), NullInterrupts);
        RegisterBus::write(&smmu, off, Width::W32, v).unwrap();
        RegisterBus::read(&smmu, off, Width::W32).unwrap()
    }

    #[test]
    fn cr0_bits_of_absent_features_read_as_zero() {
        // QEMU's SMMU has no PRI, ATS or VMW: only EVENTQEN and CMDQEN stick.
        let v = write_then_read(SmmuConfig::qemu(QemuStages::Nested), o::CR0, 0b1_1111_1110);
        assert_eq!(v, 0b1100);
    }

    #[test]
    fn cr0_priqen_and_atschk_stick_when_pri_and_ats_exist() {
        let v = write_then_read(SmmuConfig::full(), o::CR0, 0b1_1110);
        assert_eq!(v, 0b1_1110);
    }

    #[test]
    fn cr2_keeps_only_recinvsid_without_hyp_and_btm() {
        let v = write_then_read(SmmuConfig::qemu(QemuStages::Nested), o::CR2, 0xF);
        assert_eq!(v, 0b10);
    }

    #[test]
    fn irq_ctrl_priq_irqen_reads_as_zero_without_pri() {
        let v = write_then_read(SmmuConfig::qemu(QemuStages::Nested), o::IRQ_CTRL, 0b111);
        assert_eq!(v, 0b101);
        let v = write_then_read(SmmuConfig::full(), o::IRQ_CTRL, 0b111);
        assert_eq!(v, 0b111);
    }
}
