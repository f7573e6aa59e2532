//! Replay of SMMUv3 conformance cases (`shared/smmuv3-conformance/
//! README.md`, case schema `smmuv3-oracle-case/v1`) against [`Smmu`].
//!
//! Each case runs on a fresh SMMU with the profile of the case's
//! `config.smmu` ([`SmmuConfig::qemu`]) over zeroed RAM at the case's
//! base and size; addresses outside it are unbacked. Steps run in order.
//! Around every DMA the observer does what the oracle does: it reads
//! EVENTQ_PROD before and after, decodes the records in between with the
//! oracle's per-event field table, reads GERROR, and (unless
//! `observer.drain_events` is false) writes EVENTQ_CONS := EVENTQ_PROD. A
//! device read lands in a buffer pre-filled with 0xEE, as on the oracle.

use std::io::{BufRead, Write};

use iommu_format::smmuv3::regs::offset as o;
use iommu_hw::smmuv3::{DmaError, QemuStages, Smmu, SmmuConfig};
use iommu_types::{Hpa, MemError, NullInterrupts, PagedMemory, PhysMem, RegisterBus, StreamId, Width};
use serde_json::{json, Map, Value};

use super::{common_step, hex_bytes, hex_string, hx, num, ram_size, Ctx, Observed, ReplayError};

/// Largest DMA a case may ask for.
pub const MAX_DMA: u64 = 1 << 20;

/// RAM `[base, base + size)`; everything else is unbacked.
#[derive(Debug)]
pub struct Ram {
    base: u64,
    inner: PagedMemory,
}

impl Ram {
    /// Zeroed RAM at `base` of `size` bytes.
    pub fn new(base: u64, size: u64) -> Self {
        Self { base, inner: PagedMemory::new(base.saturating_add(size).min(PagedMemory::MAX_SIZE)) }
    }

    fn check(&self, addr: Hpa) -> Result<(), MemError> {
        if addr.raw() < self.base {
            Err(MemError::Unbacked(addr))
        } else {
            Ok(())
        }
    }
}

impl PhysMem for Ram {
    fn read(&self, addr: Hpa, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(addr)?;
        self.inner.read(addr, buf)
    }
    fn write(&self, addr: Hpa, data: &[u8]) -> Result<(), MemError> {
        self.check(addr)?;
        self.inner.write(addr, data)
    }
    fn compare_exchange_u64(&self, addr: Hpa, current: u64, new: u64) -> Result<Result<u64, u64>, MemError> {
        self.check(addr)?;
        self.inner.compare_exchange_u64(addr, current, new)
    }
}

type Unit = Smmu<Ram, NullInterrupts>;

/// Replays every case of a JSON Lines stream, writing one output line per
/// case. Returns the number of cases replayed.
///
/// # Errors
/// The first case that cannot be replayed, or an I/O error.
pub fn replay_stream(input: impl BufRead, out: impl Write) -> Result<usize, ReplayError> {
    super::replay_lines(input, out, replay_case)
}

