//! SMMUv3 lookups and walks (SMMUv3 chapter 3 "Operation", §3.3 stream
//! and substream lookup, §3.4 translation; the VMSAv8-64 walks follow the
//! Arm ARM chapter D8).
//!
//! * [`config`]: what the implementation supports ([`Features`], from the
//!   ID registers) and the ILLEGAL checks that turn an STE or CD into a
//!   typed configuration ([`StreamCfg`], [`CdCfg`]);
//! * [`strtab`]: StreamID → STE, linear and 2-level (§3.3.1);
//! * [`cd`]: SubstreamID → CD, linear and 2-level, with S1CDMax and S1DSS
//!   (§3.3.2);
//! * [`page`]: stage-1, stage-2 and nested VMSAv8-64 walks and their
//!   permissions;
//! * [`reason`]: the one mapping from a walk or lookup fault to an event.

pub mod cd;
pub mod config;
pub mod page;
pub mod reason;
pub mod strtab;

pub use config::{CdCfg, Features, S1StreamCfg, StreamCfg, TableCfg};
pub use page::{Perms, TransFault, TransFaultKind};

/// A fault found while resolving a transaction's configuration (STE, CD),
/// before any translation table walk. Each is one event (SMMUv3 §7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigFault {
    /// StreamID outside the stream table (C_BAD_STREAMID); recorded only
    /// when CR2.RECINVSID is set.
    BadStreamId,
    /// External abort reading an L1STD or the STE (F_STE_FETCH).
    SteFetch {
        /// Address whose read failed.
        addr: u64,
    },
    /// STE not valid or ILLEGAL (C_BAD_STE).
    BadSte,
    /// STE.Config aborts the stream: no event.
    SteAbort,
    /// SubstreamID outside the CD table, or an invalid L1CD (C_BAD_SUBSTREAMID).
    BadSubstreamId,
    /// External abort reading an L1CD or the CD (F_CD_FETCH).
    CdFetch {
        /// Physical address whose read failed.
        addr: u64,
    },
    /// CD not valid or ILLEGAL (C_BAD_CD).
    BadCd,
    /// A transaction without SubstreamID on a stream whose S1DSS
    /// terminates them (F_STREAM_DISABLED).
    StreamDisabled,
}
