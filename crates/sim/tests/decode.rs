//! `iommu_sim::decode`: golden decodes of VT-d and SMMUv3 structures from
//! hex words, reserved-bit reporting, the input rules, and never panicking.

use iommu_format::vtd::inv_desc::{ContextCacheScope, InvDescriptor, IotlbScope, PasidCacheScope, PasidIotlbScope};
use iommu_sim::decode::{decode, kind, kinds, list, DecodeError, Decoded};
use iommu_types::{DomainId, Hpa, Iova, Pasid, SourceId};
use proptest::prelude::*;

fn ok(kind: &str, hex: &str) -> Decoded {
    decode(kind, hex).unwrap_or_else(|e| panic!("decode {kind} {hex:?}: {e}"))
}

/// Value of the field `name`, shifted down.
fn value(d: &Decoded, name: &str) -> u64 {
    d.field(name).unwrap_or_else(|| panic!("{} has no field {name}", d.kind)).value
}

/// In-place (address) value of the field `name`.
fn address(d: &Decoded, name: &str) -> Option<u64> {
    d.field(name).unwrap_or_else(|| panic!("{} has no field {name}", d.kind)).in_place
}

fn has_line(d: &Decoded, needle: &str) -> bool {
    d.interpretation.iter().any(|l| l.contains(needle))
}

// --- golden decodes -------------------------------------------------------

/// VT-d §9.2: LP (bit 0), LCTP=0x2000 (63:12), UP (bit 64), UCTP=0x3000
/// (127:76 = qword 1 bits 63:12).
const SM_ROOT_BOTH_HALVES: &str = "0x2001 0x3001";

#[test]
fn scalable_root_entry_with_both_halves_reads_both_context_tables() {
    let d = ok("sm-root", SM_ROOT_BOTH_HALVES);
    assert_eq!(d.words, [0x2001, 0x3001]);
    assert_eq!((value(&d, "LP"), address(&d, "LCTP")), (1, Some(0x2000)));
    assert_eq!((value(&d, "UP"), address(&d, "UCTP")), (1, Some(0x3000)));
    assert_eq!(
        d.interpretation,
        [
            "lower half (devfn 0x00-0x7f): present, context table at 0x2000",
            "upper half (devfn 0x80-0xff): present, context table at 0x3000",
        ]
    );
    assert!(d.reserved.is_empty());
}

/// VT-d §9.4: P, DTE (2), PASIDE (3), PDTS=7 (11:9), PASIDDIRPTR=0x55000;
/// qword 1: RID_PASID=0xABCDE (83:64).
#[test]
fn scalable_context_entry_reads_directory_size_and_rid_pasid() {
    let d = ok("sm-context", "0x55e0d, 0xabcde");
    assert_eq!(value(&d, "PDTS"), 7);
    assert_eq!(address(&d, "PASIDDIRPTR"), Some(0x55000));
    assert_eq!(value(&d, "RID_PASID"), 0xABCDE);
    assert_eq!(value(&d, "DTE"), 1);
    assert!(has_line(&d, "PASID directory at 0x55000 with 16384 entries"), "{d}");
    assert!(has_line(&d, "requests without PASID use PASID 0xabcde"), "{d}");
}

/// VT-d §9.6, a first-stage entry: P, PGTT=001b (8:6); DID=0x42 (79:64);
/// SRE (128), FSPM=0 (4-level), FSPTPTR=0x1234_5000 (191:140).
const PASID_FIRST_STAGE: &str = "0x41 0x42 0x1234_5001";

#[test]
fn pasid_entry_with_first_stage_config_reads_named_fields() {
    let d = ok("pasid", PASID_FIRST_STAGE);
    assert_eq!(value(&d, "P"), 1);
    assert_eq!(value(&d, "PGTT"), 1);
    assert_eq!(value(&d, "DID"), 0x42);
    assert_eq!(value(&d, "SRE"), 1);
    assert_eq!(value(&d, "FSPM"), 0);
    assert_eq!(address(&d, "FSPTPTR"), Some(0x1234_5000));
    assert!(d.reserved.is_empty());
}

