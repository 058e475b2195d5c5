// See odr_a.cpp.
#include <dlcore/distributed/collectives.h>
#include <dlcore/distributed/process_group.h>
#include <dlcore/distributed/selection.h>
#include <dlcore/dlcore.h>

int odr_b() {
  return dlcore::version()[0] != '\0' ? 42 : 0;
}