/// The profile for a case's `config.smmu`.
pub fn config_for(smmu: Option<&str>) -> Option<SmmuConfig> {
    Some(SmmuConfig::qemu(match smmu.unwrap_or("nested") {
        "nested" => QemuStages::Nested,
        "s1only" => QemuStages::S1Only,
        "s2only" => QemuStages::S2Only,
        _ => return None,
    }))
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
    let cfg = config_for(config.get("smmu").and_then(Value::as_str))
        .ok_or_else(|| cx.err("config.smmu must be nested, s1only or s2only"))?;
    let ram = config.get("ram").cloned().unwrap_or(Value::Null);
    let base = num(ram.get("base")).unwrap_or(0x4000_0000);
    let size = ram_size(ram.get("size")).ok_or_else(|| cx.err("config.ram.size is not a size"))?;
    if base.saturating_add(size) > PagedMemory::MAX_SIZE {
        return Err(cx.err(format!("config.ram ends beyond the model's limit {:#x}", PagedMemory::MAX_SIZE)));
    }
    let drain = config.get("observer").and_then(|o| o.get("drain_events")).and_then(Value::as_bool).unwrap_or(true);
    let unit: Unit = Smmu::new(cfg, Ram::new(base, size), NullInterrupts);
    let steps = case.get("steps").and_then(Value::as_array).ok_or_else(|| cx.err("no steps array"))?;
    let mut obs = Observed::default();
    for (i, s) in steps.iter().enumerate() {
        cx.step = Some(i);
        if common_step(&cx, s, unit.mem(), &unit, 20, &mut obs)? {
            continue;
        }
        match s.get("op").and_then(Value::as_str) {
            Some("dma") => {
                let d = run_dma(&cx, &unit, s, drain)?;
                obs.dma.push(d);
            }
            Some(other) => return Err(cx.err(format!("unknown op {other:?}"))),
            None => return Err(cx.err("step has no op")),
        }
    }
    cx.step = None;
    let rd = |off| RegisterBus::read(&unit, off, Width::W32).map_err(|e| cx.err(e.to_string()));
    let mut fin = Map::new();
    for (name, off) in [
        ("CR0", o::CR0),
        ("CR0ACK", o::CR0ACK),
        ("CR2", o::CR2),
        ("GBPA", o::GBPA),
        ("GERROR", o::GERROR),
        ("GERRORN", o::GERRORN),
        ("STRTAB_BASE_CFG", o::STRTAB_BASE_CFG),
        ("CMDQ_PROD", o::CMDQ_PROD),
        ("CMDQ_CONS", o::CMDQ_CONS),
        ("EVENTQ_PROD", o::EVENTQ_PROD),
        ("EVENTQ_CONS", o::EVENTQ_CONS),
    ] {
        fin.insert(name.into(), Value::String(hx(rd(off)?)));
    }
    let mut idr = Map::new();
    for (name, off) in [("IDR0", o::IDR0), ("IDR1", o::IDR1), ("IDR3", o::IDR3), ("IDR5", o::IDR5), ("AIDR", o::AIDR)] {
        idr.insert(name.into(), Value::String(hx(rd(off)?)));
    }
    Ok(json!({
        "id": id,
        "observed": {"dma": obs.dma, "watch": obs.watch, "reads": obs.reads, "polls": obs.polls, "final": fin, "idr": idr}
    }))
}

fn run_dma(cx: &Ctx<'_>, unit: &Unit, s: &Value, drain: bool) -> Result<Value, ReplayError> {
    let sid = num(s.get("stream_id")).ok_or_else(|| cx.err("dma.stream_id"))?;
    let sid = StreamId(u32::try_from(sid).map_err(|_| cx.err("dma.stream_id wider than 32 bits"))?);
    let ssid = match s.get("ssid") {
        None | Some(Value::Null) => None,
        v => {
            let x = num(v).ok_or_else(|| cx.err("dma.ssid"))?;
            Some(
                iommu_types::SubstreamId::try_new(u32::try_from(x).unwrap_or(u32::MAX))
                    .map_err(|_| cx.err("dma.ssid wider than 20 bits"))?,
            )
        }
    };
    let iova = num(s.get("iova")).ok_or_else(|| cx.err("dma.iova"))?;
    let size = num(s.get("size")).ok_or_else(|| cx.err("dma.size"))?;
    if size > MAX_DMA {
        return Err(cx.err("dma larger than 1 MiB"));
    }
    let rd = |off| RegisterBus::read(unit, off, Width::W32).map_err(|e| cx.err(e.to_string()));
    let before = rd(o::EVENTQ_PROD)?;
    let mut data_read = None;
    match s.get("dir").and_then(Value::as_str) {
        Some("write") => {
            let data = s.get("data").and_then(Value::as_str).and_then(hex_bytes).ok_or_else(|| cx.err("dma.data"))?;
            if data.len() as u64 != size {
                return Err(cx.err("dma.data length differs from dma.size"));
            }
            // The outcome is observed through the event queue and memory.
            let _ = unit.dma_write(sid, ssid, iova, &data);
        }
        Some("read") => {
            let mut buf = vec![0xEEu8; size as usize];
            // The oracle's device (edu) stores zeros for the part of a read
            // that did not complete.
            if let Err(e) = unit.dma_read(sid, ssid, iova, &mut buf) {
                let done = match e {
                    DmaError::Terminated { done, .. } => done,
                    DmaError::Unbacked { .. } => 0,
                };
                let n = buf.len();
                buf[done.min(n)..].fill(0);
            }
            data_read = Some(hex_string(&buf));
        }
        other => return Err(cx.err(format!("dma.dir {other:?} is neither read nor write"))),
    }
    let after = rd(o::EVENTQ_PROD)?;
    let events = read_events(unit, before, after).map_err(|e| cx.err(e))?;
    let gerror = rd(o::GERROR)?;
    if drain {
        RegisterBus::write(unit, o::EVENTQ_CONS, Width::W32, after & (0xF_FFFF | 1 << 31))
            .map_err(|e| cx.err(e.to_string()))?;
    }
    let mut d = json!({"events": events, "eventq_prod": hx(after), "gerror": hx(gerror)});
    if let Some(h) = data_read {
        d["data_read"] = Value::String(h);
    }
    Ok(d)
}

