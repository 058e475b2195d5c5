// A consumer's program: builds a tensor through LibTorch and checks dlcore's
// version macro and PerGroup, which proves headers and link flags arrive.
#include <dlcore/per_group.h>
#include <dlcore/version.h>

#include <torch/types.h>

#include <cstdio>
#include <string>

int main() {
  dlcore::PerGroup<double> lr(0.1);
  const auto values = lr.expand(2, "consumer", "lr");
  const auto t = torch::full({2}, values[1], torch::kFloat64);
  std::printf(
      "dlcore %s sum %.2f\n", dlcore::version(), t.sum().item<double>());
  return std::string(dlcore::version()).empty() || values.size() != 2 ? 1 : 0;
}
