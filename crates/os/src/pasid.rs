//! PASID spaces (semantics §1.1, §1.2, §1.4 L4, §6 Q12).
//!
//! * [`GlobalPasids`]: the system-wide allocator over [1, 2^20). Every
//!   allocation is further bounded by the requesting device's
//!   `max_pasids`; PASID 0 is never handed out (it is the RID slot).
//! * [`DevicePasids`]: a per-device space for devices with small SSID
//!   spaces, whose driver picks the PASID.
//! * [`MmPasids`]: what a process (mm) holds: one optional *global* PASID
//!   (the value ENQCMD loads into IA32_PASID) and a set of device-local
//!   (device, PASID) pairs, under the rules of the 2026 per-device PASID
//!   proposal, v2 or v3 ([`LocalPolicy`]).

use std::collections::BTreeSet;

use iommu_types::Pasid;

use crate::Errno;

/// Number of PASID values (20-bit PASIDs).
pub const PASID_SPACE: u32 = 1 << 20;
/// The first PASID the global allocator hands out (`IOMMU_FIRST_GLOBAL_PASID`).
pub const FIRST_GLOBAL_PASID: u32 = 1;

/// A device as the OS knows it (an index in its device registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub u32);

/// Why a PASID could not be allocated or bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PasidError {
    /// The mm mixes global and device-local PASIDs, which the policy forbids.
    #[error("the mm already uses a PASID of the other kind")]
    MixedKinds,
    /// PASID 0, or a value outside the 20-bit space.
    #[error("pasid {0:#x} is not a usable PASID")]
    Invalid(u32),
    /// Not allocated (a free of a PASID nobody holds).
    #[error("pasid {0:#x} is not allocated")]
    NotAllocated(u32),
    /// No free PASID below the device's `max_pasids` (including `max_pasids` ≤ 1).
    #[error("no free pasid below {max_pasids:#x}")]
    NoSpace {
        /// The device's bound.
        max_pasids: u32,
    },
    /// The PASID (the mm's existing one, or the one asked for) is not below
    /// the device's `max_pasids`.
    #[error("pasid {pasid:#x} is not below the device's max_pasids {max_pasids:#x}")]
    Overflow {
        /// The PASID.
        pasid: u32,
        /// The device's bound.
        max_pasids: u32,
    },
    /// The mm already has a different device-local PASID (v2: one per mm).
    #[error("the mm already has device-local pasid {0:#x}")]
    LocalTaken(u32),
    /// The value is already in use in that space.
    #[error("pasid {0:#x} is already in use")]
    InUse(u32),
}

impl From<PasidError> for Errno {
    fn from(e: PasidError) -> Errno {
        match e {
            PasidError::MixedKinds | PasidError::InUse(_) => Errno::Busy,
            PasidError::Invalid(_) | PasidError::NotAllocated(_) => Errno::Inval,
            PasidError::NoSpace { .. } | PasidError::LocalTaken(_) => Errno::NoSpc,
            PasidError::Overflow { .. } => Errno::Overflow,
        }
    }
}

/// A bitmap ID allocator over [1, limit), lowest free first.
#[derive(Debug, Clone)]
struct IdBitmap {
    words: Box<[u64]>,
    limit: u32,
    used: u32,
}

impl IdBitmap {
    fn new(limit: u32) -> Self {
        Self { words: vec![0u64; limit.div_ceil(64) as usize].into_boxed_slice(), limit, used: 0 }
    }

    fn test(&self, id: u32) -> bool {
        id < self.limit && self.words[(id / 64) as usize] >> (id % 64) & 1 != 0
    }

    fn set(&mut self, id: u32, on: bool) {
        let w = &mut self.words[(id / 64) as usize];
        if on {
            *w |= 1 << (id % 64);
        } else {
            *w &= !(1 << (id % 64));
        }
    }

    /// The lowest free id in [1, bound), taken.
    fn alloc_below(&mut self, bound: u32) -> Option<u32> {
        let bound = bound.min(self.limit);
        let mut id = FIRST_GLOBAL_PASID;
        while id < bound {
            let w = self.words[(id / 64) as usize] | ((1u64 << (id % 64)) - 1);
            if w == u64::MAX {
                id = (id / 64 + 1) * 64;
                continue;
            }
            let free = (id / 64) * 64 + (!w).trailing_zeros();
            if free >= bound {
                return None;
            }
            self.set(free, true);
            self.used += 1;
            return Some(free);
        }
        None
    }

