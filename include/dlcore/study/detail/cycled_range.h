#pragma once

// A range that repeats another from its start until it has yielded a given
// number of elements: the LR range test's batches, cycled when there are
// fewer than it needs. Internal to dlcore (study/lr_finder.h).

#include <dlcore/train/train_loop.h>

#include <c10/util/Exception.h>

#include <cstdint>
#include <iterator>
#include <type_traits>
#include <utility>

namespace dlcore {
namespace detail {

/// The first `count` elements of `range` repeated from its start: `first` is
/// an iterator the caller already took with `begin(range)`, and
/// `begin(range)` is called again each time the range runs out while more
/// elements are needed (so `EpochPasses` over a `dlcore::Batches` starts its
/// pass over the next epoch then, and only then). An input range: one pass,
/// `begin()` once. `range` must outlive this object.
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

/// The passes of a range with epochs (`dlcore::Batches`), read without
/// moving its epoch counter: the first `begin()` starts a pass over
/// `batches.epoch()`, each later one over the next epoch, as a non-const
/// `Batches` would do, while `batches.epoch()` stays as it is. `batches`
/// must outlive this object.
template <typename B>
class EpochPasses {
 public:
  explicit EpochPasses(const B& batches)
      : batches_(batches), next_(batches.epoch()) {}

  auto begin() {
    return batches_.pass(next_++).begin();
  }
  auto end() const {
    return batches_.end();
  }

 private:
  const B& batches_;
  int64_t next_;
};

/// What the LR range test iterates: `EpochPasses` over a range with epochs
/// (a `Batches`, const or not), else the range itself.
template <typename Range>
decltype(auto) passes_of(Range& range) {
  if constexpr (HasEpochPasses<std::remove_const_t<Range>>::value) {
    return EpochPasses<std::remove_const_t<Range>>(range);
  } else {
    return (range);
  }
}

} // namespace detail
} // namespace dlcore
