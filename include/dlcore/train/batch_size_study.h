#pragma once

// Moved: the batch-size study (batch_size_study) now lives in
// <dlcore/study/batch_size_study.h>, beside the other studies that train
// through train_epoch. This forwarding header is kept for one release;
// include the new path.
#include <dlcore/study/batch_size_study.h>
