#!/usr/bin/python3
"""Golden values for dlcore's CyclicLR and OneCycleLR, from real PyTorch.

Run with Debian's Python (the one that has torch):

    /usr/bin/python3 scripts/golden/schedulers.py > tests/golden/schedulers.h
    clang-format -i tests/golden/schedulers.h

Every table holds what the optimizer's param groups contain right after the
scheduler's construction (t = 0) and after each `optimizer.step();
scheduler.step()` (t = 1, 2, ...): every group's `lr`, its momentum (SGD's
`momentum` or Adam's `betas[0]`) and, for Adam, `betas[1]` (which must stay
untouched). Values are written as hex floats, so they round-trip exactly.

PyTorch 1.13's CyclicLR refuses optimizers without a `momentum` default
(Adam), although PyTorch >= 2.0 cycles beta1 with the same formula. For the
Adam tables we add a `momentum` entry to the Adam optimizer's defaults so that
1.13's code runs unchanged; it then writes the cycled value into the group's
`momentum` key (which Adam ignores), and we record that value as the expected
beta1. OneCycleLR supports beta1 natively in 1.13.

The script also checks, in Python, that a scheduler whose state_dict is saved
at step k and loaded into a new scheduler over a fresh optimizer continues with
exactly the values of the uninterrupted run (the property the C++ resume tests
check against these same tables).
"""
import copy
import math

import torch
from torch.optim.lr_scheduler import CyclicLR, OneCycleLR


def make_params(groups):
    return [{"params": [torch.nn.Parameter(torch.zeros(2))]}
            for _ in range(groups)]


def make_optimizer(kind, groups):
    p = make_params(groups)
    if kind == "sgd":
        return torch.optim.SGD(p, lr=0.5, momentum=0.3)
    if kind == "sgd_plain":
        return torch.optim.SGD(p, lr=0.5, momentum=0.5)
    if kind == "adam":
        return torch.optim.Adam(p, lr=0.5, betas=(0.9, 0.999))
    if kind == "adamw":
        return torch.optim.AdamW(p, lr=0.5, betas=(0.9, 0.98))
    raise ValueError(kind)


def uses_betas(opt):
    return "betas" in opt.defaults


def snapshot(t, opt, momentum_key):
    lrs = [g["lr"] for g in opt.param_groups]
    if momentum_key == "momentum":
        mom = [g["momentum"] for g in opt.param_groups]
    else:
        mom = [g["betas"][0] for g in opt.param_groups]
    beta2 = [g["betas"][1] for g in opt.param_groups] if uses_betas(opt) else []
    return (t, lrs, mom, beta2)


def cyclic(kind, groups, **kw):
    opt = make_optimizer(kind, groups)
    key = "betas"
    if kind in ("sgd", "sgd_plain"):
        key = "momentum"
    elif kw.get("cycle_momentum", True):
        # 1.13 needs a `momentum` default; the cycled value lands in
        # group["momentum"], which is the expected beta1 (see module doc).
        opt.defaults["momentum"] = 0.0
        key = "momentum"
    sched = CyclicLR(opt, **kw)
    return opt, sched, key


def one_cycle(kind, groups, **kw):
    opt = make_optimizer(kind, groups)
    sched = OneCycleLR(opt, **kw)
    key = "betas" if uses_betas(opt) else "momentum"
    return opt, sched, key


def run(factory, steps, sample=None):
    """Rows (t, lrs, momenta, beta2s) for t in 0..steps (every `sample`-th if
    given, plus the last)."""
    opt, sched, key = factory()
    rows = [snapshot(0, opt, key)]
    for t in range(1, steps + 1):
        opt.step()
        sched.step()
        if sample is None or t % sample == 0 or t == steps:
            rows.append(snapshot(t, opt, key))
    return rows


def check_resume(factory, steps, k):
    """A state_dict saved at k and loaded into a fresh scheduler continues
    exactly like the uninterrupted run."""
    full = run(factory, steps)
    opt, sched, key = factory()
    for _ in range(k):
        opt.step()
        sched.step()
    # CyclicLR's state_dict holds a WeakMethod that cannot be deep-copied
    # in 1.13; the lists are copied, the rest is immutable.
    state = {key_: (list(v) if isinstance(v, list) else v)
             for key_, v in sched.state_dict().items()}
    opt_state = copy.deepcopy(opt.state_dict())
    opt2, sched2, key2 = factory()
    sched2.load_state_dict(state)
    opt2.load_state_dict(opt_state)
    rows = [snapshot(k, opt2, key2)]
    for t in range(k + 1, steps + 1):
        opt2.step()
        sched2.step()
        rows.append(snapshot(t, opt2, key2))
    assert rows == full[k:], "resume differs from the uninterrupted run"


def scale_fn(x):
    return 1 / (1 + 0.1 * x)


CASES = []


def case(name, doc, factory, steps, sample=None, resume_at=None):
    CASES.append((name, doc, run(factory, steps, sample)))
    if resume_at is not None:
        check_resume(factory, steps, resume_at)


