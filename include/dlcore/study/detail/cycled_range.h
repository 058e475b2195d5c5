#pragma once

// A range that repeats another from its start until it has yielded a given
// number of elements: the LR range test's batches, cycled when there are
// fewer than it needs. Internal to dlcore (study/lr_finder.h).

#include <c10/util/Exception.h>

#include <cstdint>
#include <iterator>
#include <utility>

namespace dlcore {
namespace detail {

/// The first `count` elements of `range` repeated from its start: `first` is
/// an iterator the caller already took with `begin(range)`, and
/// `begin(range)` is called again each time the range runs out while more
/// elements are needed (so a `dlcore::Batches` moves on to its next epoch
/// then, and only then). An input range: one pass, `begin()` once. `range`
/// must outlive this object.
template <typename Range, typename Iterator>
class CycledRange {
 public:
  CycledRange(Range& range, Iterator first, int64_t count, const char* owner)
      : range_(range), it_(std::move(first)), count_(count), owner_(owner) {}

  class iterator {
   public:
    decltype(auto) operator*() const {
      return *owner_->it_;
    }
    iterator& operator++() {
      owner_->advance(++index_);
      return *this;
    }
    bool operator==(const iterator& other) const {
      return index_ == other.index_;
    }
    bool operator!=(const iterator& other) const {
      return index_ != other.index_;
    }

   private:
    friend class CycledRange;
    iterator(CycledRange* owner, int64_t index)
        : owner_(owner), index_(index) {}
    CycledRange* owner_;
    int64_t index_;
  };

  iterator begin() {
    return iterator(this, 0);
  }
  iterator end() {
    return iterator(this, count_);
  }
  /// Elements yielded in all.
  int64_t size() const {
    return count_;
  }

 private:
  /// Moves to element `index`, restarting the range when it ran out.
  void advance(int64_t index) {
    using std::begin;
    using std::end;
    ++it_;
    if (index < count_ && it_ == end(range_)) {
      it_ = begin(range_);
      TORCH_CHECK(
          it_ != end(range_),
          owner_,
          ": expected the batches to start again after their last one, but a "
          "later pass over them was empty");
    }
  }

  Range& range_;
  Iterator it_;
  int64_t count_;
  const char* owner_;
};

} // namespace detail
} // namespace dlcore
