//! Guest memory: guest-physical addresses [0, size) backed by one
//! contiguous host memory file. This is the view the VMM, the vIOMMU model
//! and the guest kernel's CPU have of guest RAM (the EPT of a real VMM);
//! device DMA instead goes through the host IOMMU's stage 2.

use std::sync::Arc;

use iommu_types::{Gpa, Hpa, MemError, PhysMem};

/// Guest RAM over host memory.
#[derive(Clone)]
pub struct GuestMem {
    host: Arc<dyn PhysMem + Send + Sync>,
    base: Hpa,
    size: u64,
}

impl std::fmt::Debug for GuestMem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMem").field("base", &self.base).field("size", &self.size).finish()
    }
}

impl GuestMem {
    /// `size` bytes of guest RAM at host-physical `base`.
    pub fn new(host: Arc<dyn PhysMem + Send + Sync>, base: Hpa, size: u64) -> Self {
        Self { host, base, size }
    }

    /// Bytes of guest RAM.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The host-physical address of guest-physical `gpa`, if it is RAM.
    pub fn host_address(&self, gpa: Gpa) -> Option<Hpa> {
        (gpa.raw() < self.size).then(|| Hpa::new(self.base.raw() + gpa.raw()))
    }

    /// The host address of [`addr`, `addr + len`), or the guest address
    /// that is not RAM.
    fn span(&self, addr: Hpa, len: usize) -> Result<Hpa, MemError> {
        let end = addr.raw().checked_add(len as u64).ok_or(MemError::Unbacked(addr))?;
        if end > self.size {
            return Err(MemError::Unbacked(addr));
        }
        Ok(Hpa::new(self.base.raw() + addr.raw()))
    }
}

/// Addresses are guest-physical (the `os` code names every physical
/// address `Hpa`; inside a guest that is a GPA).
impl PhysMem for GuestMem {
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemError> {
        let h = self.span(addr, buf.len())?;
        self.host.read(h, buf).map_err(|_| MemError::Unbacked(addr))
    }

    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), MemError> {
        let h = self.span(addr, data.len())?;
        self.host.write(h, data).map_err(|_| MemError::Unbacked(addr))
    }

    fn compare_exchange_u64(&self, addr: Hpa, current: u64, new: u64) -> Result<Result<u64, u64>, MemError> {
        let h = self.span(addr, 8)?;
        self.host.compare_exchange_u64(h, current, new).map_err(|e| match e {
            MemError::Misaligned(_) => MemError::Misaligned(addr),
            MemError::Unbacked(_) => MemError::Unbacked(addr),
        })
    }
}

/// A read-only view for the VMM's own software walks: reads pass through,
/// writes are dropped and compare-exchanges report success without
/// writing, so a walk leaves the guest's Accessed/Dirty flags alone.
#[derive(Debug)]
pub struct DryRun<'a>(pub &'a GuestMem);

impl PhysMem for DryRun<'_> {
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemError> {
        self.0.read(addr, buf)
    }

    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), MemError> {
        self.0.span(addr, data.len()).map(|_| ())
    }

    fn compare_exchange_u64(&self, addr: Hpa, current: u64, _new: u64) -> Result<Result<u64, u64>, MemError> {
        let now = self.0.read_u64(addr)?;
        Ok(if now == current { Ok(current) } else { Err(now) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_types::PagedMemory;

    fn mem() -> (Arc<PagedMemory>, GuestMem) {
        let host = Arc::new(PagedMemory::new(1 << 20));
        let g = GuestMem::new(host.clone(), Hpa::new(0x8_0000), 0x1_0000);
        (host, g)
    }

    #[test]
    fn guest_address_lands_at_base_plus_offset_in_host_memory() {
        let (host, g) = mem();
        g.write_u64(Hpa::new(0x10), 0xAB).unwrap();
        assert_eq!(host.read_u64(Hpa::new(0x8_0010)).unwrap(), 0xAB);
    }

    #[test]
    fn access_beyond_guest_ram_is_unbacked_without_touching_host_memory() {
        let (host, g) = mem();
        assert_eq!(g.write(Hpa::new(0xFFFC), &[1; 8]), Err(MemError::Unbacked(Hpa::new(0xFFFC))));
        assert_eq!(host.read_u64(Hpa::new(0x9_0000)).unwrap(), 0);
        assert!(g.read_u64(Hpa::new(u64::MAX - 3)).is_err());
    }

    #[test]
    fn dry_run_compare_exchange_reports_success_and_writes_nothing() {
        let (_, g) = mem();
        g.write_u64(Hpa::new(0x20), 5).unwrap();
        assert_eq!(DryRun(&g).compare_exchange_u64(Hpa::new(0x20), 5, 7), Ok(Ok(5)));
        assert_eq!(g.read_u64(Hpa::new(0x20)).unwrap(), 5);
    }
}