# ----------------------------------------------------------------- CyclicLR
case("kCyclicTriangular",
     "CyclicLR SGD(momentum) base_lr 0.001 max_lr 0.1 step_size_up 4 "
     "triangular, momentum 0.8..0.9",
     lambda: cyclic("sgd", 1, base_lr=0.001, max_lr=0.1, step_size_up=4),
     30, resume_at=11)
case("kCyclicTriangular2Asym",
     "CyclicLR SGD base_lr 0.01 max_lr 1.0 step_size_up 3 step_size_down 5 "
     "triangular2",
     lambda: cyclic("sgd", 1, base_lr=0.01, max_lr=1.0, step_size_up=3,
                    step_size_down=5, mode="triangular2"),
     40, resume_at=13)
case("kCyclicExpRange099",
     "CyclicLR SGD base_lr 0.001 max_lr 0.1 step_size_up 5 exp_range "
     "gamma 0.99",
     lambda: cyclic("sgd", 1, base_lr=0.001, max_lr=0.1, step_size_up=5,
                    mode="exp_range", gamma=0.99),
     40, resume_at=17)
case("kCyclicExpRange09999Long",
     "CyclicLR SGD base_lr 1e-4 max_lr 0.05 step_size_up 2000 exp_range "
     "gamma 0.9999, every 97th batch to 12000",
     lambda: cyclic("sgd", 1, base_lr=1e-4, max_lr=0.05, step_size_up=2000,
                    mode="exp_range", gamma=0.9999),
     12000, sample=97)
case("kCyclicTriangular2Long",
     "CyclicLR SGD base_lr 0.001 max_lr 0.006 default step_size_up (2000) "
     "triangular2, every 250th batch to 20000",
     lambda: cyclic("sgd", 1, base_lr=0.001, max_lr=0.006,
                    mode="triangular2"),
     20000, sample=250)
case("kCyclicCustomCycle",
     "CyclicLR SGD base_lr 0.002 max_lr 0.2 step_size_up 4 step_size_down 2 "
     "scale_fn 1/(1+0.1x) scale_mode cycle",
     lambda: cyclic("sgd", 1, base_lr=0.002, max_lr=0.2, step_size_up=4,
                    step_size_down=2, scale_fn=scale_fn, scale_mode="cycle"),
     30)
case("kCyclicCustomIterations",
     "CyclicLR SGD base_lr 0.002 max_lr 0.2 step_size_up 4 step_size_down 2 "
     "scale_fn 1/(1+0.1x) scale_mode iterations",
     lambda: cyclic("sgd", 1, base_lr=0.002, max_lr=0.2, step_size_up=4,
                    step_size_down=2, scale_fn=scale_fn,
                    scale_mode="iterations"),
     30)
case("kCyclicAdamBeta1",
     "CyclicLR Adam(betas 0.9, 0.999) base_lr 1e-4 max_lr 1e-2 step_size_up 3 "
     "triangular, base_momentum 0.85 max_momentum 0.95 (cycled into beta1)",
     lambda: cyclic("adam", 1, base_lr=1e-4, max_lr=1e-2, step_size_up=3,
                    base_momentum=0.85, max_momentum=0.95),
     20, resume_at=7)
case("kCyclicTwoGroups",
     "CyclicLR SGD two groups base_lr [0.001, 0.01] max_lr [0.1, 0.05] "
     "step_size_up 3 triangular2, base_momentum [0.8, 0.7] max_momentum "
     "[0.9, 0.95]",
     lambda: cyclic("sgd", 2, base_lr=[0.001, 0.01], max_lr=[0.1, 0.05],
                    step_size_up=3, mode="triangular2",
                    base_momentum=[0.8, 0.7], max_momentum=[0.9, 0.95]),
     25, resume_at=8)
case("kCyclicNoMomentum",
     "CyclicLR SGD(momentum 0.5) base_lr 0.01 max_lr 0.1 step_size_up 2 "
     "exp_range gamma 0.95, cycle_momentum False (momentum stays 0.5)",
     lambda: cyclic("sgd_plain", 1, base_lr=0.01, max_lr=0.1, step_size_up=2,
                    mode="exp_range", gamma=0.95, cycle_momentum=False),
     15)

# --------------------------------------------------------------- OneCycleLR
case("kOneCycleCos",
     "OneCycleLR SGD max_lr 0.1 total_steps 20 (defaults: cos, pct_start "
     "0.3, div 25, final_div 1e4, momentum 0.85..0.95)",
     lambda: one_cycle("sgd", 1, max_lr=0.1, total_steps=20),
     20, resume_at=9)
case("kOneCycleLinear",
     "OneCycleLR SGD max_lr 0.1 total_steps 20 linear",
     lambda: one_cycle("sgd", 1, max_lr=0.1, total_steps=20,
                       anneal_strategy="linear"),
     20)
case("kOneCycleThreePhaseCos",
     "OneCycleLR SGD max_lr 0.5 total_steps 25 pct_start 0.25 three_phase",
     lambda: one_cycle("sgd", 1, max_lr=0.5, total_steps=25, pct_start=0.25,
                       three_phase=True),
     25, resume_at=12)
