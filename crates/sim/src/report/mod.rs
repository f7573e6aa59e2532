//! What a scenario run produced, in one serialisable value, and its
//! renderings: readable text tables ([`text`]), JSON (serde), and a
//! self-contained HTML page with charts ([`html`]).

pub mod html;
pub mod text;

use serde::Serialize;

/// Most DMA and fault rows a report keeps (long generated runs keep
/// counting but stop listing).
pub const MAX_ROWS: usize = 2_000;
/// Most trace lines a report keeps.
pub const MAX_TRACE: usize = 200_000;

/// A whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Where it came from.
    pub origin: String,
    /// What it shows.
    pub description: String,
    /// Every expectation held and no invariant was violated.
    pub ok: bool,
    /// Steps whose expectation did not hold.
    pub failed_steps: usize,
    /// Setup problems (the machine could not be built as described).
    pub setup_errors: Vec<String>,
    /// One row per step.
    pub steps: Vec<StepRecord>,
    /// Attachments over time.
    pub bindings: Vec<BindingSpan>,
    /// DMAs.
    pub dma: DmaSummary,
    /// DMAs that did not complete, and page requests that were not
    /// answered with success.
    pub faults: Vec<FaultRow>,
    /// Page-request traffic.
    pub page_requests: PageRequests,
    /// Cache statistics of the host unit at the end.
    pub caches: Vec<CacheRow>,
    /// IOTLB and device-TLB counters after each step (hit-rate chart).
    pub cache_timeline: Vec<CachePoint>,
    /// The invariant checkers.
    pub invariants: Vec<InvariantReport>,
    /// Hardware-visible actions in order (with `--trace`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<TraceLine>,
    /// Trace lines not kept (beyond [`MAX_TRACE`]).
    #[serde(skip_serializing_if = "is_zero")]
    pub trace_dropped: u64,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

/// One step.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// 1-based step number.
    pub step: usize,
    /// Line of the step in the scenario file.
    pub line: usize,
    /// The operation, summarised.
    pub op: String,
    /// What was expected.
    pub expected: String,
    /// What happened.
    pub got: String,
    /// Whether they agree.
    pub ok: bool,
    /// The scenario's note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An attachment of a (device, PASID) over a range of steps.
#[derive(Debug, Clone, Serialize)]
pub struct BindingSpan {
    /// Device name.
    pub device: String,
    /// PASID (`None`: the RID).
    pub pasid: Option<u32>,
    /// What is attached.
    pub target: String,
    /// First step it was seen after (0: setup).
    pub from_step: usize,
    /// Step after which it was gone (`None`: still there at the end).
    pub to_step: Option<usize>,
}

/// DMA totals and rows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DmaSummary {
    /// DMAs issued (one per operation or generated access).
    pub total: u64,
    /// Completed.
    pub completed: u64,
    /// Refused (fault, negative page response, refused request).
    pub refused: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// The first [`MAX_ROWS`] DMAs.
    pub rows: Vec<DmaRow>,
}

/// One DMA.
#[derive(Debug, Clone, Serialize)]
pub struct DmaRow {
    /// Step.
    pub step: usize,
    /// Device name (and VM when issued by a guest's device).
    pub device: String,
    /// PASID the device used (guest PASID inside a VM).
    pub pasid: Option<u32>,
    /// Address.
    pub addr: u64,
    /// Length.
    pub len: usize,
    /// Write (else read).
    pub write: bool,
    /// Outcome.
    pub outcome: String,
    /// Host-physical address of the first byte, when it completed.
    pub hpa: Option<u64>,
    /// Completed.
    pub ok: bool,
}

/// A DMA that did not complete.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRow {
    /// Step.
    pub step: usize,
    /// Device.
    pub device: String,
    /// PASID.
    pub pasid: Option<u32>,
    /// Address.
    pub addr: u64,
    /// Why: the fault reason, or the page response.
    pub reason: String,
}

/// Page-request traffic of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageRequests {
    /// Page requests devices sent.
    pub sent: u64,
    /// Answered with success.
    pub success: u64,
    /// Answered otherwise (invalid request, failure) or not at all.
    pub refused: u64,
    /// Faults the unit recorded in its fault log.
    pub faults_recorded: u64,
}

/// One cache's counters.
#[derive(Debug, Clone, Serialize)]
pub struct CacheRow {
    /// Which cache.
    pub cache: String,
    /// Capacity in entries.
    pub capacity: usize,
    /// Hits.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Fills.
    pub fills: u64,
    /// Evictions.
    pub evictions: u64,
}

/// Cumulative counters after a step.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CachePoint {
    /// Step.
    pub step: usize,
    /// IOTLB hits so far.
    pub iotlb_hits: u64,
    /// IOTLB misses so far.
    pub iotlb_misses: u64,
    /// Device-TLB hits so far.
    pub devtlb_hits: u64,
    /// Device-TLB misses so far.
    pub devtlb_misses: u64,
}

/// One checker.
#[derive(Debug, Clone, Serialize)]
pub struct InvariantReport {
    /// Its name.
    pub name: String,
    /// What it checks.
    pub checks: String,
    /// Switched on in the scenario.
    pub enabled: bool,
    /// Individual checks made.
    pub checked: u64,
    /// Violations found.
    pub violations: Vec<Violation>,
}

/// One violation.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Step after which it was found (0: setup; steps + 1: the end).
    pub step: usize,
    /// Line of that step.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One hardware-visible action.
#[derive(Debug, Clone, Serialize)]
pub struct TraceLine {
    /// Step (0: setup).
    pub step: usize,
    /// Who acted: `host`, a VM's guest kernel, the VMM, a device.
    pub actor: String,
    /// What happened.
    pub event: String,
}

impl Report {
    /// Violations over every checker.
    pub fn violations(&self) -> usize {
        self.invariants.iter().map(|i| i.violations.len()).sum()
    }
}
