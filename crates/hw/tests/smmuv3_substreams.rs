//! SubstreamID paths and device-facing features of the SMMUv3 model that
//! QEMU cannot check (its SMMU has SSIDSIZE = 0, no ATS, PRI or stalls),
//! tested against the specification: S1CDMax bounds, 2-level CD tables,
//! the three S1DSS behaviours, C_BAD_SUBSTREAMID (also for any SubstreamID
//! on a stream without stage 1, §3.9), ATC invalidation by SubstreamID,
//! PRI request → response (and overflow auto-responses),
//! stall → CMD_RESUME; and the TLB: stale hits without invalidation, none
//! after it, and the permission check on every kind of TLB hit.
//!
//! Everything is programmed through memory and registers, as a driver does.

use iommu_format::smmuv3::cd::{Cd, L1Cd};
use iommu_format::smmuv3::cmd::{Command, PriResponse, ResumeAction, SyncCompletion, TlbiRange};
use iommu_format::smmuv3::desc::{S1Desc, S2Desc};
use iommu_format::smmuv3::event::{Event, EventId, EventRecord};
use iommu_format::smmuv3::pri::{PageRequest, PriEntry};
use iommu_format::smmuv3::regs::offset as o;
use iommu_format::smmuv3::ste::Ste;
use iommu_hw::smmuv3::{AtsCompletion, AuditedCache, PriOutcome, Request, Smmu, SmmuConfig};
use iommu_types::{Access, Hpa, NullInterrupts, PagedMemory, PhysMem, RegisterBus, StreamId, SubstreamId, Width};

const STRTAB: u64 = 0x1_0000;
const CMDQ: u64 = 0x2_0000;
const EVTQ: u64 = 0x3_0000;
const PRIQ: u64 = 0x4_0000;
const CDS: u64 = 0x10_0000;
const TABLES: u64 = 0x20_0000;
const DATA: u64 = 0x80_0000;
const SID: StreamId = StreamId(5);
const VMID: u16 = 7;

fn ssid(v: u32) -> Option<SubstreamId> {
    Some(SubstreamId::try_new(v).unwrap())
}

struct Rig {
    smmu: Smmu<PagedMemory, NullInterrupts>,
    prod: u32,
    evt_cons: u32,
    next_table: u64,
}

impl Rig {
    /// A full-featured SMMU, brought up with a 64-entry linear stream
    /// table, 32-entry command and event queues and a 4-entry PRI queue.
    fn new() -> Self {
        let smmu = Smmu::new(SmmuConfig::full(), PagedMemory::new(16 << 20), NullInterrupts);
        let w = |off, v| RegisterBus::write(&smmu, off, Width::W64, v).unwrap();
        let w32 = |off, v| RegisterBus::write(&smmu, off, Width::W32, v).unwrap();
        w(o::STRTAB_BASE, STRTAB);
        w32(o::STRTAB_BASE_CFG, 6);
        w(o::CMDQ_BASE, CMDQ | 5);
        w(o::EVENTQ_BASE, EVTQ | 5);
        w(o::PRIQ_BASE, PRIQ | 2);
        w32(o::CR2, 2);
        w32(o::CR0, 0b1110);
        let mut r = Self { smmu, prod: 0, evt_cons: 0, next_table: TABLES };
        r.cmds(&[Command::cfgi_all(), Command::TlbiNsnhAll]);
        RegisterBus::write(&r.smmu, o::CR0, Width::W32, 0b1111).unwrap();
        r
    }

    fn mem(&self) -> &PagedMemory {
        self.smmu.mem()
    }

    /// Submits `cmds` and a CMD_SYNC; asserts the queue drained without error.
    fn cmds(&mut self, cmds: &[Command]) {
        let sync = Command::Sync { cs: SyncCompletion::SigNone, msh: 0, msiattr: 0, msi_data: 0, msi_addr: 0 };
        for c in cmds.iter().chain([&sync]) {
            let w = c.encode();
            let at = CMDQ + 16 * (self.prod & 31) as u64;
            self.mem().write_u64(Hpa::new(at), w[0]).unwrap();
            self.mem().write_u64(Hpa::new(at + 8), w[1]).unwrap();
            self.prod = (self.prod + 1) & 63;
        }
        RegisterBus::write(&self.smmu, o::CMDQ_PROD, Width::W32, self.prod as u64).unwrap();
        let cons = RegisterBus::read(&self.smmu, o::CMDQ_CONS, Width::W32).unwrap();
        assert_eq!(cons, self.prod as u64, "command queue drained without error");
    }

