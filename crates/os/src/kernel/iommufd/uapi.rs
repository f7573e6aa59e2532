//! The byte layouts of the iommufd structures that cross the user/kernel
//! boundary as opaque data (semantics §1.3): the VT-d stage-1 block of a
//! nested `HWPT_ALLOC`, the VT-d `HWPT_INVALIDATE` entry, and the fault
//! queue's read record and write response. Everything is little-endian.
//! Decoders accept any bytes; they report what is wrong as the errno the
//! ioctl returns.

use iommu_types::Gpa;

use crate::iommu::NestedS1;
use crate::Errno;

/// `IOMMU_HWPT_ALLOC_*` flags.
pub mod hwpt_flags {
    /// May serve as the stage 2 of nested HWPTs.
    pub const NEST_PARENT: u32 = 1 << 0;
    /// Dirty tracking (not supported by this model's VT-d).
    pub const DIRTY_TRACKING: u32 = 1 << 1;
    /// `fault_id` names a fault queue for this HWPT's page faults.
    pub const FAULT_ID_VALID: u32 = 1 << 2;
    /// May be attached to PASIDs ("PASID-compatible").
    pub const ALLOC_PASID: u32 = 1 << 3;
    /// Every flag the model knows.
    pub const ALL: u32 = NEST_PARENT | DIRTY_TRACKING | FAULT_ID_VALID | ALLOC_PASID;
}

/// `IOMMU_HWPT_DATA_*`: what the data of a `HWPT_ALLOC` is.
pub mod hwpt_data {
    /// No data (paging HWPTs).
    pub const NONE: u32 = 0;
    /// [`super::VtdS1`].
    pub const VTD_S1: u32 = 1;
    /// A guest SMMUv3 STE (not taken by the VT-d driver).
    pub const ARM_SMMUV3: u32 = 2;
}

/// `IOMMU_HWPT_INVALIDATE_DATA_VTD_S1`: entries are [`VtdS1Invalidate`].
pub const INVALIDATE_DATA_VTD_S1: u32 = 0;

/// `IOMMU_VIOMMU_TYPE_DEFAULT`: refused (a vIOMMU must name its kind).
pub const VIOMMU_TYPE_DEFAULT: u32 = 0;
/// `IOMMU_VIOMMU_TYPE_ARM_SMMUV3`.
pub const VIOMMU_TYPE_ARM_SMMUV3: u32 = 1;
/// A VT-d vIOMMU object. Linux has no VT-d vIOMMU type (as of 6.17); this
/// model-only value lets a VMM hold its VT-d vdevice table (virtual
/// requester IDs) in the host the way an SMMUv3 VMM does. The high bit keeps
/// it clear of the upstream numbering.
pub const VIOMMU_TYPE_INTEL_VTD: u32 = 0x8000_0001;

/// `iommu_hwpt_vtd_s1` flags.
pub mod vtd_s1_flags {
    /// Supervisor requests enabled.
    pub const SRE: u64 = 1 << 0;
    /// Extended accessed flag enabled.
    pub const EAFE: u64 = 1 << 1;
    /// Write protect enable.
    pub const WPE: u64 = 1 << 2;
    /// Every flag known.
    pub const ALL: u64 = SRE | EAFE | WPE;
}

/// `struct iommu_hwpt_vtd_s1`: a guest's first-stage table for a nested
/// HWPT (24 bytes: flags u64, pgtbl_addr u64, addr_width u32, reserved u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VtdS1 {
    /// [`vtd_s1_flags`].
    pub flags: u64,
    /// Guest-physical address of the first-stage root.
    pub pgtbl_addr: u64,
    /// 48 or 57.
    pub addr_width: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// Size of [`VtdS1`] in bytes.
pub const VTD_S1_LEN: usize = 24;