#[test]
fn pasid_entry_with_first_stage_config_is_interpreted_against_full_featured_caps() {
    let d = ok("pasid", PASID_FIRST_STAGE);
    assert!(has_line(&d, "full-featured"), "{d}");
    assert!(has_line(&d, "PGTT 001b: first-stage only"), "{d}");
    assert!(has_line(&d, "present, domain 0x42"), "{d}");
    assert!(has_line(&d, "first stage: root 0x12345000, 4-level; SRE yes, ERE no"), "{d}");
}

#[test]
fn pasid_entry_with_reserved_pgtt_reports_why_it_does_not_decode() {
    let d = ok("pasid", "0x141");
    assert!(has_line(&d, "does not decode: invalid pasid entry: reserved PGTT"), "{d}");
}

/// VT-d §6.5.2: device-selective context-cache invalidation: type 1, G=11b
/// (5:4), DID=5 (31:16), SID=01:00.0 (47:32).
#[test]
fn context_cache_descriptor_decodes_device_scope() {
    let d = ok("inv-desc", "0x0000_0100_0005_0031");
    let expected = InvDescriptor::ContextCache(ContextCacheScope::Device {
        did: DomainId::new(5),
        sid: SourceId::new(0x100),
        fm: 0,
    });
    assert_eq!(d.interpretation, ["type 0x1: context-cache invalidate".to_string(), format!("{expected:?}")]);
}

/// VT-d §6.5.2: page-selective IOTLB invalidation: type 2, G=11b, DID=0x1234;
/// qword 1: ADDR=0x7000_0000, IH (6), AM=3.
#[test]
fn iotlb_descriptor_decodes_page_scope() {
    let d = ok("inv-desc", "0x1234_0032 0x7000_0043");
    let expected = InvDescriptor::Iotlb {
        scope: IotlbScope::Page { did: DomainId::new(0x1234), addr: Iova::new(0x7000_0000), am: 3, ih: true },
        dr: false,
        dw: false,
    };
    assert_eq!(d.interpretation, ["type 0x2: IOTLB invalidate".to_string(), format!("{expected:?}")]);
}

/// VT-d §6.5.2: PASID-based IOTLB, all non-global mappings: type 6, G=10b,
/// DID=3 (31:16), PASID=0x42 (51:32).
#[test]
fn pasid_iotlb_descriptor_decodes_pasid_and_scope() {
    let d = ok("inv-desc", "0x0000_0042_0003_0026");
    let expected = InvDescriptor::PasidIotlb {
        did: DomainId::new(3),
        pasid: Pasid::new(0x42),
        scope: PasidIotlbScope::AllNonGlobal,
    };
    assert_eq!(d.interpretation, ["type 0x6: PASID-based IOTLB invalidate".to_string(), format!("{expected:?}")]);
}

/// VT-d §6.5.2: PASID-cache, PASID-selective: type 7, G=01b, DID=2,
/// PASID=0x12345.
#[test]
fn pasid_cache_descriptor_decodes_pasid_scope() {
    let d = ok("inv-desc", "0x0001_2345_0002_0017");
    let expected =
        InvDescriptor::PasidCache { did: DomainId::new(2), scope: PasidCacheScope::Pasid(Pasid::new(0x12345)) };
    assert_eq!(d.interpretation, ["type 0x7: PASID-cache invalidate".to_string(), format!("{expected:?}")]);
}

/// VT-d §6.5.2: device-TLB invalidation in a 128-bit queue: type 3, SID=01:00.0
/// (47:32); qword 1: ADDR=0x7000_0000, S clear.
#[test]
fn device_tlb_descriptor_decodes_in_a_128_bit_queue() {
    let d = ok("inv-desc-128", "0x0000_0100_0000_0003 0x7000_0000");
    let expected = InvDescriptor::DeviceTlb {
        sid: SourceId::new(0x100),
        pfsid: 0,
        qdep: 0,
        addr: Iova::new(0x7000_0000),
        size: false,
    };
    assert_eq!(d.words.len(), 2);
    assert_eq!(d.interpretation, ["type 0x3: device-TLB invalidate".to_string(), format!("{expected:?}")]);
}