    fn take(&mut self, id: u32) -> bool {
        if id == 0 || id >= self.limit || self.test(id) {
            return false;
        }
        self.set(id, true);
        self.used += 1;
        true
    }

    fn release(&mut self, id: u32) -> bool {
        if !self.test(id) {
            return false;
        }
        self.set(id, false);
        self.used -= 1;
        true
    }
}

/// The global PASID allocator (`iommu_alloc_global_pasid`): an IDA over
/// [1, 2^20), each allocation bounded by the device's `max_pasids`.
#[derive(Debug, Clone)]
pub struct GlobalPasids {
    ids: IdBitmap,
}

impl Default for GlobalPasids {
    fn default() -> Self {
        Self::new()
    }
}

impl GlobalPasids {
    /// An empty allocator.
    pub fn new() -> Self {
        Self { ids: IdBitmap::new(PASID_SPACE) }
    }

    /// The lowest free PASID in [1, `max_pasids`).
    ///
    /// # Errors
    /// [`PasidError::NoSpace`] when none is free there (always for a device
    /// with `max_pasids` ≤ 1, i.e. no PASID support).
    pub fn alloc(&mut self, max_pasids: u32) -> Result<Pasid, PasidError> {
        self.ids.alloc_below(max_pasids).map(Pasid::new).ok_or(PasidError::NoSpace { max_pasids })
    }

    /// Returns a PASID to the allocator.
    ///
    /// # Errors
    /// [`PasidError::NotAllocated`] if it was not allocated.
    pub fn free(&mut self, p: Pasid) -> Result<(), PasidError> {
        if self.ids.release(p.raw()) {
            Ok(())
        } else {
            Err(PasidError::NotAllocated(p.raw()))
        }
    }

    /// Whether `p` is allocated.
    pub fn is_allocated(&self, p: Pasid) -> bool {
        self.ids.test(p.raw())
    }

    /// Number of PASIDs allocated.
    pub fn in_use(&self) -> u32 {
        self.ids.used
    }
}

/// A device's own PASID space (for devices with small SSID spaces): the
/// driver allocates from it, or claims a value it chose.
#[derive(Debug, Clone)]
pub struct DevicePasids {
    ids: IdBitmap,
}

impl DevicePasids {
    /// The space [1, `max_pasids`).
    pub fn new(max_pasids: u32) -> Self {
        Self { ids: IdBitmap::new(max_pasids.min(PASID_SPACE)) }
    }

    /// The lowest free PASID of the space.
    ///
    /// # Errors
    /// [`PasidError::NoSpace`] when the space is full.
    pub fn alloc(&mut self) -> Result<Pasid, PasidError> {
        let limit = self.ids.limit;
        self.ids.alloc_below(limit).map(Pasid::new).ok_or(PasidError::NoSpace { max_pasids: limit })
    }

    /// Claims a value the driver chose.
    ///
    /// # Errors
    /// [`PasidError::Invalid`] for 0, [`PasidError::Overflow`] beyond the
    /// space, [`PasidError::InUse`] when taken.
    pub fn claim(&mut self, p: Pasid) -> Result<(), PasidError> {
        match p.raw() {
            0 => Err(PasidError::Invalid(0)),
            v if v >= self.ids.limit => Err(PasidError::Overflow { pasid: v, max_pasids: self.ids.limit }),
            v if !self.ids.take(v) => Err(PasidError::InUse(v)),
            _ => Ok(()),
        }
    }

    /// Releases a value.
    ///
    /// # Errors
    /// [`PasidError::NotAllocated`] if it was not taken.
    pub fn free(&mut self, p: Pasid) -> Result<(), PasidError> {
        if self.ids.release(p.raw()) {
            Ok(())
        } else {
            Err(PasidError::NotAllocated(p.raw()))
        }
    }
}

/// Which rules govern device-local PASIDs of an mm (semantics §1.2
/// "Proposed", §6 Q12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LocalPolicy {
    /// v2 (May 2026): an mm uses either its global PASID or device-local
    /// ones, never both (EBUSY), and at most one device-local PASID value
    /// (ENOSPC).
    #[default]
    V2,
    /// v3 (as reviewers asked): one optional global PASID plus any set of
    /// (device, PASID) pairs.
    V3,
}

/// The PASID state of one mm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MmPasids {
    global: Option<Pasid>,
    local: BTreeSet<(DeviceId, Pasid)>,
}

impl MmPasids {
    /// The mm's global PASID, if it has one.
    pub fn global(&self) -> Option<Pasid> {
        self.global
    }

