#!/usr/bin/env python3
"""Writes the hand-made seed inputs in fuzz/seeds/<target>/.

Run from anywhere: `python3 fuzz/seeds/make_seeds.py`. The input formats are
documented at the top of each fuzz target; the structures below use the
golden values of the format crate's unit tests.
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def q(*words):
    return b"".join(struct.pack("<Q", w) for w in words)


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- decode_structures
# Scalable context entry, VT-d §9.4 (P, DTE, PASIDE, PDTS=7, dir 0x55000, RID_PASID 0xABCDE).
write("decode_structures", "scalable_context", q(0x55E0D, 0xABCDE, 0, 0))
# Legacy root entry + legacy pass-through context entry (§9.1, §9.3).
write("decode_structures", "legacy_root_context", q(0x12345001, 0, 0xABC009, 0x123402))
# Nested PASID entry, §9.6 (SS 0x7000 4-level, DID 0x42, PWSNP, SRE, FSPM=1, FS 0x12345000).
write("decode_structures", "nested_pasid_entry", q(0x70C9, 0x800042, 0x12345005, 0, 0, 0, 0, 0))
# Page-selective IOTLB invalidation followed by a wait with status write (§6.5.2).
write("decode_structures", "iotlb_psi_then_wait", q(0x12340032, 0x70000043, 0, 0, 0x5A5A5A5A00000025, 0x1000, 0, 0))
# Page group response with PASID and private data, then a PASID-cache invalidation.
write("decode_structures", "page_group_response", q(0x0000000501001039, 0xFFC, 0xAA, 0xBB, 0x0001234500020017, 0, 0, 0))
# Fault record (§11.4.14): read denied 0x86 at 0x7000 from 00:01.0.
write("decode_structures", "fault_record", q(0x7000, 1 << 63 | 1 << 62 | 0x86 << 32 | 0x8))
# Page request (§7.5.1) with PASID 0x42, LPIG, PRGI 3.
write("decode_structures", "page_request", q(0x0000004201000101, 0x7FFF0000 | 3 << 3 | 1 << 2 | 1, 0, 0))
# Paging entries: a 2 MiB first-stage leaf, a 4 KiB second-stage leaf.
write("decode_structures", "ptes", q(0x40200087, 0x5001))

# ---------------------------------------------------------------- inv_queue
def ops(*items):
    return bytes([len(items)]) + b"".join(bytes([k]) + struct.pack("<H", a) for k, a in items)


IOTLB_GLOBAL = (0x12, 0)
WAIT_SW = (0x5A5A5A5A00000025, 0x1000)  # status write of 0x5A5A5A5A to 0x1000
WAIT_IF = (0x15, 0)  # completion interrupt
IEC_GLOBAL = (0x4, 0)

# 128-bit queue at 0x10000: IOTLB global, wait with status write; IQT = 2 descriptors.
write("inv_queue", "iotlb_then_wait_128", bytes([0x00]) + ops((0, 2), (3, 0), (4, 0)) + q(*IOTLB_GLOBAL, *WAIT_SW))
# 256-bit queue: PASID-cache global, PASID IOTLB (DID 1, PASID 5), page group
# response with private data, wait with interrupt (unmasked); IQT = 4 × 32 bytes.
wide = q(0x37, 0, 0, 0) + q(0x6 | 2 << 4 | 1 << 16 | 5 << 32, 0, 0, 0)
wide += q(0x0000000501001039, 0xFFC, 0xAA, 0xBB) + q(*WAIT_IF, 0, 0)
write("inv_queue", "pasid_descriptors_256", bytes([0x88]) + ops((0, 8), (3, 0), (9, 1)) + wide)
# An unknown descriptor type stops the queue (IQE); clear IQE and retry, with
# both restart choices.
bad = q(0xF, 0) + q(*IOTLB_GLOBAL)
write("inv_queue", "iqe_then_restart", bytes([0x00]) + ops((0, 2), (2, 0), (0, 2), (2, 0), (3, 0)) + bad)
write("inv_queue", "iqe_then_restart_on_clear", bytes([0x40]) + ops((0, 2), (2, 0), (3, 0), (0, 2)) + bad)
# Wrap-around: 255 IEC descriptors, then the tail wraps to 0x10.
write("inv_queue", "wrap", bytes([0x00]) + ops((0, 0xFF), (0, 0x01), (3, 0)) + q(*IEC_GLOBAL) * 256)
# Device-TLB invalidation (S set, 8 KiB at 0x10000000) and context-cache device-selective.
write("inv_queue", "device_tlb", bytes([0x00]) + ops((0, 2), (8, 1)) + q(0x3 | 0x0108 << 32, 0x10000001, 0x1 | 3 << 4 | 1 << 16 | 0x0108 << 32, 0))
# Device-TLB invalidation to an endpoint that does not answer: ITE, then the
# endpoint recovers (kind 131 = 10 with bit 7), ITE is cleared, IQT resubmitted.
write("inv_queue", "devtlb_timeout", bytes([0x00]) + ops((10, 0x0108), (0, 2), (3, 0), (131, 0x0108), (2, 0), (0, 2), (3, 0))
      + q(0x3 | 0x0108 << 32, 0x10000001, *IOTLB_GLOBAL))
# QIE off, new IQA (QS=1, 256-bit), QIE on, descriptors at the new width.
write("inv_queue", "requeue", bytes([0x00]) + ops((0, 1), (5, 0), (7, 0x801), (6, 0), (2, 0), (0, 2), (3, 0)) + q(*IOTLB_GLOBAL, 0, 0))

# ---------------------------------------------------------------- register_file
R_RTADDR, R_GCMD, R_GSTS, R_FSTS, R_IQT, R_IQA, R_IQH, R_PQA, R_PQT, R_PRS = 0x20, 0x18, 0x1C, 0x34, 0x88, 0x90, 0x80, 0xD0, 0xC8, 0xDC


def rd(off, w64=True):
    return bytes([0x00 | (8 if w64 else 0)]) + struct.pack("<H", off)


def wr(off, value, w64=True):
    return bytes([0x01 | (8 if w64 else 0)]) + struct.pack("<HQ", off, value)


def memw(addr, value):
    return bytes([0x05]) + struct.pack("<IQ", addr, value)


def req(kind, sid, pasid, addr, last):
    return bytes([kind]) + struct.pack("<HIQB", sid, pasid, addr, last)


def prq(rid, pasid, addr, bits, prgi):
    return bytes([0x03]) + struct.pack("<HIQBH", rid, pasid, addr, bits, prgi)


# Legacy tables: root at 0x10000 (bus 0 -> context table 0x11000), context
# for 00:01.0 pass-through; enable translation, translate, ATS, DMA, read GSTS.
legacy = memw(0x10000, 0x11001) + memw(0x11080, 0x9) + memw(0x11088, 0x102)
legacy += wr(R_RTADDR, 0x10000) + wr(R_GCMD, 1 << 30, False) + wr(R_GCMD, 1 << 31, False)
legacy += req(0x02, 0x8, 0, 0x1234, 0x3) + req(0x04, 0x8, 0, 0x5000, 0x1) + req(0x06, 0x8, 0, 0x3000, 4)
legacy += rd(R_GSTS, False) + rd(R_FSTS, False) + req(0x02, 0x9, 0, 0x1234, 0x1) + rd(0x220) + rd(0x228)
write("register_file", "legacy_passthrough", bytes([0x00]) + legacy)
# Queued invalidation through registers: IQA, QIE, a wait descriptor, IQT.
qi = wr(R_IQA, 0x20000) + wr(R_GCMD, 1 << 26, False) + memw(0x20000, 0x15) + memw(0x20010, WAIT_SW[0])
qi += memw(0x20018, WAIT_SW[1]) + wr(R_IQT, 0x20) + rd(R_IQH) + rd(0x9C, False) + wr(0xA0, 0, False)
write("register_file", "queued_invalidation", bytes([0x00]) + qi)
# Scalable tables with page requests: root 0x10000 (bus 0 lower -> 0x11000),
# context 00:01.0 with PRE and DTE, page request queue at 0x30000.
sm = memw(0x10000, 0x11001) + memw(0x11100, 0x15)
sm += wr(R_RTADDR, 0x10000 | 1 << 10) + wr(R_GCMD, 1 << 30, False) + wr(R_GCMD, 1 << 31, False)
sm += wr(R_PQA, 0x30000) + prq(0x8, 1 << 31 | 5, 0x7000, 0x11, 3) + rd(R_PQT) + rd(R_PRS, False)
sm += req(0x07, 0x8, 0, 0, 0) + req(0x04, 0x8, 0, 0x7000, 0x3)
write("register_file", "scalable_page_request", bytes([0x00]) + sm)
# Register-based invalidation: IVA/IOTLB at 0xF0/0xF8, CCMD, fault records.
ri = wr(0xF0, 0x7000 | 2) + wr(0xF8, 1 << 63 | 3 << 60 | 1 << 32) + rd(0xF8)
ri += wr(0x28, 1 << 63 | 1 << 61) + rd(0x28) + wr(0x228, 1 << 63) + rd(0x34, False)
write("register_file", "register_invalidation", bytes([0x00]) + ri)

# ---------------------------------------------------------------- translate_tables
def records(*recs):
    out = b"".join(struct.pack("<HIQBB", *r) for r in recs)
    return bytes([len(recs)]), out + bytes(8 * 16 - len(out))


def tables(entries):
    """Two 4 KiB pages (tiled over 2 MiB): {offset: u64}."""
    t = bytearray(8192)
    for off, v in entries.items():
        t[off:off + 8] = struct.pack("<Q", v)
    return bytes(t)


# Legacy: page 0 = root table (bus 0 -> context table at page 0) and context
# entries for devfn 8 (second stage at 0x1000, 4-level, DID 1), devfn 0x10
# (pass-through) and devfn 0x18 (device-TLB); page 1 = a self-referencing
# second-stage table: entry 0 -> itself (iova 0 maps to 0x1000), entry 1 ->
# the interrupt range (must fault), entry 2 -> 0x400000.
legacy_t = tables({
    0x0: 0x1, 0x80: 0x1001, 0x88: 0x102, 0x100: 0x9, 0x108: 0x102, 0x180: 0x1005, 0x188: 0x102,
    0x1000: 0x1003, 0x1008: 0xFEE00003, 0x1010: 0x400083,
})
n, recs = records(
    (0x8, 0, 0x123, 0x11, 4),        # read + dma_read
    (0x8, 0, 0x1000, 0x2, 0),        # write into the interrupt range: fault
    (0x8, 0, 0x2123, 0xA3, 2),       # write twice + dma_write
    (0x10, 0, 0x5000, 0x31, 1),      # pass-through
    (0x18, 0, 0x0, 0x41, 0),         # ATS
    (0x8, 1 << 31 | 1, 0x0, 0x1, 0), # PASID in legacy mode: fault
)
write("translate_tables", "legacy", bytes([0x00, 0, 0]) + n + recs + legacy_t)
write("translate_tables", "legacy_qemu", bytes([0x10, 0, 0]) + n + recs + legacy_t)
# Scalable: root entry for bus 1 (lower half -> context table at page 0);
# context for 01:01.0 at 0x100 (DTE, PASIDE, PRE, PASID directory at page 0,
# RID_PASID 1); directory entry 0 -> PASID table at page 1; PASID 1 second
# stage, 2 first stage (SRE, ERE), 3 nested, 4 pass-through; entries 0 and 1
# of page 1 double as a self-referencing paging table.
sm_t = tables({
    0x10: 0x1, 0x100: 0x1D, 0x108: 0x1, 0x0: 0x1001,
    0x1000: 0x1007, 0x1008: 0x1003,
    0x1040: 0x1089, 0x1048: 1,
    0x1080: 0x41, 0x1088: 2, 0x1090: 0x1003,
    0x10C0: 0x10C9, 0x10C8: 3, 0x10D0: 0x1003,
    0x1100: 0x101, 0x1108: 4,
})
n, recs = records(
    (0x108, 0, 0x123, 0x11, 4),                # RID_PASID 1: second stage, dma_read
    (0x108, 1 << 31 | 2, 0x123, 0xAB, 2),      # first stage, write+priv twice, dma_write
    (0x108, 1 << 31 | 3, 0x456, 0x0D, 0),      # nested, read+exec+priv
    (0x108, 1 << 31 | 4, 0x7000, 0x43, 0),     # pass-through + ATS
    (0x108, 1 << 31 | 2, 0x1000, 0x41, 0),     # first stage, ATS
    (0x108, 1 << 31 | 9, 0x0, 0x1, 0),         # PASID entry not present
)
write("translate_tables", "scalable", bytes([0x01, 0, 0]) + n + recs + sm_t)
write("translate_tables", "scalable_qemu_fs", bytes([0x31, 0, 0]) + n + recs + sm_t)

# ---------------------------------------------------------------- regressions
# Reproducers of model defects the targets found (all fixed): kept as seeds
# named regress_<name> so every run re-checks them.


def crash(target, name, data):
    write(target, "regress_" + name, data)


# Device-TLB invalidation with S=1 and ADDR[62:12] all ones (the PCIe ATS
# "whole address space" encoding Linux uses): am = 52, 1 << 64 in
# Iotlb::invalidate_range. Same for the PASID-based device-TLB descriptor.
crash("inv_queue", "devtlb_size_all", bytes([0x00]) + ops((0, 1)) + q(0x3, 0x7FFFFFFFFFFFF001))
crash("inv_queue", "pasid_devtlb_size_all", bytes([0x08]) + ops((0, 2)) + q(0x8, 0x7FFFFFFFFFFFF800, 0, 0))


def one_request(flags, sid, addr):
    n, recs = records((sid, 0, addr, 0x01, 0))
    return bytes([flags, 0, 0]) + n + recs


# Legacy pass-through context (TT=10b) for 00:00.1: a request to 0xFEE00000
# translates to 0xFEE00000 (no interrupt-range check on pass-through).
crash("translate_tables", "passthrough_interrupt_range", one_request(0x00, 0x0001, 0xFEE00000) + q(0x1, 0, 0x9, 0))
# Scalable mode, PASID entry with PGTT=100b (pass-through) for 00:00.2.
crash("translate_tables", "pasid_passthrough_interrupt_range",
      one_request(0x01, 0x0002, 0xFEE00000) + tables({0x0: 0x1001, 0x1040: 0x1, 0x1000: 0x101}))
# Page request queue: 128 requests with PQA.PQS=1 move PQT to 0x1000; PQA is
# then rewritten to 0xFFFF_FFFF_FFFF_F000 (PQT is kept): base + tail overflows.
prq0 = bytes([0x03]) + bytes(17)  # page request from 00:00.0, no PASID, address 0
p = memw(0x10000, 0x11001) + memw(0x11000, 0x11)  # scalable root bus 0 -> 0x11000; context 00:00.0: P | PRE
p += wr(R_RTADDR, 0x10000 | 1 << 10) + wr(R_GCMD, 1 << 30, False) + wr(R_GCMD, 1 << 31, False)
p += wr(R_PQA, 0x30001) + prq0 * 128 + wr(R_PQA, 0xFFFFFFFFFFFFF001) + prq0
crash("register_file", "prq_base_overflow", bytes([0x00]) + p)
