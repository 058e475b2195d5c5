// Precompiled header of the test executable: LibTorch and Catch2 only, never
// dlcore's headers (each test includes the header it tests).
#pragma once

#include <torch/torch.h>

// LibTorch pulls in glog, whose CHECK macro collides with Catch2's.
#undef CHECK
#include <catch2/catch.hpp>