    /// Events recorded since the last call.
    fn events(&mut self) -> Vec<Event> {
        let prod = RegisterBus::read(&self.smmu, o::EVENTQ_PROD, Width::W32).unwrap() as u32 & 63;
        let mut out = Vec::new();
        while self.evt_cons != prod {
            let mut b = [0u8; 32];
            self.mem().read(Hpa::new(EVTQ + 32 * (self.evt_cons & 31) as u64), &mut b).unwrap();
            out.push(EventRecord::from_bytes(&b).decode().unwrap());
            self.evt_cons = (self.evt_cons + 1) & 63;
        }
        RegisterBus::write(&self.smmu, o::EVENTQ_CONS, Width::W32, self.evt_cons as u64).unwrap();
        out
    }

    fn table(&mut self) -> u64 {
        let t = self.next_table;
        self.next_table += 0x1000;
        t
    }

    /// Maps a 4 KiB page in a 4-level 4K tree rooted at `root` (48-bit
    /// input); `leaf` is the descriptor's attribute bits.
    fn map(&mut self, root: u64, input: u64, out: u64, leaf: u64, stage1: bool) {
        let mut table = root;
        for level in 0..3u32 {
            let at = table + 8 * ((input >> (39 - 9 * level)) & 0x1FF);
            let d = self.mem().read_u64(Hpa::new(at)).unwrap();
            table = if d & 1 != 0 {
                d & 0xFFFF_FFFF_F000
            } else {
                let t = self.table();
                let desc = if stage1 { S1Desc::table(t).words()[0] } else { S2Desc::table(t).words()[0] };
                self.mem().write_u64(Hpa::new(at), desc).unwrap();
                t
            };
        }
        self.mem().write_u64(Hpa::new(table + 8 * ((input >> 12) & 0x1FF)), out | leaf).unwrap();
    }

    fn write_ste(&self, ste: Ste) {
        for (i, w) in ste.words().iter().enumerate() {
            self.mem().write_u64(Hpa::new(STRTAB + 64 * SID.0 as u64 + 8 * i as u64), *w).unwrap();
        }
    }

    fn write_cd(&self, at: u64, cd: Cd) {
        for (i, w) in cd.words().iter().enumerate() {
            self.mem().write_u64(Hpa::new(at + 8 * i as u64), *w).unwrap();
        }
    }

    fn dma(&self, ssid: Option<SubstreamId>, addr: u64, access: Access) -> Result<u64, iommu_hw::smmuv3::Terminated> {
        self.smmu.translate(&Request { sid: SID, ssid, addr, access }).map(|t| t.pa)
    }
}

/// A CD with a 48-bit TTB0 tree at `ttb0`, 4K granule, ASID `asid`.
fn cd(asid: u16, ttb0: u64) -> Cd {
    Cd::default()
        .with(Cd::T0SZ, 16)
        .with(Cd::EPD1, 1)
        .with(Cd::V, 1)
        .with(Cd::IPS, 5)
        .with(Cd::AA64, 1)
        .with(Cd::R, 1)
        .with(Cd::A, 1)
        .with(Cd::ASID, asid as u64)
        .with_in_place(Cd::TTB0, ttb0)
}

/// A stage-1 STE over a CD table at `ptr` with `cdmax`, `fmt`, `dss`.
fn ste_s1(ptr: u64, fmt: u64, cdmax: u64, dss: u64) -> Ste {
    Ste::default()
        .with(Ste::V, 1)
        .with(Ste::CONFIG, 5)
        .with(Ste::S1FMT, fmt)
        .with_in_place(Ste::S1CONTEXTPTR, ptr)
        .with(Ste::S1CDMAX, cdmax)
        .with(Ste::S1DSS, dss)
        .with(Ste::EATS, 1)
        .with(Ste::S2VMID, VMID as u64)
}