case("kOneCycleThreePhaseLinear",
     "OneCycleLR SGD max_lr 0.05 total_steps 30 pct_start 0.4 div_factor 10 "
     "final_div_factor 100 three_phase linear",
     lambda: one_cycle("sgd", 1, max_lr=0.05, total_steps=30, pct_start=0.4,
                       div_factor=10., final_div_factor=100.,
                       three_phase=True, anneal_strategy="linear"),
     30)
case("kOneCycleEpochsAdam",
     "OneCycleLR Adam(betas 0.9, 0.999) max_lr 0.01 epochs 3 steps_per_epoch "
     "7 pct_start 0.5",
     lambda: one_cycle("adam", 1, max_lr=0.01, epochs=3, steps_per_epoch=7,
                       pct_start=0.5),
     21, resume_at=10)
case("kOneCycleTwoGroupsAdamW",
     "OneCycleLR AdamW(betas 0.9, 0.98) two groups max_lr [0.1, 0.02] "
     "total_steps 16 three_phase base_momentum [0.8, 0.85] max_momentum "
     "[0.9, 0.99] div_factor 5 final_div_factor 50",
     lambda: one_cycle("adamw", 2, max_lr=[0.1, 0.02], total_steps=16,
                       three_phase=True, base_momentum=[0.8, 0.85],
                       max_momentum=[0.9, 0.99], div_factor=5.,
                       final_div_factor=50.),
     16, resume_at=5)
case("kOneCycleNoMomentum",
     "OneCycleLR SGD(momentum 0.5) max_lr 0.2 total_steps 12 cycle_momentum "
     "False (momentum stays 0.5)",
     lambda: one_cycle("sgd_plain", 1, max_lr=0.2, total_steps=12,
                       cycle_momentum=False),
     12)
case("kOneCyclePctZero",
     "OneCycleLR SGD max_lr 0.1 total_steps 10 pct_start 0.0",
     lambda: one_cycle("sgd", 1, max_lr=0.1, total_steps=10, pct_start=0.0),
     10)
case("kOneCyclePctOne",
     "OneCycleLR SGD max_lr 0.1 total_steps 10 pct_start 1.0 (batch 10 "
     "raises ZeroDivisionError in PyTorch, so the table stops at 9)",
     lambda: one_cycle("sgd", 1, max_lr=0.1, total_steps=10, pct_start=1.0),
     9)
case("kOneCycleLong",
     "OneCycleLR SGD max_lr 0.3 epochs 15 steps_per_epoch 469 (7035 steps) "
     "pct_start 0.3 cos, every 67th batch",
     lambda: one_cycle("sgd", 1, max_lr=0.3, epochs=15, steps_per_epoch=469),
     7035, sample=67)


def stepped_past_message():
    opt, sched, _ = one_cycle("sgd", 1, max_lr=0.1, total_steps=4)
    for _ in range(4):
        opt.step()
        sched.step()
    try:
        opt.step()
        sched.step()
    except ValueError as e:
        return str(e)
    raise AssertionError("OneCycleLR did not raise")


def zero_division_raises():
    opt, sched, _ = one_cycle("sgd", 1, max_lr=0.1, total_steps=10,
                              pct_start=1.0)
    for _ in range(9):
        opt.step()
        sched.step()
    try:
        opt.step()
        sched.step()
    except ZeroDivisionError:
        return True
    return False


def hexlist(values):
    return "{" + ", ".join(float(v).hex() for v in values) + "}"


def main():
    assert zero_division_raises()
    out = []
    out.append("// Generated by scripts/golden/schedulers.py with torch "
               + torch.__version__ + ".")
    out.append("// Do not edit by hand: run")
    out.append("//   /usr/bin/python3 scripts/golden/schedulers.py > "
               "tests/golden/schedulers.h")
    out.append("//   clang-format -i tests/golden/schedulers.h")
    out.append("#pragma once")
    out.append("")
    out.append("#include <cstdint>")
    out.append("#include <vector>")
    out.append("")
    out.append("namespace dlcore_golden {")
    out.append("")
    out.append("// What the optimizer holds after construction (t = 0) and "
               "after t steps.")
    out.append("struct SchedRow {")
    out.append("  int64_t t;")
    out.append("  std::vector<double> lr; // one per param group")
    out.append("  std::vector<double> momentum; // momentum or beta1")
    out.append("  std::vector<double> beta2; // Adam/AdamW only")
    out.append("};")
    out.append("")
    out.append("// PyTorch's message when OneCycleLR(total_steps=4) is stepped "
               "a 5th time.")
    out.append("constexpr const char* kOneCycleSteppedPast = \""
               + stepped_past_message() + "\";")
    out.append("")
    for name, doc, rows in CASES:
        out.append("// " + doc)
        out.append("inline const std::vector<SchedRow> " + name + " = {")
        for t, lrs, mom, beta2 in rows:
            out.append("    {%d, %s, %s, %s}," % (
                t, hexlist(lrs), hexlist(mom),
                hexlist(beta2) if beta2 else "{}"))
        out.append("};")
        out.append("")
    out.append("} // namespace dlcore_golden")
    print("\n".join(out))


if __name__ == "__main__":
    main()