/// The records between two EVENTQ_PROD values, decoded as the oracle does.
fn read_events(unit: &Unit, before: u64, after: u64) -> Result<Vec<Value>, String> {
    let base_reg = RegisterBus::read(unit, o::EVENTQ_BASE, Width::W64).map_err(|e| e.to_string())?;
    let log2 = (base_reg & 0x1F).min(19);
    let size = 32u64 << log2;
    let base = base_reg & 0x00FF_FFFF_FFFF_FFE0 & !(size.max(32) - 1);
    let wmask = (2u64 << log2) - 1;
    let n = ((after & wmask).wrapping_sub(before & wmask)) & wmask;
    let mut out = Vec::new();
    for k in 0..n {
        let idx = ((before & wmask) + k) & ((1 << log2) - 1);
        let mut raw = [0u8; 32];
        // An unreadable record is reported as zeros, as a bus read of
        // unbacked memory would return.
        let _ = unit.mem().read(Hpa::new(base + 32 * idx), &mut raw);
        out.push(decode_event(&raw));
    }
    Ok(out)
}

/// The oracle's observer decoding: per event number, the architectural
/// fields it defines (IHI 0070 §7.3); bits outside them as `extra_bits`.
pub fn decode_event(raw: &[u8; 32]) -> Value {
    let q: [u64; 4] =
        core::array::from_fn(|i| u64::from_le_bytes(raw[8 * i..8 * i + 8].try_into().unwrap_or_default()));
    let gm = |hi: u32, lo: u32| -> u64 { (u64::MAX >> (63 - hi)) & !((1u64 << lo) - 1) };
    let eid = (q[0] & 0xFF) as u8;
    let name = iommu_format::smmuv3::event::EventId::from_u8(eid).map_or("UNKNOWN", |e| e.name());
    let mut ev = Map::new();
    ev.insert("id".into(), json!(hx(eid as u64)));
    ev.insert("name".into(), json!(name));
    ev.insert("sid".into(), json!(hx(q[0] >> 32)));
    const SSID: &[(&str, usize, u32, u32)] = &[("ssv", 0, 11, 11), ("ssid", 0, 31, 12)];
    const ATTR: &[(&str, usize, u32, u32)] = &[
        ("stag", 1, 15, 0),
        ("stall", 1, 31, 31),
        ("pnu", 1, 33, 33),
        ("ind", 1, 34, 34),
        ("rnw", 1, 35, 35),
        ("s2", 1, 39, 39),
        ("class", 1, 41, 40),
    ];
    let fetch = ("fetch_addr", 3usize, 51u32, 3u32);
    let input = ("input_addr", 2usize, 63u32, 0u32);
    let ipa = ("ipa", 3usize, 51u32, 12u32);
    let mut fields: Vec<(&str, usize, u32, u32)> = Vec::new();
    match eid {
        0x02 | 0x04 | 0x0A => fields.extend_from_slice(SSID),
        0x03 | 0x09 => {
            fields.extend_from_slice(SSID);
            fields.push(fetch);
        }
        0x07 => fields.extend_from_slice(&[("rnw", 1, 35, 35), input]),
        0x08 => fields.push(("ssid", 0, 31, 12)),
        0x0B => {
            fields.extend_from_slice(SSID);
            fields.extend_from_slice(ATTR);
            fields.extend_from_slice(&[input, fetch]);
        }
        0x10..=0x13 => {
            fields.extend_from_slice(SSID);
            fields.extend_from_slice(ATTR);
            if eid == 0x13 {
                fields.push(("ttrnw", 1, 44, 44));
            }
            fields.extend_from_slice(&[input, ipa]);
        }
        _ => {}
    }
    let mut used = [gm(7, 0) | gm(63, 32), 0, 0, 0];
    for (name, qi, hi, lo) in fields {
        let m = gm(hi, lo);
        used[qi] |= m;
        let v = q[qi] & m;
        let val = match name {
            "input_addr" | "ipa" | "fetch_addr" => json!(hx(v)),
            "class" => json!(["CD", "TT", "IN", "RSVD"][(v >> lo) as usize & 3]),
            _ => json!(v >> lo),
        };
        ev.insert(name.into(), val);
    }
    let extra: Vec<u64> = (0..4).map(|i| q[i] & !used[i]).collect();
    if extra.iter().any(|x| *x != 0) {
        ev.insert("extra_bits".into(), json!(extra.iter().map(|x| hx(*x)).collect::<Vec<_>>()));
    }
    ev.insert("raw".into(), json!(hex_string(raw)));
    Value::Object(ev)
}