/// Leaf bits: a valid page, AP = EL0 read/write, AF.
const RW_PAGE: u64 = 0b11 | 1 << 6 | 3 << 8 | 1 << 10 | 1 << 11;
/// Leaf bits: as [`RW_PAGE`] but read-only (AP[2]).
const RO_PAGE: u64 = RW_PAGE | 1 << 7;
/// Stage-2 leaf bits: valid page, S2AP read/write, AF.
const S2_RW: u64 = 0b11 | 0xF << 2 | 3 << 6 | 3 << 8 | 1 << 10;
/// Stage-2 leaf bits: read-only.
const S2_RO: u64 = 0b11 | 0xF << 2 | 1 << 6 | 3 << 8 | 1 << 10;

/// A rig with `n` CDs in a linear table, CD i mapping 0x1000_0000 to DATA + i pages.
fn linear_cds(n: u64, cdmax: u64, dss: u64) -> Rig {
    let mut r = Rig::new();
    for i in 0..n {
        let root = r.table();
        r.map(root, 0x1000_0000, DATA + i * 0x1000, RW_PAGE, true);
        r.write_cd(CDS + 64 * i, cd(100 + i as u16, root));
    }
    r.write_ste(ste_s1(CDS, 0, cdmax, dss));
    r
}

fn event_ids(evs: &[Event]) -> Vec<EventId> {
    evs.iter().map(|e| e.id).collect()
}

#[test]
fn s1cdmax_admits_the_last_substream_and_rejects_the_next() {
    let mut r = linear_cds(8, 3, 0);
    assert_eq!(r.dma(ssid(7), 0x1000_0010, Access::WRITE), Ok(DATA + 7 * 0x1000 + 0x10));
    assert!(r.dma(ssid(8), 0x1000_0010, Access::WRITE).is_err());
    let evs = r.events();
    assert_eq!(event_ids(&evs), [EventId::CBadSubstreamid]);
    assert_eq!(evs[0].ssid, ssid(8));
}

#[test]
fn a_single_cd_stream_rejects_substream_tagged_transactions() {
    let mut r = linear_cds(1, 0, 0);
    assert_eq!(r.dma(None, 0x1000_0000, Access::READ), Ok(DATA));
    assert!(r.dma(ssid(0), 0x1000_0000, Access::READ).is_err());
    assert_eq!(event_ids(&r.events()), [EventId::CBadSubstreamid]);
}

#[test]
fn s1dss_terminate_gives_f_stream_disabled_for_untagged_transactions() {
    let mut r = linear_cds(4, 2, 0);
    assert!(r.dma(None, 0x1000_0000, Access::READ).is_err());
    assert_eq!(event_ids(&r.events()), [EventId::FStreamDisabled]);
    assert_eq!(r.dma(ssid(1), 0x1000_0000, Access::READ), Ok(DATA + 0x1000));
}

#[test]
fn s1dss_bypass_passes_untagged_transactions_through_stage_1() {
    let mut r = linear_cds(4, 2, 1);
    assert_eq!(r.dma(None, 0x1234_5678, Access::WRITE), Ok(0x1234_5678));
    assert_eq!(r.dma(ssid(2), 0x1000_0000, Access::READ), Ok(DATA + 0x2000));
    assert!(r.events().is_empty());
}

#[test]
fn s1dss_substream0_gives_cd0_to_untagged_and_refuses_tagged_ssid0() {
    let mut r = linear_cds(4, 2, 2);
    assert_eq!(r.dma(None, 0x1000_0000, Access::READ), Ok(DATA));
    assert!(r.dma(ssid(0), 0x1000_0000, Access::READ).is_err());
    assert_eq!(event_ids(&r.events()), [EventId::CBadSubstreamid]);
    assert_eq!(r.dma(ssid(3), 0x1000_0000, Access::READ), Ok(DATA + 0x3000));
}

