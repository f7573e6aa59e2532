//! Replay of VT-d conformance cases (`shared/vtd-conformance/README.md`,
//! case schema v1) against [`VtdUnit`].
//!
//! Each case runs on a fresh unit over zeroed RAM, configured with the
//! profile matching the case's QEMU properties
//! ([`VtdConfig::qemu`]). Steps run in order; after every DMA the observer
//! drains the fault log exactly as the oracle does (read FSTS and every
//! fault recording register, clear each F, clear PFO). The output line has
//! the oracle's `observed` shape.

use std::io::{BufRead, Write};

use iommu_format::vtd::regs::offset;
use iommu_hw::vtd::{DmaError, VtdConfig, VtdUnit};
use iommu_types::{Iova, NullInterrupts, PagedMemory, Pasid, RegisterBus, SourceId, Width};
use serde_json::{json, Map, Value};

use super::{common_step, hex_bytes, hex_string, hx, num, ram_size, Ctx, Observed, ReplayError};

/// Largest DMA a case may ask for (the oracle's device does 256 bytes).
pub const MAX_DMA: u64 = 1 << 20;

type Unit = VtdUnit<PagedMemory, NullInterrupts>;

/// Replays every case of a JSON Lines stream, writing one output line per
/// case. Returns the number of cases replayed.
///
/// # Errors
/// The first case that cannot be replayed, or an I/O error.
pub fn replay_stream(input: impl BufRead, out: impl Write) -> Result<usize, ReplayError> {
    super::replay_lines(input, out, replay_case)
}

/// The unit configuration for a case's QEMU properties.
pub fn config_for(props: &Map<String, Value>) -> VtdConfig {
    let on = |keys: &[&str]| keys.iter().any(|k| props.get(*k).and_then(Value::as_str) == Some("on"));
    let scalable = on(&["x-scalable-mode", "scalable-mode"]);
    let flts = on(&["x-flts", "flts", "fsts"]);
    let aw = props.get("aw-bits").and_then(|v| num(Some(v))).unwrap_or(48) as u32;
    VtdConfig::qemu(scalable, flts, aw, on(&["x-pasid-mode", "pasid-mode"]))
}

/// Replays one case and returns `{"id", "observed"}`.
///
/// # Errors
/// [`ReplayError::Case`] naming the offending step.
pub fn replay_case(line: usize, case: &Value) -> Result<Value, ReplayError> {
    let id = case.get("id").and_then(Value::as_str).unwrap_or("?");
    let mut cx = Ctx { line, id, step: None };
    if !case.is_object() {
        return Err(cx.err("a case must be a JSON object"));
    }
    let config = case.get("config").cloned().unwrap_or(Value::Null);
    let empty = Map::new();
    let props = config.get("qemu_props").and_then(Value::as_object).unwrap_or(&empty);
    let ram = ram_size(config.get("ram")).ok_or_else(|| cx.err("config.ram is not a size"))?;
    if ram > PagedMemory::MAX_SIZE {
        return Err(cx.err(format!("config.ram {ram:#x} exceeds the model's limit {:#x}", PagedMemory::MAX_SIZE)));
    }
    let unit: Unit = VtdUnit::new(config_for(props), PagedMemory::new(ram), NullInterrupts);
    let steps = case.get("steps").and_then(Value::as_array).ok_or_else(|| cx.err("no steps array"))?;

    let mut obs = Observed::default();
    for (i, s) in steps.iter().enumerate() {
        cx.step = Some(i);
        if common_step(&cx, s, unit.mem(), &unit, 100, &mut obs)? {
            continue;
        }
        match s.get("op").and_then(Value::as_str) {
            Some("dma") => {
                let d = run_dma(&cx, &unit, s)?;
                obs.dma.push(d);
            }
            Some(other) => return Err(cx.err(format!("unknown op {other:?}"))),
            None => return Err(cx.err("step has no op")),
        }
    }
    cx.step = None;
    let mut fin = Map::new();
    for (name, off) in [("GSTS", offset::GSTS), ("FSTS", offset::FSTS), ("IQH", offset::IQH), ("ICS", offset::ICS)] {
        let v = RegisterBus::read(&unit, off, Width::W32).map_err(|e| cx.err(e.to_string()))?;
        fin.insert(name.into(), Value::String(hx(v)));
    }
    Ok(json!({
        "id": id,
        "observed": {
            "dma": obs.dma, "watch": obs.watch, "reads": obs.reads, "polls": obs.polls, "final": fin,
            "cap": hx(unit.config().cap), "ecap": hx(unit.config().ecap),
        }
    }))
}

