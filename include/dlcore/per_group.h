#pragma once

#include <c10/util/Exception.h>

#include <cstddef>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {

/// A value that PyTorch (Python) accepts as "a float or a list with one entry
/// per param group": either one value shared by every group, or one per group.
///
/// Implicitly built from a single value or a vector, so options read as in
/// Python:
///
/// Example:
///   CyclicLROptions(/*base_lr=*/1e-3, /*max_lr=*/{0.1, 0.01});
template <typename T>
class PerGroup {
 public:
  /// One value for every group.
  PerGroup(T value) : values_{std::move(value)}, broadcast_(true) {}
  /// One value per group, in the optimizer's group order.
  PerGroup(std::vector<T> values)
      : values_(std::move(values)), broadcast_(false) {}
  PerGroup(std::initializer_list<T> values)
      : values_(values), broadcast_(values.size() == 1) {}

  /// True when one value is shared by every group.
  bool is_broadcast() const {
    return broadcast_;
  }
  /// The values as given (one entry when broadcast).
  const std::vector<T>& values() const {
    return values_;
  }

  /// The values for `num_groups` groups. A broadcast value is repeated; a
  /// list must have exactly `num_groups` entries, otherwise a `c10::Error`
  /// names `owner`, the option and both lengths.
  std::vector<T> expand(
      std::size_t num_groups,
      const std::string& owner,
      const std::string& option) const {
    if (broadcast_) {
      return std::vector<T>(num_groups, values_.at(0));
    }
    TORCH_CHECK(
        values_.size() == num_groups,
        owner,
        ": expected ",
        option,
        " to have one value per param group (",
        num_groups,
        " groups), but got ",
        values_.size(),
        " values");
    return values_;
  }

 private:
  std::vector<T> values_;
  bool broadcast_;
};

} // namespace dlcore
