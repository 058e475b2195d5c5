// Together with odr_b.cpp: every public header in two translation units of one
// program. A non-inline definition in a header breaks the link.
#include <dlcore/distributed/collectives.h>
#include <dlcore/distributed/process_group.h>
#include <dlcore/distributed/selection.h>
#include <dlcore/dlcore.h>

int odr_b();

int main() {
  return odr_b() == 42 && dlcore::version()[0] != '\0' ? 0 : 1;
}
