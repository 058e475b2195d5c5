#pragma once
// A data header that includes a training header: scripts/check-layers.py must
// reject it (ctest layers.detects_violations).
#include <dlcore/nn/detail/walk.h>
#include <dlcore/train/loop.h>