fn run_dma(cx: &Ctx<'_>, unit: &Unit, s: &Value) -> Result<Value, ReplayError> {
    let sid = num(s.get("source_id")).ok_or_else(|| cx.err("dma.source_id"))?;
    let sid = SourceId::new(u16::try_from(sid).map_err(|_| cx.err("dma.source_id wider than 16 bits"))?);
    let pasid = match s.get("pasid") {
        None | Some(Value::Null) => None,
        v => {
            let p = num(v).ok_or_else(|| cx.err("dma.pasid"))?;
            Some(
                Pasid::try_new(p as u32)
                    .ok()
                    .filter(|_| p >> 20 == 0)
                    .ok_or_else(|| cx.err("dma.pasid wider than 20 bits"))?,
            )
        }
    };
    let iova = Iova::new(num(s.get("iova")).ok_or_else(|| cx.err("dma.iova"))?);
    let size = num(s.get("size")).ok_or_else(|| cx.err("dma.size"))?;
    if size > MAX_DMA {
        return Err(cx.err("dma larger than 1 MiB"));
    }
    let dir = s.get("dir").and_then(Value::as_str).ok_or_else(|| cx.err("dma.dir"))?;
    let mut data_read = None;
    match dir {
        "write" => {
            let data = s.get("data").and_then(Value::as_str).and_then(hex_bytes).ok_or_else(|| cx.err("dma.data"))?;
            if data.len() as u64 != size {
                return Err(cx.err("dma.data length differs from dma.size"));
            }
            dma_outcome(unit.dma_write(sid, pasid, iova, &data));
        }
        "read" => {
            let mut buf = vec![0u8; size as usize];
            dma_outcome(unit.dma_read(sid, pasid, iova, &mut buf));
            data_read = Some(hex_string(&buf));
        }
        other => return Err(cx.err(format!("dma.dir {other:?} is neither read nor write"))),
    }
    let (fsts, faults) = drain_faults(cx, unit)?;
    let mut d = json!({"fsts": hx(fsts), "faults": faults});
    if let Some(h) = data_read {
        d["data_read"] = Value::String(h);
    }
    Ok(d)
}

/// A DMA outcome is observed through the fault log and memory, as on the
/// oracle; the error value itself is not part of the observation.
fn dma_outcome(_r: Result<(), DmaError>) {}

/// The observer protocol: read FSTS and every fault recording register
/// (FRO/NFR from CAP), record and clear each valid record, clear PFO.
fn drain_faults(cx: &Ctx<'_>, unit: &Unit) -> Result<(u64, Vec<Value>), ReplayError> {
    let rd = |off, w| RegisterBus::read(unit, off, w).map_err(|e| cx.err(e.to_string()));
    let cap = rd(offset::CAP, Width::W64)?;
    let fro = ((cap >> 24) & 0x3FF) * 16;
    let nfr = ((cap >> 40) & 0xFF) + 1;
    let fsts = rd(offset::FSTS, Width::W32)?;
    let mut recs = Vec::new();
    for i in 0..nfr {
        let lo = rd(fro + 16 * i, Width::W64)?;
        let hi = rd(fro + 16 * i + 8, Width::W64)?;
        if hi >> 63 != 0 {
            recs.push(json!({
                "index": i,
                "reason": hx((hi >> 32) & 0xFF),
                "fault_addr": hx(lo & !0xFFF),
                "source_id": hx(hi & 0xFFFF),
                "type": if (hi >> 62) & 1 != 0 { "read" } else { "write" },
                "pasid_present": (hi >> 31) & 1 != 0,
                "pasid": hx((hi >> 40) & 0xF_FFFF),
                "raw_hi": hx(hi), "raw_lo": hx(lo),
            }));
            RegisterBus::write(unit, fro + 16 * i + 8, Width::W64, 1 << 63).map_err(|e| cx.err(e.to_string()))?;
        }
    }
    if fsts & 1 != 0 {
        RegisterBus::write(unit, offset::FSTS, Width::W32, 1).map_err(|e| cx.err(e.to_string()))?;
    }
    Ok((fsts, recs))
}
