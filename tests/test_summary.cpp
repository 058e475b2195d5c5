#include <dlcore/nn/summary.h>

#include <dlcore/nn/models/alexnet.h>

TEST_CASE("summary of AlexNet smoke", "[summary]") {
  dlcore::AlexNet net;
  auto s = dlcore::summary(net, {1, 3, 224, 224});
  std::cout << s;
  CHECK(s.total_params == 61100840);
  CHECK(s.total_macs == 714188480);
}
