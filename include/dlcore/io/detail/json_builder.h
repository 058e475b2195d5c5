#pragma once

// The parser behind dlcore::parse_json: nlohmann's SAX parser (which checks
// the grammar, UTF-8 and surrogate pairs, iteratively) with a handler that
// builds an ordered_json and adds what a file from an untrusted source needs:
// a nesting limit (nlohmann's copy and dump recurse), duplicate keys refused,
// no non-finite numbers, and objects built in linear time (ordered_json's
// own insert searches the keys one by one, so n keys cost n^2 / 2 string
// comparisons).

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace dlcore {
namespace detail {

/// The deepest nesting of arrays and objects that `parse_json` accepts.
inline constexpr std::size_t kJsonMaxDepth = 512;

/// nlohmann's exception text without its "[json.exception.<kind>.<id>] " tag.
inline std::string json_exception_text(const std::exception& e) {
  std::string what = e.what();
  if (what.rfind("[json.exception.", 0) == 0) {
    const std::size_t end = what.find("] ");
    if (end != std::string::npos) {
      what.erase(0, end + 2);
    }
  }
  return what;
}

/// A SAX handler (nlohmann::json_sax's interface) that builds `root`. A
/// callback that finds a problem records it in `error` and returns false,
/// which stops the parser.
template <typename JsonT>
class JsonBuilder {
 public:
  using number_integer_t = typename JsonT::number_integer_t;
  using number_unsigned_t = typename JsonT::number_unsigned_t;
  using number_float_t = typename JsonT::number_float_t;
  using string_t = typename JsonT::string_t;
  using binary_t = typename JsonT::binary_t;
  using object_t = typename JsonT::object_t;
  /// The vector that ordered_json's object type derives from: appending to
  /// it skips the linear key search (duplicates are found by `keys_`).
  using members_t = typename object_t::Container;

  explicit JsonBuilder(JsonT& root) : root_(root) {}

  /// The problem found, empty when there was none.
  const std::string& error() const {
    return error_;
  }

  bool null() {
    return add(JsonT(nullptr));
  }
  bool boolean(bool v) {
    return add(JsonT(v));
  }
  bool number_integer(number_integer_t v) {
    return add(JsonT(v));
  }
  bool number_unsigned(number_unsigned_t v) {
    return add(JsonT(v));
  }
  bool number_float(number_float_t v, const string_t& text) {
    if (!std::isfinite(v)) {
      // nlohmann reports overflow itself; this keeps the rule local.
      return fail("the number " + text + " is outside the range of a double");
    }
    return add(JsonT(v));
  }
  bool string(string_t& s) {
    return add(JsonT(std::move(s)));
  }
  bool binary(binary_t& /*unused*/) {
    return fail("binary values are not JSON");
  }
  bool start_object(std::size_t /*unused*/) {
    if (!open(JsonT::object())) {
      return false;
    }
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& k) {
    if (!keys_.back().insert(k).second) {
      return fail("duplicate key '" + k + "' in an object");
    }
    auto& members =
        static_cast<members_t&>(stack_.back()->template get_ref<object_t&>());
    members.emplace_back(std::move(k), nullptr);
    member_ = &members.back().second;
    return true;
  }
  bool end_object() {
    keys_.pop_back();
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t /*unused*/) {
    return open(JsonT::array());
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  bool parse_error(
      std::size_t position,
      const std::string& /*unused*/,
      const std::exception& e) {
    return fail(
        json_exception_text(e) + " (byte " + std::to_string(position) + ")");
  }

 private:
  bool fail(std::string what) {
    if (error_.empty()) {
      error_ = std::move(what);
    }
    return false;
  }

  /// Places `v` where the parser is: the root, the next element of the open
  /// array, or the member whose key was just read. Returns where it went.
  JsonT* place(JsonT&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    JsonT& parent = *stack_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    *member_ = std::move(v);
    return member_;
  }
  bool add(JsonT&& v) {
    place(std::move(v));
    return true;
  }
  bool open(JsonT&& container) {
    if (stack_.size() >= kJsonMaxDepth) {
      return fail(
          "arrays and objects nested deeper than " +
          std::to_string(kJsonMaxDepth) + " levels");
    }
    stack_.push_back(place(std::move(container)));
    return true;
  }

  JsonT& root_;
  /// The open arrays and objects, outermost first. An element of a parent
  /// moves only when the parent grows, which happens after the element is
  /// closed and popped.
  std::vector<JsonT*> stack_;
  /// The keys of each open object.
  std::vector<std::unordered_set<std::string>> keys_;
  JsonT* member_ = nullptr;
  std::string error_;
};

} // namespace detail
} // namespace dlcore