#[test]
fn cfgi_cd_of_cd0_refreshes_untagged_transactions_under_s1dss_substream0_only() {
    let mut r = linear_cds(4, 2, 2);
    assert_eq!(r.dma(None, 0x1000_0000, Access::READ), Ok(DATA));
    assert_eq!(r.dma(ssid(1), 0x1000_0000, Access::READ), Ok(DATA + 0x1000));
    // Rewrite CD 0 and CD 1 to use CD 3's tables under fresh ASIDs.
    let root3 = r.mem().read_u64(Hpa::new(CDS + 64 * 3 + 8)).unwrap() & 0xFFFF_FFFF_FFF0;
    r.write_cd(CDS, cd(200, root3));
    r.write_cd(CDS + 64, cd(201, root3));
    // Without CFGI both keep their cached CD (SMMUv3 §16.2 permits it).
    assert_eq!(r.dma(None, 0x1000_0000, Access::READ), Ok(DATA));
    // CFGI_CD names CD 0, which untagged transactions use here (§5.2 S1DSS).
    let sub0 = SubstreamId::try_new(0).unwrap();
    r.cmds(&[Command::CfgiCd { sid: SID, ssid: sub0, leaf: true }]);
    assert_eq!(r.dma(None, 0x1000_0000, Access::READ), Ok(DATA + 0x3000));
    assert_eq!(r.dma(ssid(1), 0x1000_0000, Access::READ), Ok(DATA + 0x1000), "CD 1 stays cached");
}

/// 2-level CD table (S1Fmt) with `split`-bit leaves: SSID `s` uses L1
/// entry s >> split; only the leaf for `present` exists.
fn two_level(fmt: u64, split: u32, present: u32) -> Rig {
    let mut r = Rig::new();
    let leaf = CDS + 0x1_0000;
    r.mem().write_u64(Hpa::new(CDS + 8 * (present >> split) as u64), L1Cd::new(leaf).words()[0]).unwrap();
    let root = r.table();
    r.map(root, 0x1000_0000, DATA, RW_PAGE, true);
    r.write_cd(leaf + 64 * (present & ((1 << split) - 1)) as u64, cd(9, root));
    r.write_ste(ste_s1(CDS, fmt, 12, 0));
    r
}

#[test]
fn two_level_cd_table_with_4k_leaves_resolves_through_its_l1cd() {
    let mut r = two_level(1, 6, 70);
    assert_eq!(r.dma(ssid(70), 0x1000_0000, Access::READ), Ok(DATA));
    // SSID 200 uses L1 entry 3, which is not valid.
    assert!(r.dma(ssid(200), 0x1000_0000, Access::READ).is_err());
    assert_eq!(event_ids(&r.events()), [EventId::CBadSubstreamid]);
}

#[test]
fn two_level_cd_table_with_64k_leaves_indexes_1024_cds_per_leaf() {
    let mut r = two_level(2, 10, 1500);
    assert_eq!(r.dma(ssid(1500), 0x1000_0000, Access::READ), Ok(DATA));
    // SSID 500 is in leaf 0, whose L1CD is invalid.
    assert!(r.dma(ssid(500), 0x1000_0000, Access::READ).is_err());
    assert_eq!(event_ids(&r.events()), [EventId::CBadSubstreamid]);
}

#[test]
fn atc_invalidation_by_ssid_drops_only_that_substreams_entries() {
    let mut r = linear_cds(4, 2, 0);
    for s in [1, 2] {
        let c = r.smmu.ats_translate(SID, ssid(s), 0x1000_0000);
        assert_eq!(c, AtsCompletion::Translated { pa: DATA + s as u64 * 0x1000, read: true, write: true });
    }
    assert_eq!(r.smmu.atc_entries(SID, None), 2);
    r.cmds(&[Command::AtcInv { sid: SID, ssid: ssid(1), global: false, addr: 0, size: 52 }]);
    assert_eq!(r.smmu.atc_lookup(SID, ssid(1), 0x1000_0000, Access::READ), None);
    assert_eq!(r.smmu.atc_lookup(SID, ssid(2), 0x1000_0000, Access::READ), Some(DATA + 0x2000));
}

#[test]
fn ats_request_on_a_stream_without_eats_is_refused_with_f_bad_ats_treq() {
    let mut r = linear_cds(4, 2, 0);
    r.write_ste(ste_s1(CDS, 0, 2, 0).with(Ste::EATS, 0));
    r.cmds(&[Command::CfgiSte { sid: SID, leaf: true }]);
    assert_eq!(r.smmu.ats_translate(SID, ssid(1), 0x1000_0000), AtsCompletion::Unsupported);
    assert_eq!(event_ids(&r.events()), [EventId::FBadAtsTreq]);
}

