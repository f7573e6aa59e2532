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


# ================================================================ SMMUv3
# Encoders for the structures the SMMUv3 seeds need (IHI 0070 §5.2 STE,
# §5.4 CD, §5.1 L1STD, §5.3 L1CD; VMSAv8-64 descriptors), with the field
# positions of crates/format/src/smmuv3.
def ste(v=1, config=0, s1fmt=0, ctx=0, cdmax=0, dss=0, vmid=0, t0sz=0, sl0=0, tg=0, ps=5, aa64=1, s2r=1, ttb=0):
    q0 = v | config << 1 | s1fmt << 4 | (ctx & 0xFFFFFFFFFFFC0) | cdmax << 59
    q1 = dss
    q2 = vmid | t0sz << 32 | sl0 << 38 | tg << 46 | ps << 48 | aa64 << 51 | s2r << 58
    q3 = ttb & 0xFFFFFFFFFFFF0
    return [q0, q1, q2, q3, 0, 0, 0, 0]


def cd(asid=1, ttb0=0, t0sz=25, tg0=0, ips=5, r=1, a=1, v=1):
    q0 = (t0sz | tg0 << 6 | 1 << 8 | 1 << 10 | 3 << 12 | 2 << 22 | 1 << 30 | v << 31 | ips << 32 | 1 << 41
          | r << 45 | a << 46 | 1 << 47 | asid << 48)
    return [q0, ttb0 & 0xFFFFFFFFFFFF0, 0, 0x44FF, 0, 0, 0, 0]


def s1_block(out, ap=1):
    return out | 1 | ap << 6 | 3 << 8 | 1 << 10 | 1 << 11


def s1_page(out, ap=1):
    return s1_block(out, ap) | 2


def s2_block(out, s2ap=3):
    return out | 1 | 0xF << 2 | s2ap << 6 | 3 << 8 | 1 << 10


def tbl(out):
    return out | 3


def image(size, entries):
    """A tile of `size` bytes: {offset: u64 or list of u64}."""
    t = bytearray(size)
    for off, v in entries.items():
        for i, w in enumerate(v if isinstance(v, list) else [v]):
            t[off + 8 * i:off + 8 * i + 8] = struct.pack("<Q", w)
    return bytes(t)


CONFIG_ABORT, CONFIG_BYPASS, CONFIG_S1, CONFIG_S2, CONFIG_NESTED = 0, 4, 5, 6, 7
CMD_CFGI_ALL = (0x04, 31)
CMD_TLBI_NSNH_ALL = (0x30, 0)
CMD_SYNC = (0x46, 0)
CMD_CFGI_STE = lambda sid: (0x03 | sid << 32, 1)
CMD_TLBI_NH_VA = lambda asid, va: (0x12 | asid << 48, 1 | va)
CMD_TLBI_RANGE = lambda va: (0x12 | 3 << 12 | 1 << 20 | 1 << 48, 1 | 2 << 8 | 1 << 10 | va)
CMD_ATC_INV = (0x40 | 8 << 32, 0x1000 | 1)
CMD_PRI_RESP = (0x41 | 8 << 32, 2 << 12)


def cmds(*cs):
    return q(*[w for c in cs for w in c])


# ---------------------------------------------------------------- smmuv3_decode
# Golden STE and CD of the format crate's tests, the QEMU ID registers,
# commands, an F_PERMISSION record and a PRI entry.
write("smmuv3_decode", "ste_golden",
      q(1 | 5 << 1 | 0x40102000 | 3 << 59, 2 | 1 << 28, 0x1234 | 24 << 32 | 1 << 38 | 4 << 48 | 1 << 51 | 1 << 58,
        0x40200000, 0, 0, 0, 0))
write("smmuv3_decode", "cd_golden", q(*cd(asid=0xBEEF, ttb0=0x40104000, t0sz=16, ips=4)))
write("smmuv3_decode", "nested_ste", q(*ste(config=CONFIG_NESTED, ctx=0x800, vmid=1, t0sz=25, sl0=1, ttb=0x1000)))
write("smmuv3_decode", "qemu_idrs", q(0x0D44101B, 0x02730010, 0x1414 | 0x74 << 32, 0))
write("smmuv3_decode", "commands", cmds(CMD_CFGI_ALL, CMD_TLBI_RANGE(0x7000), CMD_SYNC, CMD_PRI_RESP))
write("smmuv3_decode", "event_permission",
      q(0x6800000013, 0x8000000000 | 2 << 40, 0x5C30F37A78, 0x9E672000))