    /// The mm's device-local (device, PASID) pairs.
    pub fn local(&self) -> impl Iterator<Item = (DeviceId, Pasid)> + '_ {
        self.local.iter().copied()
    }

    /// The PASID a bind through the global space uses for a device with
    /// `max_pasids`: the mm's existing global PASID, or a new one. A newly
    /// allocated PASID stays with the mm even if the rest of the bind fails
    /// (PASID lifetime = mm lifetime, L4).
    ///
    /// # Errors
    /// [`PasidError::MixedKinds`] (EBUSY) under v2 when the mm has a local
    /// PASID; [`PasidError::Overflow`] (EOVERFLOW) when the existing global
    /// PASID is not below `max_pasids`; [`PasidError::NoSpace`] (ENOSPC).
    pub fn acquire_global(
        &mut self,
        all: &mut GlobalPasids,
        max_pasids: u32,
        policy: LocalPolicy,
    ) -> Result<Pasid, PasidError> {
        if policy == LocalPolicy::V2 && !self.local.is_empty() {
            return Err(PasidError::MixedKinds);
        }
        match self.global {
            Some(p) if p.raw() >= max_pasids => Err(PasidError::Overflow { pasid: p.raw(), max_pasids }),
            Some(p) => Ok(p),
            None => {
                let p = all.alloc(max_pasids)?;
                self.global = Some(p);
                Ok(p)
            }
        }
    }

    /// Records a driver-chosen device-local PASID for (`device`, `pasid`)
    /// (`iommu_sva_bind_device_pasid`). Recording the same pair again is
    /// allowed (the bond layer counts it).
    ///
    /// # Errors
    /// [`PasidError::Invalid`] (EINVAL) for PASID 0; [`PasidError::Overflow`]
    /// (EOVERFLOW) when `pasid` ≥ `max_pasids`; under v2,
    /// [`PasidError::MixedKinds`] (EBUSY) when the mm has a global PASID and
    /// [`PasidError::LocalTaken`] (ENOSPC) when it has a different local one.
    pub fn acquire_local(
        &mut self,
        device: DeviceId,
        pasid: Pasid,
        max_pasids: u32,
        policy: LocalPolicy,
    ) -> Result<(), PasidError> {
        if pasid.raw() == 0 {
            return Err(PasidError::Invalid(0));
        }
        if pasid.raw() >= max_pasids {
            return Err(PasidError::Overflow { pasid: pasid.raw(), max_pasids });
        }
        if self.local.contains(&(device, pasid)) {
            return Ok(());
        }
        if policy == LocalPolicy::V2 {
            if self.global.is_some() {
                return Err(PasidError::MixedKinds);
            }
            if let Some(&(_, other)) = self.local.iter().find(|(_, p)| *p != pasid) {
                return Err(PasidError::LocalTaken(other.raw()));
            }
        }
        self.local.insert((device, pasid));
        Ok(())
    }

    /// Forgets a device-local pair once its last bond is gone (v2
    /// changelog: the mm's record can then be reused).
    pub fn release_local(&mut self, device: DeviceId, pasid: Pasid) {
        self.local.remove(&(device, pasid));
    }

    /// The mm's final drop (`mm_pasid_drop`): its global PASID returns to
    /// the allocator. Only now may the value be handed out again (L4).
    pub fn drop_mm(self, all: &mut GlobalPasids) {
        if let Some(p) = self.global {
            // The global PASID was allocated from `all` by acquire_global,
            // so the free cannot fail.
            let _ = all.free(p);
        }
    }
}

/// The IA32_PASID MSR of one thread (semantics §5.11 #71): bit 31 valid,
/// bits 19:0 the PASID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ia32Pasid(pub u64);

impl Ia32Pasid {
    /// The valid bit.
    pub const VALID: u64 = 1 << 31;
}

/// The ENQCMD #GP fix-up: a thread whose mm has a *global* PASID gets it
/// loaded into IA32_PASID (with the valid bit) once, and the instruction is
/// retried (returns true). An mm with only device-local PASIDs, or none, is
/// not fixed up: the fault stands (returns false); so is a #GP with the MSR
/// already valid, which is a real fault.
pub fn enqcmd_gp_fixup(msr: &mut Ia32Pasid, mm: &MmPasids) -> bool {
    match mm.global {
        Some(p) if msr.0 & Ia32Pasid::VALID == 0 => {
            msr.0 = Ia32Pasid::VALID | p.raw() as u64;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