fn page_request(grpid: u16, last: bool) -> PageRequest {
    PageRequest {
        sid: SID,
        ssid: ssid(3),
        addr: 0x2000_0000,
        read: true,
        write: true,
        exec: false,
        privileged: false,
        last,
        grpid,
    }
}

#[test]
fn page_request_reaches_the_pri_queue_and_its_response_reaches_the_device() {
    let mut r = linear_cds(4, 2, 0);
    let req = page_request(17, true);
    assert_eq!(r.smmu.page_request(&req), PriOutcome::Queued);
    let mut b = [0u8; 16];
    r.mem().read(Hpa::new(PRIQ), &mut b).unwrap();
    assert_eq!(PageRequest::decode(&PriEntry::from_bytes(&b)), req);
    assert_eq!(RegisterBus::read(&r.smmu, o::PRIQ_PROD, Width::W32), Ok(1));
    r.cmds(&[Command::PriResp { sid: SID, ssid: ssid(3), grpid: 17, resp: PriResponse::Success }]);
    let got = r.smmu.take_prg_responses(SID);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].grpid, got[0].resp, got[0].ssid, got[0].automatic), (17, PriResponse::Success, ssid(3), false));
}

#[test]
fn pri_queue_overflow_discards_and_auto_answers_the_last_request() {
    let r = linear_cds(4, 2, 0);
    for g in 0..4 {
        assert_eq!(r.smmu.page_request(&page_request(g, false)), PriOutcome::Queued);
    }
    assert_eq!(r.smmu.page_request(&page_request(9, true)), PriOutcome::Discarded);
    let prod = RegisterBus::read(&r.smmu, o::PRIQ_PROD, Width::W32).unwrap();
    assert_ne!(prod & 1 << 31, 0, "OVFLG toggled");
    let got = r.smmu.take_prg_responses(SID);
    assert_eq!(got.len(), 1);
    assert!(got[0].automatic && got[0].resp == PriResponse::Success && got[0].grpid == 9);
}

#[test]
fn stalled_fault_is_recorded_with_a_stag_and_resumed_by_cmd_resume() {
    let mut r = Rig::new();
    let root = r.table();
    r.write_cd(CDS, cd(1, root).with(Cd::S, 1));
    r.write_ste(ste_s1(CDS, 0, 0, 0));
    let t = r.dma(None, 0x1000_0000, Access::WRITE).unwrap_err();
    let stag = t.stalled.expect("the fault stalls");
    let evs = r.events();
    assert_eq!(event_ids(&evs), [EventId::FTranslation]);
    assert!(evs[0].stall && evs[0].stag == stag);
    assert_eq!(r.smmu.take_resume(SID, stag), None, "still stalled");
    // Software maps the page, invalidates and resumes.
    r.map(root, 0x1000_0000, DATA, RW_PAGE, true);
    r.cmds(&[Command::Resume { sid: SID, stag, action: ResumeAction::Retry }]);
    assert_eq!(r.smmu.take_resume(SID, stag), Some(true));
    assert_eq!(r.dma(None, 0x1000_0000, Access::WRITE), Ok(DATA));
    assert_eq!(r.smmu.stalled_count(), 0);
}

#[test]
fn stall_term_terminates_every_stalled_transaction_of_the_stream() {
    let mut r = Rig::new();
    let root = r.table();
    r.write_cd(CDS, cd(1, root).with(Cd::S, 1));
    r.write_ste(ste_s1(CDS, 0, 0, 0));
    let a = r.dma(None, 0x1000_0000, Access::WRITE).unwrap_err().stalled.unwrap();
    let b = r.dma(None, 0x2000_0000, Access::READ).unwrap_err().stalled.unwrap();
    r.cmds(&[Command::StallTerm { sid: SID }]);
    assert_eq!((r.smmu.take_resume(SID, a), r.smmu.take_resume(SID, b)), (Some(false), Some(false)));
}