write("smmuv3_decode", "pri_entry", q(0xD000004200000100, 0x7FFF0003, 0x0100000003, 0x184))


# ---------------------------------------------------------------- smmuv3_cmdq
def cmdq(cfg, log2, cons, rounds, contents):
    return bytes([cfg, log2]) + struct.pack("<I", cons) + bytes([len(rounds)]) + \
        b"".join(struct.pack("<I", r) for r in rounds) + contents


ACK, TOGGLE = 1 << 31, 1 << 30
write("smmuv3_cmdq", "invalidate_and_sync", cmdq(0, 3, 0, [3, 5], cmds(CMD_CFGI_ALL, CMD_TLBI_NSNH_ALL, CMD_SYNC,
                                                                        CMD_CFGI_STE(8), CMD_SYNC)))
# An unknown opcode stops the queue; acknowledging without fixing it stops it again.
write("smmuv3_cmdq", "illegal_then_ack", cmdq(0, 3, 0, [3, ACK | 3, TOGGLE | 3], cmds(CMD_TLBI_NSNH_ALL, (0xFF, 0), CMD_SYNC)))
# A 4-entry queue starting at index 2: PROD wraps (wrap flag set) twice.
write("smmuv3_cmdq", "wrap", cmdq(0, 2, 2, [5, 7, 2], cmds(CMD_SYNC, CMD_TLBI_NH_VA(1, 0x5000), CMD_SYNC, CMD_CFGI_ALL)))
# Commands for features the QEMU profiles lack: ATS and PRI (nested), stage 1 (stage-2 only).
write("smmuv3_cmdq", "qemu_missing_features", cmdq(1, 3, 0, [2, ACK | 3], cmds(CMD_SYNC, CMD_ATC_INV, CMD_PRI_RESP)))
write("smmuv3_cmdq", "s2only_tlbi_nh", cmdq(3, 3, 0, [2], cmds(CMD_SYNC, CMD_TLBI_NH_VA(1, 0x5000))))
# The queue is unbacked: the first fetch aborts (CERROR_ABT).
write("smmuv3_cmdq", "unbacked_queue", cmdq(8, 4, 0, [1, ACK | 1], b""))
# CONS preset with ERR bits and a PROD more than a queue ahead.
write("smmuv3_cmdq", "cons_err_preset", cmdq(0, 1, 0x01000001, [0x1F, 3], cmds(CMD_SYNC, CMD_SYNC)))


# ---------------------------------------------------------------- smmuv3_registers
def r_rd(off, w64=False, named=False):
    return bytes([0x00 | (8 if w64 else 0) | (0x30 if named else 0x10)]) + struct.pack("<I", off)


def r_wr(off, value, w64=False):
    return bytes([0x01 | (8 if w64 else 0) | 0x10]) + struct.pack("<IQ", off, value)


def r_xlate(sid, addr, acc=1, ssid=0):
    return bytes([0x02]) + struct.pack("<IIQB", sid, ssid, addr, acc)


def r_dma(sid, addr, n, write_=False):
    return bytes([0x03 | (8 if write_ else 0)]) + struct.pack("<IIQB", sid, 0, addr, n)


def r_mem(addr, value):
    return bytes([0x04]) + struct.pack("<IQ", addr, value)


def r_tile(entries, size=64):
    t = image(size, entries)
    return struct.pack("<H", len(t)) + t


SMMU = dict(STRTAB_BASE=0x80, STRTAB_BASE_CFG=0x88, CMDQ_BASE=0x90, CMDQ_PROD=0x98, CMDQ_CONS=0x9C,
            EVENTQ_BASE=0xA0, EVENTQ_PROD=0x100A8, EVENTQ_CONS=0x100AC, CR0=0x20, CR0ACK=0x24, CR2=0x2C,
            GBPA=0x44, GERROR=0x60, GERRORN=0x64, IRQ_CTRL=0x50, PRIQ_BASE=0xC0)
CQ, EQ = 0x800000, 0x900000


