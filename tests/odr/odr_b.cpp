// See odr_a.cpp.
#include <dlcore/dlcore.h>

int odr_b() {
  return dlcore::version()[0] != '\0' ? 42 : 0;
}
