#!/usr/bin/python3
"""Golden values for dlcore's LR scheduler family, from real PyTorch.

Covers LambdaLR, MultiplicativeLR, StepLR, MultiStepLR, ConstantLR, LinearLR,
ExponentialLR, PolynomialLR, CosineAnnealingLR, CosineAnnealingWarmRestarts,
SequentialLR, ChainedScheduler and ReduceLROnPlateau of
torch.optim.lr_scheduler (PyTorch 1.13). Run with Debian's Python (the one
that has torch):

    /usr/bin/python3 scripts/golden/lr_schedulers.py > tests/golden/lr_schedulers.h
    clang-format -i tests/golden/lr_schedulers.h

Every case uses SGD over two param groups with different learning rates
(0.1 and 0.03). A table holds what the groups' `lr` entries contain right
after the scheduler's construction (row t = 0: the construction-time step of
LinearLR and ConstantLR is visible there) and after each `optimizer.step();
scheduler.step(...)` (t = 1, 2, ...). `arg` is the argument of that step:
empty for `step()`, the epoch for CosineAnnealingWarmRestarts'
`step(epoch)`, the metric for ReduceLROnPlateau's `step(metric)`. Values are
hex floats, so they round-trip exactly.

For each case the script also checks, in Python, that a scheduler whose
state_dict (and its optimizer's) is saved after `resume_at` steps and loaded
into freshly built ones continues with exactly the values of the
uninterrupted run; the C++ resume tests check the same property against
these tables.
"""
import copy
import warnings

import torch
from torch.optim.lr_scheduler import (
    ChainedScheduler, ConstantLR, CosineAnnealingLR, CyclicLR,
    CosineAnnealingWarmRestarts, ExponentialLR, LambdaLR, LinearLR,
    MultiplicativeLR, MultiStepLR, PolynomialLR, ReduceLROnPlateau,
    SequentialLR, StepLR)

# SequentialLR calls step(0), which warns about the deprecated epoch argument.
warnings.filterwarnings("ignore", category=UserWarning)

LRS = [0.1, 0.03]


def make_optimizer():
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr}
              for lr in LRS]
    return torch.optim.SGD(groups, lr=0.5, momentum=0.9)


def lrs_of(opt):
    return [g["lr"] for g in opt.param_groups]


def run(factory, args):
    """Rows (t, arg, lrs) for t = 0..len(args). args[i] is None for step(),
    else the argument of step(arg)."""
    opt, sched = factory()
    rows = [(0, None, lrs_of(opt))]
    for t, arg in enumerate(args, start=1):
        opt.step()
        if arg is None:
            sched.step()
        else:
            sched.step(arg)
        rows.append((t, arg, lrs_of(opt)))
    return rows


