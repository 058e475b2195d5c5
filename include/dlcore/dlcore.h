#pragma once

// Umbrella header: every public dlcore component. Prefer including the
// component headers you use; this one costs the compile time of all of them.

#include <dlcore/per_group.h>
#include <dlcore/version.h>
