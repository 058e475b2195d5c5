// Together with odr_b.cpp: every public header in two translation units of one
// program. A non-inline definition in a header breaks the link.
#include <dlcore/distributed/collectives.h>
#include <dlcore/distributed/process_group.h>
#include <dlcore/distributed/selection.h>
#include <dlcore/dlcore.h>
// Split from nn/freeze.h and data/hashtag_resampler.h; until dlcore.h lists
// them.
#include <dlcore/data/tag_lists.h>
#include <dlcore/nn/batch_norm_policy.h>
#include <dlcore/nn/forward_child.h>
#include <dlcore/nn/heads.h>
#include <dlcore/optim/gradual_unfreezing.h>
#include <dlcore/optim/param_groups.h>

int odr_b();

int main() {
  return odr_b() == 42 && dlcore::version()[0] != '\0' ? 0 : 1;
}