def r_bring_up(cr0=0xD):
    """The standard bring-up with the queues beyond the tiled 4 MiB."""
    s = r_wr(SMMU["STRTAB_BASE"], 0, True) + r_wr(SMMU["STRTAB_BASE_CFG"], 6)
    s += r_wr(SMMU["CMDQ_BASE"], CQ | 4, True) + r_wr(SMMU["EVENTQ_BASE"], EQ | 5, True)
    s += r_wr(SMMU["CR2"], 2) + r_wr(SMMU["CR0"], 0xC) + r_rd(SMMU["CR0ACK"])
    s += r_mem(CQ, CMD_CFGI_ALL[0]) + r_mem(CQ + 8, CMD_CFGI_ALL[1]) + r_mem(CQ + 16, CMD_SYNC[0])
    s += r_wr(SMMU["CMDQ_PROD"], 2) + r_rd(SMMU["CMDQ_CONS"]) + r_wr(SMMU["CR0"], cr0)
    return s


# Every STE is the same bypass STE (the tile is one STE): translations and DMA pass.
b = r_bring_up() + r_xlate(3, 0x1234) + r_dma(5, 0x10000, 8, True) + r_dma(5, 0x10000, 8)
b += r_rd(SMMU["GERROR"]) + r_rd(SMMU["EVENTQ_PROD"]) + r_xlate(0x1000, 0x5000) + r_rd(SMMU["EVENTQ_PROD"])
write("smmuv3_registers", "bypass_streams", bytes([0]) + r_tile({0: ste(config=CONFIG_BYPASS)}) + b)
# Every STE is a stage-1 STE whose CD (the STE's own bytes, read as a CD) is invalid: C_BAD_CD events.
b = r_bring_up() + r_xlate(1, 0x1000) + r_xlate(2, 0x2000, 2) + r_rd(SMMU["EVENTQ_PROD"]) + r_wr(SMMU["EVENTQ_CONS"], 2)
write("smmuv3_registers", "bad_cd_events", bytes([1]) + r_tile({0: ste(config=CONFIG_S1, ctx=0x1000)}) + b)
# Register sweep: every named register read at both widths and written with all ones, then read again.
sweep = b"".join(r_rd(i, False, True) + r_rd(i, True, True) for i in range(44))
sweep += b"".join(bytes([0x21 | 0x10]) + struct.pack("<IQ", i, 0xFFFFFFFFFFFFFFFF) for i in range(44))
sweep += b"".join(r_rd(i, True, True) for i in range(44))
write("smmuv3_registers", "register_sweep", bytes([0]) + struct.pack("<H", 0) + sweep)
# An illegal command, GERRORN acknowledgement, then the queue disabled and re-based.
b = r_bring_up() + r_mem(CQ + 32, 0xFF) + r_wr(SMMU["CMDQ_PROD"], 3) + r_rd(SMMU["GERROR"]) + r_rd(SMMU["CMDQ_CONS"])
b += r_mem(CQ + 32, CMD_SYNC[0]) + r_wr(SMMU["GERRORN"], 1) + r_rd(SMMU["CMDQ_CONS"]) + r_wr(SMMU["CR0"], 0)
b += r_wr(SMMU["CMDQ_BASE"], CQ | 19, True) + r_wr(SMMU["CR0"], 0x8) + r_wr(SMMU["GBPA"], 1 << 31 | 1 << 20)
b += r_xlate(1, 0x1000)
write("smmuv3_registers", "cmdq_error_recovery", bytes([2]) + r_tile({0: ste(config=CONFIG_BYPASS)}) + b)


# ---------------------------------------------------------------- smmuv3_translate
def t_req(sid, addr, acc=1, mode=0, ssid=None):
    return struct.pack("<HIQBB", sid, 0 if ssid is None else 1 << 31 | ssid, addr, acc, mode)


def t_case(flags, cfg, base, reqs, tile):
    recs = b"".join(reqs)[:254]
    return bytes([flags]) + struct.pack("<IQ", cfg, base) + bytes([len(reqs) - 1]) + recs + bytes(254 - len(recs)) + tile


