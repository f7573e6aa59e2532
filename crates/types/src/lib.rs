//! Layer 0 of the IOMMU workspace: vocabulary every other layer shares.
//!
//! * address newtypes ([`Iova`], [`Gpa`], [`Hpa`]) and ID newtypes
//!   ([`Pasid`], [`SourceId`], [`DomainId`], ...), each with a ladder of
//!   constructors (`new` panics and says so, `try_new` returns a `Result`,
//!   `new_truncate` drops bits the way the hardware does);
//! * what a request asks for ([`Access`]) and what a mapping grants ([`Perm`]);
//! * page sizes ([`PageSize`]);
//! * the three traits through which hardware models and OS code meet the
//!   machine: [`PhysMem`] (memory), [`RegisterBus`] (MMIO) and
//!   [`InterruptSink`] (MSIs), plus [`PagedMemory`], a lock-free reference
//!   implementation of [`PhysMem`].
//!
//! Nothing here knows any vendor's vocabulary or layout.
#![forbid(unsafe_code)]

mod access;
mod addr;
mod bus;
mod ids;
mod mem;

pub use access::{Access, PageSize, Perm};
pub use addr::{Gpa, Hpa, Iova};
pub use bus::{BusError, InterruptSink, Msi, NullInterrupts, RecordingInterrupts, RegisterBus, Width};
pub use ids::{DomainId, IdError, Pasid, SourceId, StreamId, SubstreamId};
pub use mem::{MemError, PagedMemory, PhysMem, ReadOnly};
