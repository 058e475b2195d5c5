// Precompiled header for dlcore's own tests, examples and benchmarks.
// LibTorch and third-party headers only; never dlcore's.
#pragma once

#include <torch/torch.h>