impl VtdS1 {
    /// The bytes.
    pub fn to_bytes(&self) -> [u8; VTD_S1_LEN] {
        let mut b = [0u8; VTD_S1_LEN];
        b[0..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.pgtbl_addr.to_le_bytes());
        b[16..20].copy_from_slice(&self.addr_width.to_le_bytes());
        b[20..24].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }

    /// Decodes a size-extensible block of `len` bytes.
    ///
    /// # Errors
    /// [`Errno::Inval`] below the known size; [`Errno::TooBig`] for non-zero
    /// bytes beyond it; [`Errno::OpNotSupp`] for unknown flags or a non-zero
    /// reserved field.
    pub fn decode(data: &[u8]) -> Result<Self, Errno> {
        if data.len() < VTD_S1_LEN {
            return Err(Errno::Inval);
        }
        if data[VTD_S1_LEN..].iter().any(|b| *b != 0) {
            return Err(Errno::TooBig);
        }
        let s = Self {
            flags: u64_at(data, 0),
            pgtbl_addr: u64_at(data, 8),
            addr_width: u32_at(data, 16),
            reserved: u32_at(data, 20),
        };
        if s.flags & !vtd_s1_flags::ALL != 0 || s.reserved != 0 {
            return Err(Errno::OpNotSupp);
        }
        Ok(s)
    }
}

impl From<&NestedS1> for VtdS1 {
    /// The block a VMM passes for a guest first stage.
    fn from(s1: &NestedS1) -> Self {
        let flag = |on: bool, bit: u64| if on { bit } else { 0 };
        Self {
            flags: flag(s1.sre, vtd_s1_flags::SRE)
                | flag(s1.eafe, vtd_s1_flags::EAFE)
                | flag(s1.wpe, vtd_s1_flags::WPE),
            pgtbl_addr: s1.root.raw(),
            addr_width: s1.addr_width as u32,
            reserved: 0,
        }
    }
}

impl VtdS1 {
    /// The stage-1 data the core takes.
    ///
    /// # Errors
    /// [`Errno::Inval`] for an address width that does not fit a byte (the
    /// core checks the rest).
    pub fn to_nested(&self) -> Result<NestedS1, Errno> {
        Ok(NestedS1 {
            root: Gpa::new(self.pgtbl_addr),
            addr_width: u8::try_from(self.addr_width).map_err(|_| Errno::Inval)?,
            sre: self.flags & vtd_s1_flags::SRE != 0,
            eafe: self.flags & vtd_s1_flags::EAFE != 0,
            wpe: self.flags & vtd_s1_flags::WPE != 0,
        })
    }
}

/// `iommu_hwpt_vtd_s1_invalidate` flag: only leaf entries changed.
pub const VTD_INV_FLAGS_LEAF: u32 = 1 << 0;

/// `struct iommu_hwpt_vtd_s1_invalidate` (24 bytes: addr u64, npages u64,
/// flags u32, reserved u32). `addr` 0 with `npages` = `u64::MAX` means
/// everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VtdS1Invalidate {
    /// First address (4 KiB aligned).
    pub addr: u64,
    /// Pages.
    pub npages: u64,
    /// [`VTD_INV_FLAGS_LEAF`].
    pub flags: u32,
    /// Must be zero.
    pub reserved: u32,
}

/// Size of [`VtdS1Invalidate`] in bytes.
pub const VTD_S1_INVALIDATE_LEN: usize = 24;

impl VtdS1Invalidate {
    /// Everything.
    pub const ALL: Self = Self { addr: 0, npages: u64::MAX, flags: 0, reserved: 0 };