/// VT-d §6.5.2: wait with status write (SW, bit 5) of 0x5A5A_5A5A (63:32) to
/// 0x1000 (qword 1).
#[test]
fn wait_descriptor_decodes_status_write() {
    let d = ok("inv-desc", "0x5a5a5a5a_00000025 0x1000");
    let expected = InvDescriptor::Wait {
        interrupt: false,
        status: Some((Hpa::new(0x1000), 0x5A5A_5A5A)),
        fence: false,
        drain_page_requests: false,
    };
    assert_eq!(d.interpretation, ["type 0x5: invalidation wait".to_string(), format!("{expected:?}")]);
}

/// VT-d §6.5.2: PASID-granular descriptors exist only in the 256-bit format.
#[test]
fn pasid_cache_descriptor_in_a_128_bit_queue_is_reported_invalid() {
    let d = ok("inv-desc-128", "0x0001_2345_0002_0017");
    assert!(has_line(&d, "invalidation queue error (FSTS.IQE): descriptor type 0x7 needs a 256-bit queue"), "{d}");
}

/// VT-d §6.5.2: bit 8 is reserved in a context-cache descriptor; the typed
/// decoder's reserved bits are listed like a layout's.
#[test]
fn context_cache_descriptor_reserved_bit_8_is_flagged() {
    let d = ok("inv-desc", "0x111");
    assert_eq!(d.reserved.len(), 1);
    assert_eq!((d.reserved[0].word, d.reserved[0].bits, d.reserved[0].bit_numbers.clone()), (0, 0x100, vec![8]));
}

/// VT-d §11.4.14: F (127), T1=read (126), FR=0x86 (103:96), SID=0x0008
/// (79:64), FI=0x7000.
#[test]
fn fault_record_names_its_reason() {
    let d = ok("fault-record", "0x7000 0xc000_0086_0000_0008");
    assert_eq!(value(&d, "FR"), 0x86);
    assert!(has_line(&d, "fault reason 0x86 (SmReadDenied): read without read permission"), "{d}");
    assert!(has_line(&d, "read from 00:01.0 (no PASID) at page 0x7000"), "{d}");
}

#[test]
fn fault_record_with_f_clear_says_no_fault() {
    let d = ok("fault-record", "0x7000 0x0000_0086_0000_0008");
    assert_eq!(d.interpretation, ["F clear: the register holds no fault"]);
}

/// VT-d §7.5.1: type 1, PP (8), RID=01:00.0 (31:16), PASID=0x42 (51:32);
/// qword 1: RD (64), LPIG (66), PRGI=3 (75:67), ADDR=0x7fff_0000 (127:76).
#[test]
fn page_request_reads_requester_pasid_and_group() {
    let d = ok("page-request", "0x0000_0042_0100_0101 0x7fff_001d");
    assert_eq!(value(&d, "PRGI"), 3);
    assert_eq!(address(&d, "ADDR"), Some(0x7FFF_0000));
    assert_eq!(
        d.interpretation,
        ["page request from 01:00.0 (PASID 0x42) for page 0x7fff0000, access r--, group 0x3, last in group"]
    );
}

#[test]
fn legacy_root_entry_reads_present_context_table() {
    let d = ok("root", "0x1001");
    assert_eq!(d.interpretation, ["present, context table at 0x1000"]);
}

/// VT-d §11.4.5: TTM=01b (11:10), RTA=0x10_0000.
#[test]
fn rtaddr_reads_scalable_mode() {
    let d = ok("rtaddr", "0x10_0400");
    assert_eq!(d.interpretation, ["root table at 0x100000", "TTM 01b: scalable-mode root and context tables"]);
}