/// One setup per TLB entry kind (`kind`: stage 1 only, stage 2 only,
/// nested), mapping 0x1000_0000 to DATA with the given stage-1 and stage-2
/// leaf bits; returns the rig and the stage-2 root.
fn tlb_rig(kind: &str, s1_leaf: u64, s2_leaf: u64) -> (Rig, u64) {
    let mut r = Rig::new();
    let va = 0x1000_0000;
    let s2_root = r.table();
    let stage2 = |r: &mut Rig| {
        // Identity for the tables, CDs and queues: IPA == PA below DATA.
        for page in (0..DATA).step_by(0x1000) {
            r.map(s2_root, page, page, S2_RW, false);
        }
    };
    let ste = match kind {
        "s1" => {
            let root = r.table();
            r.map(root, va, DATA, s1_leaf, true);
            r.write_cd(CDS, cd(3, root));
            ste_s1(CDS, 0, 0, 0)
        }
        "s2" => {
            r.map(s2_root, va, DATA, s2_leaf, false);
            Ste::default().with(Ste::V, 1).with(Ste::CONFIG, 6)
        }
        _ => {
            let root = r.table();
            r.map(root, va, 0x5000_0000, s1_leaf, true);
            r.write_cd(CDS, cd(3, root));
            r.map(s2_root, 0x5000_0000, DATA, s2_leaf, false);
            stage2(&mut r);
            ste_s1(CDS, 0, 0, 0).with(Ste::CONFIG, 7)
        }
    };
    let ste = if kind == "s1" {
        ste
    } else {
        ste.with(Ste::S2T0SZ, 16)
            .with(Ste::S2SL0, 2)
            .with(Ste::S2PS, 5)
            .with(Ste::S2AA64, 1)
            .with(Ste::S2R, 1)
            .with(Ste::S2VMID, VMID as u64)
            .with_in_place(Ste::S2TTB, s2_root)
    };
    r.write_ste(ste);
    (r, s2_root)
}

#[test]
fn a_tlb_hit_checks_permissions_like_a_walk_for_every_entry_kind() {
    for (kind, s1, s2, s2_fault) in [
        ("s1", RO_PAGE, S2_RW, false),
        ("s2", RW_PAGE, S2_RO, true),
        ("nested", RO_PAGE, S2_RW, false),
        ("nested", RW_PAGE, S2_RO, true),
    ] {
        let (mut r, _) = tlb_rig(kind, s1, s2);
        assert_eq!(r.dma(None, 0x1000_0040, Access::READ), Ok(DATA + 0x40), "{kind}: the read fills the TLB");
        let t = r.smmu.translate(&Request { sid: SID, ssid: None, addr: 0x1000_0040, access: Access::READ }).unwrap();
        assert!(t.tlb_hit, "{kind}: second read hits");
        let err = r.dma(None, 0x1000_0040, Access::WRITE).unwrap_err();
        let e = err.event.expect("a permission fault");
        assert_eq!((e.id, e.s2), (EventId::FPermission, s2_fault), "{kind}: the write on a hit faults at its stage");
        assert_eq!(event_ids(&r.events()), [EventId::FPermission]);
    }
}

#[test]
fn a_remapped_leaf_is_stale_without_invalidation_and_fresh_after_it() {
    for kind in ["s1", "s2", "nested"] {
        let (mut r, s2_root) = tlb_rig(kind, RW_PAGE, S2_RW);
        assert_eq!(r.dma(None, 0x1000_0000, Access::WRITE), Ok(DATA), "{kind}");
        // Redirect the leaf to DATA + 0x1000 (stage 1, or stage 2 for s2).
        let new = DATA + 0x1000;
        match kind {
            "s2" => r.map(s2_root, 0x1000_0000, new, S2_RW, false),
            "nested" => r.map(s2_root, 0x5000_0000, new, S2_RW, false),
            _ => {
                // Stage 1: rewrite the leaf in the CD's tree.
                let ttb = r.mem().read_u64(Hpa::new(CDS + 8)).unwrap() & 0xFFFF_FFFF_FFF0;
                r.map(ttb, 0x1000_0000, new, RW_PAGE, true);
            }
        }
        assert_eq!(r.dma(None, 0x1000_0000, Access::WRITE), Ok(DATA), "{kind}: the stale entry still hits");
        let inv = match kind {
            "s1" => Command::TlbiNhVa { vmid: VMID, asid: 3, range: TlbiRange::page(0x1000_0000, true) },
            "s2" => Command::TlbiS2Ipa { vmid: VMID, range: TlbiRange::page(0x1000_0000, true) },
            _ => Command::TlbiS12Vmall { vmid: VMID },
        };
        r.cmds(&[inv]);
        assert_eq!(r.dma(None, 0x1000_0000, Access::WRITE), Ok(new), "{kind}: after invalidation the new leaf is used");
    }
}