    /// The bytes.
    pub fn to_bytes(&self) -> [u8; VTD_S1_INVALIDATE_LEN] {
        let mut b = [0u8; VTD_S1_INVALIDATE_LEN];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.npages.to_le_bytes());
        b[16..20].copy_from_slice(&self.flags.to_le_bytes());
        b[20..24].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }

    /// Decodes one entry and checks it, returning the byte range
    /// [start, end) it invalidates (`end` saturates).
    ///
    /// # Errors
    /// [`Errno::OpNotSupp`] for unknown flags or a non-zero reserved field;
    /// [`Errno::Inval`] for a misaligned address or "all" pages from a
    /// non-zero address.
    pub fn decode(data: &[u8; VTD_S1_INVALIDATE_LEN]) -> Result<(u64, u64), Errno> {
        let e = Self {
            addr: u64_at(data, 0),
            npages: u64_at(data, 8),
            flags: u32_at(data, 16),
            reserved: u32_at(data, 20),
        };
        if e.flags & !VTD_INV_FLAGS_LEAF != 0 || e.reserved != 0 {
            return Err(Errno::OpNotSupp);
        }
        if e.addr & 0xFFF != 0 || e.npages == u64::MAX && e.addr != 0 {
            return Err(Errno::Inval);
        }
        Ok((e.addr, e.addr.saturating_add(e.npages.saturating_mul(4096))))
    }
}

/// `iommu_hwpt_pgfault` flags.
pub mod pgfault_flags {
    /// The PASID field is valid.
    pub const PASID_VALID: u32 = 1 << 0;
    /// Last request of its group.
    pub const LAST_PAGE: u32 = 1 << 1;
}

/// `iommu_hwpt_pgfault` permission bits.
pub mod pgfault_perm {
    /// Read.
    pub const READ: u32 = 1 << 0;
    /// Write.
    pub const WRITE: u32 = 1 << 1;
    /// Execute.
    pub const EXEC: u32 = 1 << 2;
    /// Privileged.
    pub const PRIV: u32 = 1 << 3;
}

/// `struct iommu_hwpt_pgfault`: one record read from a fault queue (40
/// bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PgFault {
    /// [`pgfault_flags`].
    pub flags: u32,
    /// The iommufd device object.
    pub dev_id: u32,
    /// PASID (valid with PASID_VALID).
    pub pasid: u32,
    /// Page request group index.
    pub grpid: u32,
    /// [`pgfault_perm`].
    pub perm: u32,
    /// Page address.
    pub addr: u64,
    /// Length hint (bytes).
    pub length: u32,
    /// The group's cookie, repeated in each of its records.
    pub cookie: u32,
}

/// Size of [`PgFault`] in bytes.
pub const PGFAULT_LEN: usize = 40;

impl PgFault {
    /// The bytes.
    pub fn to_bytes(&self) -> [u8; PGFAULT_LEN] {
        let mut b = [0u8; PGFAULT_LEN];
        for (i, v) in [self.flags, self.dev_id, self.pasid, self.grpid, self.perm, 0].iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        b[24..32].copy_from_slice(&self.addr.to_le_bytes());
        b[32..36].copy_from_slice(&self.length.to_le_bytes());
        b[36..40].copy_from_slice(&self.cookie.to_le_bytes());
        b
    }

    /// Decodes a record (any bytes).
    pub fn from_bytes(b: &[u8; PGFAULT_LEN]) -> Self {
        Self {
            flags: u32_at(b, 0),
            dev_id: u32_at(b, 4),
            pasid: u32_at(b, 8),
            grpid: u32_at(b, 12),
            perm: u32_at(b, 16),
            addr: u64_at(b, 24),
            length: u32_at(b, 32),
            cookie: u32_at(b, 36),
        }
    }
}

/// `struct iommu_hwpt_page_response` (8 bytes): the answer to one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PageResponse {
    /// The group's cookie.
    pub cookie: u32,
    /// [`PAGE_RESP_SUCCESS`] or [`PAGE_RESP_INVALID`].
    pub code: u32,
}

/// Size of [`PageResponse`] in bytes.
pub const PAGE_RESPONSE_LEN: usize = 8;
/// The page is there: retry.
pub const PAGE_RESP_SUCCESS: u32 = 0;
/// The request cannot be satisfied. (FAILURE is deliberately not in the
/// uAPI: PCIe Response Failure disables PRI for the whole function.)
pub const PAGE_RESP_INVALID: u32 = 1;

