//! MMIO register access and message-signalled interrupts.

use std::sync::Mutex;

/// Width of a register access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Width {
    /// A 32-bit access.
    W32,
    /// A 64-bit access.
    W64,
}

impl Width {
    /// Width in bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            Width::W32 => 4,
            Width::W64 => 8,
        }
    }
    /// Mask of the valid value bits.
    pub const fn mask(self) -> u64 {
        match self {
            Width::W32 => 0xFFFF_FFFF,
            Width::W64 => u64::MAX,
        }
    }
}

/// An MMIO access the register file refuses as a bus error (as opposed to
/// architecturally defined behaviour such as reads of reserved registers
/// returning zero, which is not an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// Offset not naturally aligned for the width.
    #[error("misaligned {width:?} access at offset {offset:#x}")]
    Misaligned {
        /// Register offset.
        offset: u64,
        /// Access width.
        width: Width,
    },
    /// Offset outside the register window.
    #[error("offset {0:#x} is outside the register window")]
    OutOfRange(u64),
}

/// A device's MMIO register window, accessed by offset (the OS side programs
/// hardware only through this trait, [`crate::PhysMem`] and
/// [`InterruptSink`]).
pub trait RegisterBus {
    /// Reads `width` bytes at `offset`.
    ///
    /// # Errors
    /// [`BusError`] for misaligned or out-of-window accesses.
    fn read(&self, offset: u64, width: Width) -> Result<u64, BusError>;
    /// Writes `width` bytes at `offset`; bits above the width are ignored.
    ///
    /// # Errors
    /// [`BusError`] for misaligned or out-of-window accesses.
    fn write(&self, offset: u64, width: Width, value: u64) -> Result<(), BusError>;
}

impl<T: RegisterBus + ?Sized> RegisterBus for &T {
    fn read(&self, offset: u64, width: Width) -> Result<u64, BusError> {
        (**self).read(offset, width)
    }
    fn write(&self, offset: u64, width: Width, value: u64) -> Result<(), BusError> {
        (**self).write(offset, width, value)
    }
}

impl<T: RegisterBus + ?Sized> RegisterBus for std::sync::Arc<T> {
    fn read(&self, offset: u64, width: Width) -> Result<u64, BusError> {
        (**self).read(offset, width)
    }
    fn write(&self, offset: u64, width: Width, value: u64) -> Result<(), BusError> {
        (**self).write(offset, width, value)
    }
}

/// A message-signalled interrupt: a 32-bit write of `data` to `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Msi {
    /// Message address (`0xFEEx_xxxx` on x86).
    pub addr: u64,
    /// Message data.
    pub data: u32,
}

/// Where a hardware model delivers its interrupts.
pub trait InterruptSink {
    /// Delivers one MSI.
    fn raise(&self, msi: Msi);
}

/// Drops every interrupt.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullInterrupts;

impl InterruptSink for NullInterrupts {
    fn raise(&self, _msi: Msi) {}
}

/// Records every interrupt, for tests and scenario logs.
#[derive(Debug, Default)]
pub struct RecordingInterrupts {
    log: Mutex<Vec<Msi>>,
}

impl RecordingInterrupts {
    /// Takes the interrupts raised so far.
    pub fn take(&self) -> Vec<Msi> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl InterruptSink for RecordingInterrupts {
    fn raise(&self, msi: Msi) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).push(msi);
    }
}

impl<T: InterruptSink + ?Sized> InterruptSink for std::sync::Arc<T> {
    fn raise(&self, msi: Msi) {
        (**self).raise(msi)
    }
}
