#!/usr/bin/env python3
"""Check the SMMUv3 model against the conformance generator's architectural
intent on cases QEMU never saw.

The oracle in ../shared/smmuv3-conformance/ builds random cases (and records
QEMU's observation of them). Building a case needs no QEMU: this script
imports the generator, builds N stratified-random cases for each seed,
replays them with `iommu-sim replay smmuv3`, and checks every DMA against
the case's `intent` and every `intent_checks` register expectation, with
the generator's own `agree` and `check_case_level`.

Usage: scripts/smmuv3_intent_check.py [--n 120] [--seeds 1 2 3] [--bin PATH]
Exit 0 when everything agrees.
"""
import argparse
import json
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ORACLE = os.path.join(HERE, "..", "..", "shared", "smmuv3-conformance")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=120)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "iommu-sim"))
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    sys.path.insert(0, ORACLE)
    import smmuv3_oracle as o

    total = bad = 0
    for seed in a.seeds:
        rng = random.Random(seed)
        sched = o.stratified_schedule(rng, a.n)
        cases = [o.random_case("r%03d-seed%d" % (i, seed), rng, f) for i, f in enumerate(sched)]
        inp = "".join(json.dumps(c) + "\n" for c in cases)
        out = subprocess.run([a.bin, "replay", "smmuv3", "-"], input=inp, capture_output=True, text=True,
                             check=True).stdout
        obs = {r["id"]: r["observed"] for r in map(json.loads, out.splitlines())}
        for c in cases:
            total += 1
            ob = obs[c["id"]]
            rows = []
            for i, it in enumerate(c["intent"]):
                ok, why = o.agree(it, ob["dma"][i], ob, c, i)
                if not ok:
                    rows.append("dma%d: %s (intent %s)" % (i, why, it))
            rows += [r for r in o.check_case_level(c, ob) if "DIFFERS" in r]
            if rows:
                bad += 1
                print("DIFF %s  %s" % (c["id"], c["description"]))
                for r in rows[:4]:
                    print("     " + r)
            elif a.verbose:
                print("ok   %s  %s" % (c["id"], c["description"]))
    print("intent agreement %d/%d" % (total - bad, total))
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
