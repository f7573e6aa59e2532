//! Layer 1: bit-exact layouts of IOMMU structures, and nothing else.
//!
//! Every architectural structure has two views (smoltcp's Packet/Repr idea):
//!
//! * a **raw view**: a `#[repr(transparent)]` newtype over its little-endian
//!   64-bit words in the spec's word order. It accepts any bit pattern, its
//!   getters never panic, and it can show illegal bits, because a model must
//!   see them in order to fault on them. Fields are declared once, with the
//!   spec's mnemonic and absolute `hi:lo` bit range (see [`bits`]), and the
//!   reserved mask is derived from that table, never written by hand.
//! * a **typed view** (`*Repr` / enums): only legal states. The OS side
//!   encodes typed → raw (infallible, reserved bits zero); the model decodes
//!   raw → typed with the spec's validity checks.
//!
//! `Display` on a raw view decodes what it can and never fails.
//!
//! Bit ranges in docs are inclusive `hi:lo`, absolute within the structure
//! (bit 64 is bit 0 of the second qword), as in the VT-d specification.
#![forbid(unsafe_code)]

pub mod bits;
pub mod smmuv3;
pub mod vtd;
