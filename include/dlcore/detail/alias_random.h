#pragma once

// Forwarding header: SplitMix64, the (seed, epoch, stream) keys and the maps
// from random words to numbers live in detail/splitmix.h.

#include <dlcore/detail/splitmix.h>