def copy_state(value):
    """A deep copy of dicts and lists; other values are kept (CyclicLR's
    state holds a WeakMethod, which cannot be deep-copied in 1.13)."""
    if isinstance(value, dict):
        return {k: copy_state(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_state(v) for v in value]
    return value


def check_resume(factory, args, k, full):
    opt, sched = factory()
    for arg in args[:k]:
        opt.step()
        sched.step() if arg is None else sched.step(arg)
    state = copy_state(sched.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())
    opt2, sched2 = factory()
    sched2.load_state_dict(state)
    opt2.load_state_dict(opt_state)
    rows = [(k, args[k - 1] if k > 0 else None, lrs_of(opt2))]
    for t in range(k + 1, len(args) + 1):
        arg = args[t - 1]
        opt2.step()
        sched2.step() if arg is None else sched2.step(arg)
        rows.append((t, arg, lrs_of(opt2)))
    assert rows == full[k:], "resume differs from the uninterrupted run"


CASES = []


def case(name, doc, factory, args, resume_at):
    if isinstance(args, int):
        args = [None] * args
    rows = run(factory, args)
    check_resume(factory, args, resume_at, rows)
    CASES.append((name, doc, resume_at, rows))


def single(make_sched):
    def factory():
        opt = make_optimizer()
        return opt, make_sched(opt)
    return factory


# ------------------------------------------------------------ LambdaLR
case("kLambdaPerGroup",
     "LambdaLR lr_lambda [0.95 ** e, 1 / (1 + e)]",
     single(lambda o: LambdaLR(o, [lambda e: 0.95 ** e,
                                   lambda e: 1 / (1 + e)])),
     20, 7)
case("kLambdaShared",
     "LambdaLR lr_lambda 0.5 ** (e // 3) for every group",
     single(lambda o: LambdaLR(o, lambda e: 0.5 ** (e // 3))),
     15, 4)
case("kMultiplicativeShared",
     "MultiplicativeLR lr_lambda 0.9 for every group",
     single(lambda o: MultiplicativeLR(o, lambda e: 0.9)),
     20, 6)
case("kMultiplicativePerGroup",
     "MultiplicativeLR lr_lambda [0.9, 1.0 - 0.01 * e]",
     single(lambda o: MultiplicativeLR(o, [lambda e: 0.9,
                                           lambda e: 1.0 - 0.01 * e])),
     20, 9)
# ------------------------------------------------------ step decays
case("kStep",
     "StepLR step_size 3 gamma 0.5",
     single(lambda o: StepLR(o, step_size=3, gamma=0.5)),
     20, 5)
case("kStepDefaultGamma",
     "StepLR step_size 4 (gamma 0.1)",
     single(lambda o: StepLR(o, step_size=4)),
     14, 6)
case("kMultiStepRepeated",
     "MultiStepLR milestones [2, 5, 5, 9] gamma 0.3 (5 counted twice)",
     single(lambda o: MultiStepLR(o, milestones=[2, 5, 5, 9], gamma=0.3)),
     14, 5)
case("kMultiStepAtZero",
     "MultiStepLR milestones [0, 3] gamma 0.5 (decays at construction)",
     single(lambda o: MultiStepLR(o, milestones=[0, 3], gamma=0.5)),
     6, 2)
case("kExponential",
     "ExponentialLR gamma 0.87",
     single(lambda o: ExponentialLR(o, gamma=0.87)),
     25, 11)
# -------------------------------------------------- total_iters decays
case("kConstant",
     "ConstantLR factor 0.4 total_iters 4",
     single(lambda o: ConstantLR(o, factor=0.4, total_iters=4)),
     10, 2)
case("kConstantDefaults",
     "ConstantLR defaults (factor 1/3, total_iters 5)",
     single(lambda o: ConstantLR(o)),
     8, 5)
case("kLinear",
     "LinearLR start_factor 0.25 end_factor 0.9 total_iters 6",
     single(lambda o: LinearLR(o, start_factor=0.25, end_factor=0.9,
                               total_iters=6)),
     10, 3)
case("kLinearDefaults",
     "LinearLR defaults (start_factor 1/3, end_factor 1, total_iters 5)",
     single(lambda o: LinearLR(o)),
     8, 4)
case("kLinearDecreasing",
     "LinearLR start_factor 1.0 end_factor 0.05 total_iters 7",
     single(lambda o: LinearLR(o, start_factor=1.0, end_factor=0.05,
                               total_iters=7)),
     10, 7)
case("kPolynomial",
     "PolynomialLR total_iters 7 power 2.0",
     single(lambda o: PolynomialLR(o, total_iters=7, power=2.0)),
     10, 3)
case("kPolynomialDefaults",
     "PolynomialLR defaults (total_iters 5, power 1.0)",
     single(lambda o: PolynomialLR(o)),
     7, 2)
case("kPolynomialSqrt",
     "PolynomialLR total_iters 6 power 0.5",
     single(lambda o: PolynomialLR(o, total_iters=6, power=0.5)),
     8, 4)
# ----------------------------------------------------------- cosine
case("kCosine",
     "CosineAnnealingLR T_max 5 eta_min 0.001, 30 steps (the recursive "
     "form past T_max, rising again)",
     single(lambda o: CosineAnnealingLR(o, T_max=5, eta_min=0.001)),
     30, 8)
case("kCosineLong",
     "CosineAnnealingLR T_max 100 (eta_min 0), 250 steps",
     single(lambda o: CosineAnnealingLR(o, T_max=100)),
     250, 137)
case("kWarmRestarts",
     "CosineAnnealingWarmRestarts T_0 3 T_mult 2 eta_min 0.01, step()",
     single(lambda o: CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2,
                                                  eta_min=0.01)),
     25, 10)
case("kWarmRestartsMult1",
     "CosineAnnealingWarmRestarts T_0 4 (T_mult 1, eta_min 0), step()",
     single(lambda o: CosineAnnealingWarmRestarts(o, T_0=4)),
     13, 6)
ITERS = 4
case("kWarmRestartsFractional",
     "CosineAnnealingWarmRestarts T_0 2 T_mult 2 eta_min 0.001, "
     "step(epoch + i / 4) per batch over 8 epochs",
     single(lambda o: CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2,
                                                  eta_min=0.001)),
     [epoch + i / ITERS for epoch in range(8) for i in range(ITERS)], 13)
case("kWarmRestartsFractionalMult1",
     "CosineAnnealingWarmRestarts T_0 3 (T_mult 1), step(epoch + i / 3) "
     "per batch over 5 epochs",
     single(lambda o: CosineAnnealingWarmRestarts(o, T_0=3)),
     [epoch + i / 3 for epoch in range(5) for i in range(3)], 7)
case("kWarmRestartsInterleaved",
     "CosineAnnealingWarmRestarts T_0 2 T_mult 3: step() x3, step(7.5), "
     "step() x3, step(1), step() x2, step(30.25), step()",
     single(lambda o: CosineAnnealingWarmRestarts(o, T_0=2, T_mult=3)),
     [None, None, None, 7.5, None, None, None, 1, None, None, 30.25, None],
     5)


# ------------------------------------------------------- composites
def sequential(make_children, milestones):
    def factory():
        opt = make_optimizer()
        children = make_children(opt)
        return opt, SequentialLR(opt, children, milestones=milestones)
    return factory


def chained(make_children):
    def factory():
        opt = make_optimizer()
        return opt, ChainedScheduler(make_children(opt))
    return factory


case("kSequentialWarmupExp",
     "SequentialLR [LinearLR start_factor 0.1 total_iters 3, ExponentialLR "
     "gamma 0.9] milestones [3]",
     sequential(lambda o: [LinearLR(o, start_factor=0.1, total_iters=3),
                           ExponentialLR(o, gamma=0.9)], [3]),
     10, 3)
case("kSequentialThree",
     "SequentialLR [ConstantLR factor 0.5 total_iters 2, CosineAnnealingLR "
     "T_max 6 eta_min 0.001, StepLR step_size 2 gamma 0.5] milestones [4, 10]",
     sequential(lambda o: [ConstantLR(o, factor=0.5, total_iters=2),
                           CosineAnnealingLR(o, T_max=6, eta_min=0.001),
                           StepLR(o, step_size=2, gamma=0.5)], [4, 10]),
     16, 9)
case("kSequentialWarmupRestarts",
     "SequentialLR [LinearLR start_factor 0.2 total_iters 4, "
     "CosineAnnealingWarmRestarts T_0 3 T_mult 2] milestones [4]",
     sequential(lambda o: [LinearLR(o, start_factor=0.2, total_iters=4),
                           CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2)],
                [4]),
     15, 4)
case("kSequentialMultiStepLambda",
     "SequentialLR [MultiStepLR milestones [1, 2] gamma 0.5, LambdaLR "
     "0.8 ** e, MultiplicativeLR 0.95] milestones [3, 6]",
     sequential(lambda o: [MultiStepLR(o, milestones=[1, 2], gamma=0.5),
                           LambdaLR(o, lambda e: 0.8 ** e),
                           MultiplicativeLR(o, lambda e: 0.95)], [3, 6]),
     10, 6)
case("kSequentialPolyLinear",
     "SequentialLR [PolynomialLR total_iters 4 power 2, LinearLR "
     "start_factor 0.5 end_factor 0.1 total_iters 3] milestones [2]",
     sequential(lambda o: [PolynomialLR(o, total_iters=4, power=2.0),
                           LinearLR(o, start_factor=0.5, end_factor=0.1,
                                    total_iters=3)], [2]),
     8, 2)
case("kSequentialClosedForms",
     "SequentialLR [ExponentialLR gamma 0.5, MultiStepLR milestones [0, 2, 2] "
     "gamma 0.5, ConstantLR factor 0.25 total_iters 3, PolynomialLR "
     "total_iters 4 power 1.5] milestones [2, 5, 9] (the closed forms at 0)",
     sequential(lambda o: [ExponentialLR(o, gamma=0.5),
                           MultiStepLR(o, milestones=[0, 2, 2], gamma=0.5),
                           ConstantLR(o, factor=0.25, total_iters=3),
                           PolynomialLR(o, total_iters=4, power=1.5)],
                [2, 5, 9]),
     16, 6)
case("kSequentialCyclic",
     "SequentialLR [LinearLR start_factor 0.5 total_iters 2, CyclicLR "
     "base_lr 0.01 max_lr 0.1 step_size_up 2] milestones [3]",
     sequential(lambda o: [LinearLR(o, start_factor=0.5, total_iters=2),
                           CyclicLR(o, base_lr=0.01, max_lr=0.1,
                                    step_size_up=2)], [3]),
     12, 2)
case("kChainedConstantExp",
     "ChainedScheduler [ConstantLR factor 0.1 total_iters 2, ExponentialLR "
     "gamma 0.9]",
     chained(lambda o: [ConstantLR(o, factor=0.1, total_iters=2),
                        ExponentialLR(o, gamma=0.9)]),
     8, 3)
case("kChainedWarmupCosine",
     "ChainedScheduler [LinearLR start_factor 0.5 total_iters 4, "
     "CosineAnnealingLR T_max 8 eta_min 0.002]",
     chained(lambda o: [LinearLR(o, start_factor=0.5, total_iters=4),
                        CosineAnnealingLR(o, T_max=8, eta_min=0.002)]),
     20, 9)


# ------------------------------------------------- ReduceLROnPlateau
def plateau(**kw):
    return single(lambda o: ReduceLROnPlateau(o, **kw))


LOSSES = [1.0, 0.9, 0.95, 0.93, 0.91, 0.9, 0.89, 0.8999, 0.92, 0.85, 0.86,
          0.86, 0.87, 0.84, 0.84, 0.84, 0.84, 0.83, 0.9, 0.9, 0.9, 0.9]
ACCS = [0.5, 0.6, 0.6, 0.62, 0.61, 0.615, 0.7, 0.7, 0.7, 0.7, 0.71, 0.705,
        0.71, 0.71, 0.72, 0.72, 0.72, 0.72]
case("kPlateauMinRel",
     "ReduceLROnPlateau mode min, factor 0.5, patience 2, threshold 0.01 "
     "rel, cooldown 1, min_lr [0.01, 0.005]",
     plateau(mode="min", factor=0.5, patience=2, threshold=0.01,
             cooldown=1, min_lr=[0.01, 0.005]), LOSSES, 9)
case("kPlateauDefaults",
     "ReduceLROnPlateau defaults (min, factor 0.1, patience 10, threshold "
     "1e-4 rel, cooldown 0, min_lr 0, eps 1e-8), a flat metric",
     plateau(), [1.0] * 30, 12)
case("kPlateauMaxAbs",
     "ReduceLROnPlateau mode max, factor 0.3, patience 1, threshold 0.005 "
     "abs, min_lr 0.004",
     plateau(mode="max", factor=0.3, patience=1, threshold=0.005,
             threshold_mode="abs", min_lr=0.004), ACCS, 7)
case("kPlateauMinAbsEps",
     "ReduceLROnPlateau mode min, factor 0.9, patience 0, threshold 0.1 "
     "abs, min_lr 0.025, eps 0.004 (reductions below eps are skipped)",
     plateau(mode="min", factor=0.9, patience=0, threshold=0.1,
             threshold_mode="abs", min_lr=0.025, eps=0.004), LOSSES, 6)
case("kPlateauMaxRel",
     "ReduceLROnPlateau mode max, factor 0.5, patience 0, threshold 0.01 "
     "rel, cooldown 2",
     plateau(mode="max", factor=0.5, patience=0, threshold=0.01,
             cooldown=2), ACCS, 10)


def hexlist(values):
    return "{" + ", ".join(float(v).hex() for v in values) + "}"


def main():
    out = []
    out.append("// Generated by scripts/golden/lr_schedulers.py with torch "
               + torch.__version__ + ".")
    out.append("// Do not edit by hand: run scripts/golden/regenerate.sh.")
    out.append("#pragma once")
    out.append("")
    out.append("#include <cstdint>")
    out.append("#include <vector>")
    out.append("")
    out.append("namespace dlcore_golden {")
    out.append("")
    out.append("// The param groups' learning rates before any scheduler: "
               "SGD over two groups.")
    out.append("inline const std::vector<double> kLRSchedGroupLRs = "
               + hexlist(LRS) + ";")
    out.append("")
    out.append("// What the optimizer holds after construction (t = 0) and "
               "after t steps.")
    out.append("struct LRRow {")
    out.append("  int64_t t;")
    out.append("  std::vector<double> arg; // step(arg); empty for step()")
    out.append("  std::vector<double> lr; // one per param group")
    out.append("};")
    out.append("")
    out.append("// A table and the step after which its resume test saves.")
    out.append("struct LRTable {")
    out.append("  int64_t resume_at;")
    out.append("  std::vector<LRRow> rows;")
    out.append("};")
    out.append("")
    for name, doc, resume_at, rows in CASES:
        out.append("// " + doc)
        out.append("inline const LRTable " + name + " = {%d, {" % resume_at)
        for t, arg, lrs in rows:
            out.append("    {%d, %s, %s}," % (
                t, "{}" if arg is None else hexlist([arg]), hexlist(lrs)))
        out.append("}};")
        out.append("")
    out.append("} // namespace dlcore_golden")
    print("\n".join(out))


if __name__ == "__main__":
    main()