# A 28 KiB tile: linear stream table at 0 (STE 0 bypass, 1 stage 1, 2 stage 2,
# 3 nested, 4 abort, 5 invalid, 6 stage 1 with a 2-level CD table of 256
# substreams), the CD at 0x800, L1CDs at 0x900, stage-2 level-1 table at
# 0x1000 (0: -> 0x3000; 1: 1 GiB identity block), stage-1 level-1 table at
# 0x2000 (0: -> 0x4000), stage-2 level-2 at 0x3000 (0: 2 MiB identity),
# stage-1 level-2 at 0x4000 (0: 2 MiB identity; 1: -> 0x5000), stage-1
# level-3 at 0x5000 (0: 0x12345000, outside what stage 2 maps; 1: read-only
# page 0x7000). L1CD 0 (at 0x900) points at the leaf CD table at 0x6000,
# which holds CDs 0 and 5.
S2 = dict(vmid=1, t0sz=25, sl0=1, ttb=0x1000)
tile = image(0x7000, {
    0x000: ste(config=CONFIG_BYPASS),
    0x040: ste(config=CONFIG_S1, ctx=0x800),
    0x080: ste(config=CONFIG_S2, **S2),
    0x0C0: ste(config=CONFIG_NESTED, ctx=0x800, **S2),
    0x100: ste(config=CONFIG_ABORT),
    0x140: ste(v=0, config=CONFIG_BYPASS),
    0x180: ste(config=CONFIG_S1, s1fmt=1, ctx=0x900, cdmax=8, dss=2),
    0x800: cd(asid=1, ttb0=0x2000),
    0x900: 0x6000 | 1,
    0x1000: [tbl(0x3000), s2_block(0x40000000)],
    0x2000: tbl(0x4000),
    0x3000: s2_block(0),
    0x4000: [s1_block(0), tbl(0x5000)],
    0x5000: [s1_page(0x12345000), s1_page(0x7000, ap=3)],
    0x6000: cd(asid=2, ttb0=0x2000),
    0x6000 + 5 * 64: cd(asid=3, ttb0=0x2000),
})
reqs = [
    t_req(0, 0x1234, 1, 1),             # bypass, twice
    t_req(1, 0x1040, 1, 1 | 2),         # stage 1, 2 MiB block, twice + DMA read
    t_req(1, 0x200123, 2, 2 | 4),       # stage 1, page 0x12345000, DMA write
    t_req(1, 0x201000, 2),              # stage 1, read-only page written: F_PERMISSION
    t_req(2, 0x40001000, 3, 1),         # stage 2, 1 GiB block
    t_req(3, 0x1000, 1, 1),             # nested, CD and tables through stage 2
    t_req(3, 0x200000, 1),              # nested, output IPA not mapped: stage-2 fault
    t_req(4, 0x1000),                   # abort
    t_req(5, 0x1000),                   # invalid STE
    t_req(6, 0x1000, 1, 0, 5),          # 2-level CD table, substream 5
    t_req(6, 0x1000, 9, 1),             # no substream: CD 0 (S1DSS = substream 0), privileged
    t_req(6, 0x1000, 1, 0, 0),          # substream 0 with S1DSS = substream 0: C_BAD_SUBSTREAMID
    t_req(1, 0xFFFF800000001000, 1, 3 << 6),  # TTB1 half, walks disabled
    t_req(40, 0x1000, 1),               # zero STE
    t_req(1, 0x8000000000, 1),          # beyond the 39-bit VA range
    t_req(0, 0x1000_0000_0000_0000, 1),  # bypass beyond the OAS
]
write("smmuv3_translate", "all_configs_full", t_case(0x04, 6, 0, reqs, tile))
write("smmuv3_translate", "all_configs_qemu", t_case(0x05, 6, 0, reqs, tile))
write("smmuv3_translate", "all_configs_qemu_s2only", t_case(0x07, 6, 0, reqs, tile))
# SMMUEN clear: GBPA bypass (any address), then GBPA abort.
write("smmuv3_translate", "disabled_bypass", t_case(0x08, 6, 0, reqs[:4] + [t_req(0, 0xFFFF_0000_0000_1000, 1, 1)], tile))
write("smmuv3_translate", "disabled_abort", t_case(0x18, 6, 0, reqs[:4], tile))
# 2-level stream table: L1STD 0 -> STEs at 0x1000 (Span 3: 4 STEs), L1STD 1
# Span 0; raw StreamIDs, one beyond LOG2SIZE.
tile2 = image(0x3000, {
    0x000: [0x1000 | 3, 0],
    0x1000: ste(config=CONFIG_BYPASS),
    0x1040: ste(config=CONFIG_S1, ctx=0x1800),
    0x1800: cd(asid=1, ttb0=0x2000, t0sz=25),
    0x2000: s1_block(0),
})
reqs2 = [t_req(0, 0x5000), t_req(1, 0x1234, 1, 1), t_req(3, 0x1000), t_req(4, 0x1000), t_req(64, 0x1000),
         t_req(0x100, 0x1000)]
write("smmuv3_translate", "two_level_strtab", t_case(0x44, 1 << 16 | 6 << 6 | 8, 0, reqs2, tile2))