#[test]
fn audit_reports_an_atc_entry_whose_page_was_remapped_without_atc_inv() {
    let mut r = linear_cds(2, 1, 0);
    assert!(matches!(r.smmu.ats_translate(SID, ssid(1), 0x1000_0000), AtsCompletion::Translated { .. }));
    assert!(r.smmu.audit_caches(&[]).stale.is_empty());
    // Point CD 1's page elsewhere; the ATC entry still has the old page.
    let root = r.table();
    r.map(root, 0x1000_0000, DATA + 0x9000, RW_PAGE, true);
    r.write_cd(CDS + 64, cd(101, root));
    r.cmds(&[
        Command::CfgiCd { sid: SID, ssid: ssid(1).unwrap(), leaf: true },
        Command::TlbiNhAsid { asid: 101, vmid: VMID },
    ]);
    let a = r.smmu.audit_caches(&[]);
    assert_eq!(a.stale.len(), 1);
    let s = a.stale[0];
    assert_eq!((s.cache, s.ssid, s.cached, s.now), (AuditedCache::Atc, ssid(1), DATA + 0x1000, Some(DATA + 0x9000)));
    r.cmds(&[Command::AtcInv { sid: SID, ssid: ssid(1), global: false, addr: 0, size: 52 }]);
    assert!(r.smmu.audit_caches(&[]).stale.is_empty());
}

#[test]
fn audit_reports_a_tlb_entry_left_behind_by_an_unmap_without_tlbi() {
    let mut r = linear_cds(2, 1, 0);
    assert_eq!(r.dma(ssid(1), 0x1000_0000, Access::WRITE), Ok(DATA + 0x1000));
    let ctx = [(SID, ssid(0)), (SID, ssid(1))];
    let clean = r.smmu.audit_caches(&ctx);
    assert!(clean.stale.is_empty() && clean.checked >= 1, "{clean:?}");
    // Rewrite CD 1 over an empty tree with the same ASID and no TLBI.
    let empty = r.table();
    r.write_cd(CDS + 64, cd(101, empty));
    r.cmds(&[Command::CfgiCd { sid: SID, ssid: ssid(1).unwrap(), leaf: true }]);
    let a = r.smmu.audit_caches(&ctx);
    assert_eq!(a.stale.len(), 1, "{a:?}");
    assert_eq!((a.stale[0].cache, a.stale[0].now), (AuditedCache::Tlb, None));
    r.cmds(&[Command::TlbiNhAsid { asid: 101, vmid: VMID }]);
    assert!(r.smmu.audit_caches(&ctx).stale.is_empty());
}

#[test]
fn a_substream_on_a_stage2_only_stream_aborts_with_c_bad_substreamid() {
    let (mut r, _) = tlb_rig("s2", RW_PAGE, S2_RW);
    assert_eq!(r.dma(None, 0x1000_0000, Access::READ), Ok(DATA));
    let t = r.dma(ssid(1), 0x1000_0000, Access::READ).unwrap_err();
    assert!(t.recorded);
    let evs = r.events();
    assert_eq!(event_ids(&evs), [EventId::CBadSubstreamid]);
    assert_eq!(evs[0].ssid, ssid(1));
}

#[test]
fn a_substream_on_a_bypass_stream_aborts_with_c_bad_substreamid() {
    let mut r = Rig::new();
    r.write_ste(Ste::default().with(Ste::V, 1).with(Ste::CONFIG, 4));
    assert_eq!(r.dma(None, 0x1000_0000, Access::READ), Ok(0x1000_0000));
    assert!(r.dma(ssid(3), 0x1000_0000, Access::READ).is_err());
    assert_eq!(event_ids(&r.events()), [EventId::CBadSubstreamid]);
}
