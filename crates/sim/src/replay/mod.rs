//! Conformance replay.
//!
//! Input is JSON Lines, one case per line. A case that cannot be replayed
//! (bad JSON, an unknown op, an address outside the simulated RAM, a
//! malformed number) is a [`ReplayError`] naming the line and step; nothing
//! panics.

pub mod smmuv3;
pub mod vtd;

use serde_json::Value;

/// Why a case file could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The line is not JSON.
    #[error("line {line}: not valid JSON: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// The case is well-formed JSON but not a replayable case.
    #[error("line {line} (case {id}){step}: {msg}")]
    Case {
        /// 1-based line number.
        line: usize,
        /// Case id, or `?`.
        id: String,
        /// `, step N` when a step is at fault.
        step: String,
        /// What is wrong.
        msg: String,
    },
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) struct Ctx<'a> {
    pub line: usize,
    pub id: &'a str,
    pub step: Option<usize>,
}

impl Ctx<'_> {
    pub fn err(&self, msg: impl Into<String>) -> ReplayError {
        ReplayError::Case {
            line: self.line,
            id: self.id.to_string(),
            step: self.step.map_or(String::new(), |s| format!(", step {s}")),
            msg: msg.into(),
        }
    }
}

/// A number given as `"0x…"`, a decimal string, or a JSON integer.
pub(crate) fn num(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        }
        _ => None,
    }
}

pub(crate) fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

pub(crate) fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn hx(v: u64) -> String {
    format!("{v:#x}")
}

/// RAM size such as `"2G"`, `"512M"` or a byte count.
pub(crate) fn ram_size(v: Option<&Value>) -> Option<u64> {
    let Some(Value::String(s)) = v else { return num(v).or(Some(2 << 30)) };
    let s = s.trim();
    let (digits, mult) = match s.chars().last()? {
        'G' | 'g' => (&s[..s.len() - 1], 1u64 << 30),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'K' | 'k' => (&s[..s.len() - 1], 1 << 10),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// Largest `mem_write` / `mem_read` of one step.
pub const MAX_MEM_STEP: usize = 16 << 20;
/// Largest number of reads one `reg_poll` may make.
pub const MAX_POLL_TRIES: u64 = 10_000;

/// What a case's steps observed, in the oracles' shared shape.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    pub dma: Vec<Value>,
    pub watch: Vec<Value>,
    pub reads: Vec<Value>,
    pub polls: Vec<Value>,
}

pub(crate) fn reg_target(cx: &Ctx<'_>, s: &Value) -> Result<(u64, iommu_types::Width), ReplayError> {
    let off = num(s.get("offset")).ok_or_else(|| cx.err("register offset"))?;
    let width = match num(s.get("width")) {
        Some(32) => iommu_types::Width::W32,
        Some(64) => iommu_types::Width::W64,
        _ => return Err(cx.err("register width must be 32 or 64")),
    };
    Ok((off, width))
}

/// Runs one of the steps both oracles share (`mem_write`, `mem_read`,
/// `reg_write`, `reg_read`, `reg_poll`). Returns `false` for any other op.
pub(crate) fn common_step(
    cx: &Ctx<'_>,
    s: &Value,
    mem: &impl iommu_types::PhysMem,
    bus: &impl iommu_types::RegisterBus,
    default_tries: u64,
    obs: &mut Observed,
) -> Result<bool, ReplayError> {
    use serde_json::json;
    let op = s.get("op").and_then(Value::as_str).ok_or_else(|| cx.err("step has no op"))?;
    match op {
        "mem_write" => {
            let addr = num(s.get("addr")).ok_or_else(|| cx.err("mem_write.addr"))?;
            let data =
                s.get("hex").and_then(Value::as_str).and_then(hex_bytes).ok_or_else(|| cx.err("mem_write.hex"))?;
            if data.len() > MAX_MEM_STEP {
                return Err(cx.err("mem_write larger than 16 MiB"));
            }
            mem.write(iommu_types::Hpa::new(addr), &data).map_err(|e| cx.err(format!("mem_write outside RAM: {e}")))?;
        }
        "mem_read" => {
            let addr = num(s.get("addr")).ok_or_else(|| cx.err("mem_read.addr"))?;
            let size = num(s.get("size")).ok_or_else(|| cx.err("mem_read.size"))?;
            if size > MAX_MEM_STEP as u64 {
                return Err(cx.err("mem_read larger than 16 MiB"));
            }
            let mut buf = vec![0u8; size as usize];
            mem.read(iommu_types::Hpa::new(addr), &mut buf)
                .map_err(|e| cx.err(format!("mem_read outside RAM: {e}")))?;
            obs.watch.push(json!({"addr": s["addr"], "after_dma": obs.dma.len() as i64 - 1, "hex": hex_string(&buf)}));
        }
        "reg_write" => {
            let (off, width) = reg_target(cx, s)?;
            let value = num(s.get("value")).ok_or_else(|| cx.err("reg_write.value"))?;
            bus.write(off, width, value).map_err(|e| cx.err(e.to_string()))?;
        }
        "reg_read" => {
            let (off, width) = reg_target(cx, s)?;
            let v = bus.read(off, width).map_err(|e| cx.err(e.to_string()))?;
            obs.reads.push(json!({"offset": s["offset"], "value": hx(v)}));
        }
        "reg_poll" => {
            let (off, width) = reg_target(cx, s)?;
            let mask = num(s.get("mask")).ok_or_else(|| cx.err("reg_poll.mask"))?;
            let want = num(s.get("value")).ok_or_else(|| cx.err("reg_poll.value"))?;
            let tries = num(s.get("tries")).unwrap_or(default_tries).min(MAX_POLL_TRIES);
            let mut last = 0;
            let mut ok = false;
            for _ in 0..tries {
                last = bus.read(off, width).map_err(|e| cx.err(e.to_string()))?;
                if last & mask == want {
                    ok = true;
                    break;
                }
            }
            obs.polls.push(json!({"offset": s["offset"], "ok": ok, "last": hx(last)}));
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Replays every case of a JSON Lines stream with `case`, writing one
/// output line per case. Returns the number of cases replayed.
pub(crate) fn replay_lines(
    input: impl std::io::BufRead,
    mut out: impl std::io::Write,
    case: impl Fn(usize, &Value) -> Result<Value, ReplayError>,
) -> Result<usize, ReplayError> {
    let mut n = 0;
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|source| ReplayError::Json { line: i + 1, source })?;
        writeln!(out, "{}", case(i + 1, &v)?)?;
        n += 1;
    }
    Ok(n)
}
