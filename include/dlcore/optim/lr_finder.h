#pragma once

// Moved: the LR range test (LRFinder), the LR grid (lr_grid_search) and their
// suggestions now live in <dlcore/study/lr_finder.h>, beside the other
// studies that train through train_epoch. This forwarding header is kept for
// one release; include the new path.
#include <dlcore/study/lr_finder.h>