/// VT-d §9.7: a 2 MiB leaf (PS, bit 7) read as a PDE, and as a PML4E, where
/// PS is reserved.
#[test]
fn first_stage_large_leaf_is_a_leaf_at_level_2_and_reserved_at_level_4() {
    let d = ok("fs-pte", "0x4020_0087");
    assert!(has_line(&d, "as PDE (level 2): 2 MiB page at 0x40200000, Perm(rwx), user"), "{d}");
    assert!(
        has_line(&d, "as PML4E (level 4): table at 0x40200000, Perm(rwx), user; RESERVED BITS SET 0x80 (bit 7)"),
        "{d}"
    );
}

// --- reserved bits --------------------------------------------------------

/// VT-d §9.1: bits 11:1 of a legacy root entry are reserved.
#[test]
fn root_entry_bit_5_set_is_a_violation_listing_bit_5() {
    let d = ok("root", "0x1021");
    assert_eq!(d.reserved.len(), 1);
    assert_eq!((d.reserved[0].word, d.reserved[0].bits, d.reserved[0].bit_numbers.clone()), (0, 0x20, vec![5]));
}

#[test]
fn reserved_violation_is_flagged_in_the_text() {
    let text = ok("root", "0x1021").to_string();
    assert!(text.contains("RESERVED BITS SET in qword 0: 0x20 (bit 5)"), "{text}");
}

/// VT-d §9.2: bits 75:65 of a scalable root entry are reserved; absolute bit
/// numbers count from qword 0.
#[test]
fn reserved_bits_in_qword_1_are_numbered_absolutely() {
    let d = ok("sm-root", "0 0x2");
    assert_eq!(d.reserved[0].bit_numbers, [65]);
    assert_eq!(d.reserved[0].word, 1);
}

#[test]
fn clean_entry_has_no_violations_in_the_text() {
    let text = ok("sm-root", SM_ROOT_BOTH_HALVES).to_string();
    assert!(!text.contains("RESERVED"), "{text}");
}

// --- input rules ----------------------------------------------------------

#[test]
fn big_number_equals_the_word_list_lowest_first() {
    let big = ok("sm-root", "0x00000000000030010000000000002001");
    assert_eq!(big, ok("sm-root", SM_ROOT_BOTH_HALVES));
}

#[test]
fn big_number_with_leading_zeros_beyond_the_size_is_accepted() {
    let big = ok("root", "0x0000_00000000000000000000_0000000000001001");
    assert_eq!(big.words, [0x1001, 0]);
}