impl PageResponse {
    /// The bytes.
    pub fn to_bytes(&self) -> [u8; PAGE_RESPONSE_LEN] {
        let mut b = [0u8; PAGE_RESPONSE_LEN];
        b[0..4].copy_from_slice(&self.cookie.to_le_bytes());
        b[4..8].copy_from_slice(&self.code.to_le_bytes());
        b
    }

    /// Decodes a response (any bytes).
    pub fn from_bytes(b: &[u8; PAGE_RESPONSE_LEN]) -> Self {
        Self { cookie: u32_at(b, 0), code: u32_at(b, 4) }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtd_s1_golden_bytes() {
        let s = VtdS1 { flags: vtd_s1_flags::SRE, pgtbl_addr: 0x1234_5000, addr_width: 48, reserved: 0 };
        let b = s.to_bytes();
        assert_eq!(&b[0..8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[8..16], &[0x00, 0x50, 0x34, 0x12, 0, 0, 0, 0]);
        assert_eq!(&b[16..24], &[48, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(VtdS1::decode(&b), Ok(s));
    }

    #[test]
    fn vtd_s1_longer_block_with_zero_tail_decodes_and_nonzero_tail_is_e2big() {
        let mut v = VtdS1 { addr_width: 57, ..Default::default() }.to_bytes().to_vec();
        v.extend([0u8; 8]);
        assert!(VtdS1::decode(&v).is_ok());
        v[30] = 1;
        assert_eq!(VtdS1::decode(&v), Err(Errno::TooBig));
        assert_eq!(VtdS1::decode(&v[..23]), Err(Errno::Inval));
    }

    #[test]
    fn vtd_s1_unknown_flag_or_reserved_is_eopnotsupp() {
        let b = VtdS1 { flags: 1 << 3, ..Default::default() }.to_bytes();
        assert_eq!(VtdS1::decode(&b), Err(Errno::OpNotSupp));
        let b = VtdS1 { reserved: 1, ..Default::default() }.to_bytes();
        assert_eq!(VtdS1::decode(&b), Err(Errno::OpNotSupp));
    }

    #[test]
    fn invalidate_entry_range_and_errors() {
        let e = VtdS1Invalidate { addr: 0x2000, npages: 3, flags: VTD_INV_FLAGS_LEAF, reserved: 0 };
        assert_eq!(VtdS1Invalidate::decode(&e.to_bytes()), Ok((0x2000, 0x5000)));
        assert_eq!(VtdS1Invalidate::decode(&VtdS1Invalidate::ALL.to_bytes()), Ok((0, u64::MAX)));
        let bad = VtdS1Invalidate { addr: 0x2001, ..e };
        assert_eq!(VtdS1Invalidate::decode(&bad.to_bytes()), Err(Errno::Inval));
        let all_from = VtdS1Invalidate { addr: 0x1000, npages: u64::MAX, ..e };
        assert_eq!(VtdS1Invalidate::decode(&all_from.to_bytes()), Err(Errno::Inval));
        let flags = VtdS1Invalidate { flags: 2, ..e };
        assert_eq!(VtdS1Invalidate::decode(&flags.to_bytes()), Err(Errno::OpNotSupp));
    }

    #[test]
    fn pgfault_record_round_trips_with_reserved_zero() {
        let r =
            PgFault { flags: 3, dev_id: 7, pasid: 2048, grpid: 5, perm: 3, addr: 0xdead_b000, length: 4096, cookie: 9 };
        let b = r.to_bytes();
        assert_eq!(&b[20..24], &[0, 0, 0, 0]);
        assert_eq!(PgFault::from_bytes(&b), r);
        let p = PageResponse { cookie: 9, code: PAGE_RESP_INVALID };
        assert_eq!(PageResponse::from_bytes(&p.to_bytes()), p);
    }
}