#[test]
fn missing_higher_words_are_zero() {
    assert_eq!(ok("pasid", "0x41").words, [0x41, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn digits_are_case_insensitive_and_underscores_group_them() {
    assert_eq!(ok("cap", "0X00D2_008C_222F_0606").words, ok("cap", "d2008c222f0606").words);
}

#[test]
fn commas_and_mixed_whitespace_separate_words() {
    assert_eq!(ok("sm-root", " 0x2001,\t0x3001\n").words, [0x2001, 0x3001]);
}

#[test]
fn too_many_words_are_rejected_with_the_kind_size() {
    assert_eq!(decode("root", "1 2 3"), Err(DecodeError::TooManyWords { kind: "root", holds: 2, given: 3 }));
}

#[test]
fn big_number_larger_than_the_kind_is_rejected() {
    let err = decode("root", "0x1_0000000000000000_0000000000000000").unwrap_err();
    assert_eq!(err, DecodeError::TooManyWords { kind: "root", holds: 2, given: 3 });
}

#[test]
fn bad_digit_is_rejected_naming_the_token_and_character() {
    let err = decode("root", "0x1000 0x12g4").unwrap_err();
    assert!(matches!(err, DecodeError::BadDigit { index: 1, ch: 'g', position: 5, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("\"0x12g4\"") && msg.contains("'g'"), "{msg}");
}

#[test]
fn colon_is_not_a_separator() {
    let err = decode("root", "0x1000:0x0").unwrap_err();
    assert!(matches!(err, DecodeError::BadDigit { ch: ':', .. }), "{err:?}");
}

#[test]
fn word_longer_than_16_digits_in_a_list_is_rejected() {
    let err = decode("sm-root", "0x1 0x00000000000000001").unwrap_err();
    assert_eq!(err, DecodeError::WordTooLong { token: "\"0x00000000000000001\"".to_string(), index: 1, digits: 17 });
}

#[test]
fn prefix_without_digits_is_rejected() {
    assert!(matches!(decode("root", "0x"), Err(DecodeError::NoDigits { index: 0, .. })));
}

#[test]
fn empty_input_is_rejected() {
    assert_eq!(decode("root", " ,\t "), Err(DecodeError::Empty));
}

#[test]
fn unknown_kind_is_rejected_with_the_nearest_names() {
    let err = decode("smroot", "0").unwrap_err();
    assert!(matches!(&err, DecodeError::UnknownKind { nearest, .. } if nearest.first() == Some(&"sm-root")), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("sm-root") && msg.contains("decode --list"), "{msg}");
}

#[test]
fn unknown_kind_abbreviation_suggests_the_full_name() {
    let err = decode("ctx", "0").unwrap_err();
    assert!(matches!(&err, DecodeError::UnknownKind { nearest, .. } if nearest.contains(&"context")), "{err:?}");
}

#[test]
fn unknown_kind_far_from_every_name_points_to_the_list() {
    let err = decode("zzzzzzzzzzzz", "0").unwrap_err();
    assert!(matches!(&err, DecodeError::UnknownKind { nearest, .. } if nearest.is_empty()), "{err:?}");
    assert!(err.to_string().contains("decode --list"));
}

// --- the kinds table and output forms -------------------------------------

#[test]
fn kinds_include_the_wide_and_narrow_invalidation_descriptors() {
    assert_eq!(kind("inv-desc").map(|k| k.size), Some(32));
    assert_eq!(kind("inv-desc-128").map(|k| k.size), Some(16));
}

#[test]
fn list_names_every_kind_with_its_cite() {
    let text = list();
    for k in kinds() {
        assert!(text.lines().any(|l| l.starts_with(k.name) && l.contains(k.cite)), "{}: {text}", k.name);
    }
}

#[test]
fn display_has_header_aligned_fields_and_flag_words() {
    let text = ok("sm-root", SM_ROOT_BOTH_HALVES).to_string();
    assert!(text.starts_with("sm-root: scalable-mode root entry"), "{text}");
    assert!(text.contains("16 bytes, VT-d §9.2"), "{text}");
    assert!(text.contains("  LP     0:0     set\n"), "{text}");
    assert!(text.contains("  LCTP   63:12   0x2    address 0x2000\n"), "{text}");
    assert!(text.contains("interpretation:"), "{text}");
}

#[test]
fn json_carries_fields_reserved_bits_and_interpretation() {
    let v = ok("root", "0x1021").to_json();
    assert_eq!(v["kind"], "root");
    assert_eq!(v["cite"], "VT-d §9.1");
    assert_eq!(v["words"][0], "0x0000000000001021");
    assert_eq!(v["fields"][1]["name"], "CTP");
    assert_eq!(v["fields"][1]["bits"], "63:12");
    assert_eq!(v["fields"][1]["in_place"], "0x1000");
    assert_eq!(v["reserved"][0]["bit_numbers"][0], 5);
    assert_eq!(v["interpretation"][0], "present, context table at 0x1000");
}

// --- SMMUv3 kinds -----------------------------------------------------------

/// SMMUv3 §5.2: V, Config 111b (nested), S1ContextPtr 0x4010_2000 (55:6),
/// S1CDMax 3 (63:59); S1DSS 0b10 (65:64), EATS 0b01 (93:92); S2VMID 0x1234
/// (143:128), S2T0SZ 24 (165:160), S2SL0 1 (167:166), S2PS 0b100 (178:176),
/// S2AA64 (179), S2R (186); S2TTB 0x4020_0000 (243:196).
const SMMU_STE_NESTED: &str = "0x1800_0000_4010_200f 0x1000_0002 0x040c_0058_0000_1234 0x4020_0000";

#[test]
fn smmu_ste_reads_named_fields_and_pointers_in_place() {
    let d = ok("smmu-ste", SMMU_STE_NESTED);
    assert_eq!(d.words.len(), 8);
    assert_eq!((value(&d, "V"), value(&d, "CONFIG"), value(&d, "S1CDMAX")), (1, 7, 3));
    assert_eq!(address(&d, "S1CONTEXTPTR"), Some(0x4010_2000));
    assert_eq!((value(&d, "S1DSS"), value(&d, "EATS")), (2, 1));
    assert_eq!((value(&d, "S2VMID"), value(&d, "S2T0SZ"), value(&d, "S2SL0")), (0x1234, 24, 1));
    assert_eq!((value(&d, "S2PS"), value(&d, "S2AA64"), value(&d, "S2R")), (4, 1, 1));
    assert_eq!(address(&d, "S2TTB"), Some(0x4020_0000));
    assert!(d.reserved.is_empty(), "{d}");
}

#[test]
fn smmu_ste_is_interpreted_against_a_full_featured_smmu() {
    let d = ok("smmu-ste", SMMU_STE_NESTED);
    assert!(has_line(&d, "full-featured SMMU"), "{d}");
    assert!(has_line(&d, "Config 111b: both stages translate (nested)"), "{d}");
    assert!(has_line(&d, "stage 1: CD table at 0x40102000 (an IPA, translated by stage 2), linear, 2^3 CDs"), "{d}");
    assert!(
        has_line(&d, "stage 2: VMID 0x1234, tables at 0x40200000: 4 KiB granule, 40-bit input, start level 1"),
        "{d}"
    );
    assert!(has_line(&d, "ATS translation requests (EATS): yes"), "{d}");
}

/// SMMUv3 §5.2: S2AA64 clear makes a stage-2 STE ILLEGAL (C_BAD_STE).
#[test]
fn smmu_ste_with_aarch32_stage_2_is_reported_illegal() {
    let d = ok("smmu-ste", "0x1800_0000_4010_200f 0x1000_0002 0x0004_0058_0000_1234 0x4020_0000");
    assert!(has_line(&d, "ILLEGAL for this SMMU: a transaction on this stream records C_BAD_STE"), "{d}");
}

#[test]
fn smmu_ste_unnamed_bit_is_flagged_with_the_models_caveat() {
    let d = ok("smmu-ste", &format!("{SMMU_STE_NESTED} 0 0 0 0x10"));
    assert_eq!(d.reserved[0].bit_numbers, [452]);
    assert!(has_line(&d, "the model ignores them"), "{d}");
}

/// SMMUv3 §5.4: T0SZ 16, IR0/OR0 write-back, SH0 inner, EPD1, V, IPS 0b100,
/// AA64, R, A, ASET, ASID 0xBEEF; TTB0 0x4010_4000 (115:68); MAIR0 0x44FF.
const SMMU_CD_TTB0: &str = "0xbeef_e204_c000_3510 0x4010_4000 0 0x44ff";

#[test]
fn smmu_cd_reads_named_fields_and_table_base_in_place() {
    let d = ok("smmu-cd", SMMU_CD_TTB0);
    assert_eq!((value(&d, "T0SZ"), value(&d, "TG0"), value(&d, "SH0")), (16, 0, 3));
    assert_eq!((value(&d, "EPD1"), value(&d, "V"), value(&d, "IPS")), (1, 1, 4));
    assert_eq!((value(&d, "AA64"), value(&d, "R"), value(&d, "A"), value(&d, "ASET")), (1, 1, 1, 1));
    assert_eq!(value(&d, "ASID"), 0xBEEF);
    assert_eq!(address(&d, "TTB0"), Some(0x4010_4000));
    assert_eq!(value(&d, "MAIR0"), 0x44FF);
    assert!(d.reserved.is_empty(), "{d}");
}

#[test]
fn smmu_cd_is_interpreted_with_ttb0_tables_and_ttb1_disabled() {
    let d = ok("smmu-cd", SMMU_CD_TTB0);
    assert!(has_line(&d, "full-featured SMMU"), "{d}");
    assert!(has_line(&d, "valid, ASID 0xbeef"), "{d}");
    assert!(
        has_line(&d, "TTB0 (VA[55] clear): tables at 0x40104000: 4 KiB granule, 48-bit input, start level 0, 44-bit"),
        "{d}"
    );
    assert!(has_line(&d, "TTB1 (VA[55] set): walks disabled (EPD1)"), "{d}");
}

#[test]
fn smmu_cd_with_v_clear_says_c_bad_cd() {
    let d = ok("smmu-cd", "0x3510");
    assert!(has_line(&d, "V clear: not valid, a transaction using this CD records C_BAD_CD"), "{d}");
}

/// SMMUv3 §4.7.3: CMD_SYNC, CS = SIG_IRQ (13:12), MSH 3 (23:22), MSIAttr
/// 0xF (27:24), MSIData 0xDEADBEEF (63:32), MSIAddress 0x8_0900_0044 (115:66).
#[test]
fn smmu_cmd_sync_decodes_with_the_opcodes_field_table() {
    let d = ok("smmu-cmd", "0xdead_beef_0fc0_1046 0x0008_0900_0044");
    let names: Vec<&str> = d.fields.iter().map(|f| f.name).collect();
    assert_eq!(names, ["OPCODE", "CS", "MSH", "MSIATTR", "MSIDATA", "MSIADDR"]);
    assert_eq!((value(&d, "CS"), value(&d, "MSIDATA")), (1, 0xDEAD_BEEF));
    assert_eq!(address(&d, "MSIADDR"), Some(0x0008_0900_0044));
    assert_eq!(d.interpretation[0], "opcode 0x46: CMD_SYNC (SMMUv3 §4.7.3)");
    assert!(
        has_line(&d, "Sync { cs: SigIrq, msh: 0x3, msiattr: 0xf, msi_data: 0xdeadbeef, msi_addr: 0x809000044 }"),
        "{d}"
    );
    assert!(d.reserved.is_empty(), "{d}");
}

/// SMMUv3 §4.7.3: CS = 0b11 is reserved, so the command is CERROR_ILL.
#[test]
fn smmu_cmd_with_reserved_cs_reports_the_cerror_ill_reason() {
    let d = ok("smmu-cmd", "0x3046");
    assert!(has_line(&d, "CERROR_ILL: reserved value in CMD_SYNC.CS (SMMUv3 §4.7.3)"), "{d}");
}

/// SMMUv3 §4.1.1: opcode 0x00 is reserved.
#[test]
fn smmu_cmd_with_reserved_opcode_reports_the_cerror_ill_reason() {
    let d = ok("smmu-cmd", "0 0");
    assert!(has_line(&d, "CERROR_ILL: command opcode 0x00 is reserved"), "{d}");
}

/// SMMUv3 §4.3.1, §4.1.5: CMD_CFGI_STE has no SSV, so bit 11 is RES0.
#[test]
fn smmu_cmd_res0_bit_is_flagged_and_the_command_still_decodes() {
    let d = ok("smmu-cmd", "0x0000_0068_0000_0803 0x1");
    assert_eq!(d.reserved[0].bit_numbers, [11]);
    assert!(has_line(&d, "CfgiSte { sid: StreamId(0x68), leaf: true }"), "{d}");
}

/// SMMUv3 §7.3: F_PERMISSION for StreamID 0x68, stage 2 (103), CLASS IN
/// (105:104), input 0x5c30f37a78, IPA 0x9e672000 (word 3).
#[test]
fn smmu_event_f_permission_reads_its_fields() {
    let d = ok("smmu-event", "0x68_0000_0013 0x280_0000_0000 0x5c_30f3_7a78 0x9e67_2000");
    assert_eq!((value(&d, "EVENTID"), value(&d, "STREAMID"), value(&d, "S2")), (0x13, 0x68, 1));
    assert_eq!(address(&d, "ADDR"), Some(0x9E67_2000));
    assert_eq!(
        d.interpretation,
        [
            "F_PERMISSION (event 0x13) for StreamID 0x68, no SubstreamID",
            "write, unprivileged, data transaction",
            "fault at stage 2 on the input address",
            "input address 0x5c30f37a78",
            "IPA 0x9e672000",
        ]
    );
}

#[test]
fn smmu_event_with_unknown_number_says_so() {
    let d = ok("smmu-event", "0x99");
    assert_eq!(d.interpretation, ["event number 0x99 is not one this model knows (SMMUv3 §7.3)"]);
}

/// SMMUv3 §8: StreamID 0x100, SubstreamID 0x42, R, Last, SSV; PRGIndex 3,
/// page 0x7fff_0000.
#[test]
fn smmu_pri_entry_reads_requester_pasid_and_group() {
    let d = ok("smmu-pri", "0xd000_0042_0000_0100 0x7fff_0003");
    assert_eq!(address(&d, "ADDR"), Some(0x7FFF_0000));
    assert_eq!(
        d.interpretation,
        ["page request from StreamID 0x100 (PASID 0x42) for page 0x7fff0000, access r--, group 0x3, last in group"]
    );
}

/// SMMUv3 §5.1: Span 7, L2Ptr 0x4010_1000.
#[test]
fn smmu_l1std_reads_span_and_level_2_array() {
    let d = ok("smmu-l1std", "0x4010_1007");
    assert!(has_line(&d, "level-2 array of 64 STE(s) at 0x40101000"), "{d}");
}

/// Arm ARM D8.3: a valid 4 KiB page descriptor reads as a table at levels
/// 0 to 2 and as a page at level 3.
#[test]
fn smmu_s1_desc_page_reads_as_a_page_at_level_3() {
    let d = ok("smmu-s1-desc", "0x4410_3f43");
    assert!(has_line(&d, "as level 0: table at 0x44103000"), "{d}");
    assert!(
        has_line(&d, "as level 3: 4 KiB page at 0x44103000, EL1 and EL0 read/write, AttrIndx 0, non-global"),
        "{d}"
    );
}

#[test]
fn list_includes_the_smmu_kinds() {
    let text = list();
    for name in [
        "smmu-ste",
        "smmu-l1std",
        "smmu-cd",
        "smmu-l1cd",
        "smmu-cmd",
        "smmu-event",
        "smmu-pri",
        "smmu-s1-desc",
        "smmu-s2-desc",
    ] {
        assert!(text.lines().any(|l| l.split_whitespace().next() == Some(name)), "{name}: {text}");
    }
}

// --- never panics -----------------------------------------------------------

#[test]
fn every_kind_decodes_all_zero_input() {
    for k in kinds() {
        let d = decode(k.name, "0").unwrap_or_else(|e| panic!("{}: {e}", k.name));
        assert_eq!(d.words.len(), k.words(), "{}", k.name);
        let _ = (d.to_string(), d.to_json());
    }
}

#[test]
fn every_kind_decodes_all_ones_input() {
    for k in kinds() {
        let hex = vec!["0xffff_ffff_ffff_ffff"; k.words()].join(" ");
        let d = decode(k.name, &hex).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        assert!(d.words.iter().all(|&w| w == u64::MAX), "{}", k.name);
        let _ = (d.to_string(), d.to_json());
    }
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic_any_kind(s in any::<String>()) {
        for k in kinds() {
            if let Ok(d) = decode(k.name, &s) {
                let _ = (d.to_string(), d.to_json());
            }
        }
    }

    #[test]
    fn hex_like_strings_never_panic_any_kind(s in "[0-9a-fA-FxX_, :\t-]{0,120}") {
        for k in kinds() {
            if let Ok(d) = decode(k.name, &s) {
                let _ = (d.to_string(), d.to_json());
            }
        }
    }

    #[test]
    fn arbitrary_words_never_panic_any_kind(w in proptest::collection::vec(any::<u64>(), 1..=8)) {
        let hex = w.iter().map(|x| format!("{x:#x}")).collect::<Vec<_>>().join(" ");
        for k in kinds() {
            if let Ok(d) = decode(k.name, &hex) {
                let _ = (d.to_string(), d.to_json());
            }
        }
    }

    #[test]
    fn arbitrary_kind_names_never_panic(name in any::<String>()) {
        let _ = decode(&name, "0").map_err(|e| e.to_string());
    }
}
