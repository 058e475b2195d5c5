#pragma once

// The one state format of dlcore's stateful components (schedulers,
// TopKTopPSelector, HashtagResampler, Batches), written into a LibTorch
// archive (torch::serialize::OutputArchive):
//
// - `type`: a string, "dlcore." followed by the component's class name
//   ("dlcore.StepLR");
// - `version`: an integer >= 1, the layout of the component's fields; a
//   component reads every version from 1 to its own and refuses newer ones;
// - one entry per named field: an integer, a float, a bool, a string, a list
//   of floats, a list of integers, a tensor, or a nested archive (the state of
//   a child component).
//
// StateWriter writes it; StateReader checks the type and version when it is
// built and reads fields by name, each checked for its kind (and a tensor for
// its dtype and shape), so that every error names the component, the field,
// what was expected and what the archive holds. Files are written and checked
// by detail/archive_check.h (save_archive_file, load_archive_file); the
// format is described in docs/state.md.

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <c10/util/Exception.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace dlcore {
namespace detail {

/// The type name a component's state carries: "dlcore." + `name`.
inline std::string state_type_name(const std::string& name) {
  return "dlcore." + name;
}

/// An entry of `archive`, or an undefined (None) IValue when it has none.
inline c10::IValue state_entry(
    torch::serialize::InputArchive& archive, const std::string& key) {
  c10::IValue value;
  if (!archive.try_read(key, value)) {
    return c10::IValue();
  }
  return value;
}

/// What an archive entry holds, for messages: "an integer (3)", "a list of
/// floats", "a Long tensor of shape [2, 3]", ...
inline std::string state_kind_of(const c10::IValue& v) {
  std::ostringstream out;
  if (v.isNone()) {
    out << "nothing";
  } else if (v.isBool()) {
    out << "a bool (" << (v.toBool() ? "true" : "false") << ")";
  } else if (v.isInt()) {
    out << "an integer (" << v.toInt() << ")";
  } else if (v.isDouble()) {
    out << "a float (" << v.toDouble() << ")";
  } else if (v.isString()) {
    out << "a string (\"" << v.toStringRef() << "\")";
  } else if (v.isDoubleList()) {
    out << "a list of " << v.toDoubleList().size() << " floats";
  } else if (v.isIntList()) {
    out << "a list of " << v.toIntList().size() << " integers";
  } else if (v.isTensor()) {
    const at::Tensor& t = v.toTensor();
    out << "a " << (t.device().is_cpu() ? "" : t.device().str() + " ")
        << c10::toString(t.scalar_type()) << " tensor of shape " << t.sizes();
  } else if (v.isObject()) {
    out << "a nested archive";
  } else {
    out << "a value of kind " << v.tagKind();
  }
  return out.str();
}

/// What state `archive` holds, for messages: "a dlcore.StepLR state", or for
/// the formats before this one (no `type` entry) "a dlcore.Batches state of
/// the legacy format", or "no `type` entry (not a dlcore state)". The
/// schedulers' legacy type names lack the "dlcore." prefix, which is added.
inline std::string describe_state(torch::serialize::InputArchive& archive) {
  const c10::IValue type = state_entry(archive, "type");
  if (type.isString()) {
    std::string name = type.toStringRef();
    if (name.find('.') == std::string::npos) {
      name = state_type_name(name);
    }
    return "a " + name + " state";
  }
  if (!type.isNone()) {
    return "a `type` entry that is " + state_kind_of(type);
  }
  // The legacy layouts, recognized by a key only they have.
  const char* legacy = nullptr;
  if (!state_entry(archive, "ckp").isNone()) {
    legacy = "TopKTopPSelector";
  } else if (!state_entry(archive, "dlcore.Batches").isNone()) {
    legacy = "Batches";
  } else if (!state_entry(archive, "num_tags").isNone()) {
    legacy = "HashtagResampler";
  }
  if (legacy != nullptr) {
    return "a " + state_type_name(legacy) + " state of the legacy format";
  }
  return "no `type` entry (not a dlcore state)";
}

/// Whether `archive` holds a state of this format (it has a `type` entry);
/// components whose earlier format had none read that format otherwise.
inline bool holds_state(torch::serialize::InputArchive& archive) {
  return !state_entry(archive, "type").isNone();
}

/// Writes a component's state: `type` and `version` on construction, then
/// one entry per field. Field names are unique per state; `type` and
/// `version` are reserved.
///
/// Example:
///   detail::StateWriter state(archive, "Batches", 2);
///   state.put_int("epoch", epoch_).put_bool("shuffle", options_.shuffle());
class StateWriter {
 public:
  /// Writes `type` ("dlcore." + `name`) and `version` (>= 1) into
  /// `archive`, which must outlive the writer.
  StateWriter(
      torch::serialize::OutputArchive& archive,
      const std::string& name,
      int64_t version)
      : archive_(archive) {
    TORCH_INTERNAL_ASSERT(version >= 1, "state versions start at 1");
    archive_.write("type", c10::IValue(state_type_name(name)));
    archive_.write("version", c10::IValue(version));
  }

  /// An integer field.
  StateWriter& put_int(const std::string& field, int64_t value) {
    return put(field, c10::IValue(value));
  }
  /// A float field.
  StateWriter& put_double(const std::string& field, double value) {
    return put(field, c10::IValue(value));
  }
  /// A bool field.
  StateWriter& put_bool(const std::string& field, bool value) {
    return put(field, c10::IValue(value));
  }
  /// A string field.
  StateWriter& put_string(const std::string& field, const std::string& value) {
    return put(field, c10::IValue(value));
  }
  /// A list of floats.
  StateWriter& put_doubles(
      const std::string& field, const std::vector<double>& value) {
    return put(field, c10::IValue(value));
  }
  /// A list of integers.
  StateWriter& put_ints(
      const std::string& field, const std::vector<int64_t>& value) {
    return put(field, c10::IValue(value));
  }
  /// A tensor, stored as a buffer (its data in its own archive record).
  StateWriter& put_tensor(const std::string& field, const at::Tensor& value) {
    check_name(field);
    archive_.write(field, value, /*is_buffer=*/true);
    return *this;
  }
  /// A nested archive, e.g. a child component's state.
  StateWriter& put_archive(
      const std::string& field, torch::serialize::OutputArchive& value) {
    check_name(field);
    archive_.write(field, value);
    return *this;
  }

 private:
  static void check_name(const std::string& field) {
    TORCH_INTERNAL_ASSERT(
        field != "type" && field != "version", "reserved state field ", field);
  }
  StateWriter& put(const std::string& field, const c10::IValue& value) {
    check_name(field);
    archive_.write(field, value);
    return *this;
  }

  torch::serialize::OutputArchive& archive_;
};

/// Reads a component's state: checks `type` and `version` on construction,
/// then reads fields by name. Every error is a `c10::Error` that starts with
/// `owner` (how the component names itself in messages) and names the
/// field, what was expected and what the archive holds:
/// - another type: "expected a dlcore.StepLR state, but the archive holds a
///   dlcore.HashtagResampler state";
/// - a newer version: "the dlcore.StepLR state has version 3, but this build
///   reads versions 1 to 1";
/// - a missing field: "the dlcore.StepLR state (version 1) has no field
///   `gamma`";
/// - a field of another kind, dtype or shape: "field `ranges` of the
///   dlcore.TopKTopPSelector state must be a CPU Long tensor of shape
///   [*, 2], but it is a Float tensor of shape [3]".
/// The type may also be the bare class name ("StepLR"), as the schedulers
/// wrote it before this format.
class StateReader {
 public:
  /// Checks that `archive` (which must outlive the reader) holds a state of
  /// type "dlcore." + `name` (or the bare `name`) with a version in [1,
  /// max_version].
  StateReader(
      torch::serialize::InputArchive& archive,
      std::string owner,
      const std::string& name,
      int64_t max_version)
      : archive_(archive),
        owner_(std::move(owner)),
        type_(state_type_name(name)) {
    const c10::IValue type = state_entry(archive_, "type");
    TORCH_CHECK(
        type.isString() &&
            (type.toStringRef() == type_ || type.toStringRef() == name),
        owner_,
        ": expected a ",
        type_,
        " state, but the archive holds ",
        describe_state(archive_));
    const c10::IValue version = state_entry(archive_, "version");
    TORCH_CHECK(
        version.isInt(),
        owner_,
        ": the ",
        type_,
        " state's `version` must be an integer, but it is ",
        state_kind_of(version));
    version_ = version.toInt();
    TORCH_CHECK(
        version_ >= 1,
        owner_,
        ": the ",
        type_,
        " state has version ",
        version_,
        ", but versions start at 1");
    TORCH_CHECK(
        version_ <= max_version,
        owner_,
        ": the ",
        type_,
        " state has version ",
        version_,
        ", but this build reads versions 1 to ",
        max_version,
        " (it was written by a newer dlcore)");
  }

  /// The state's version (1 to the reader's maximum).
  int64_t version() const noexcept {
    return version_;
  }
  /// The type name, e.g. "dlcore.StepLR".
  const std::string& type() const noexcept {
    return type_;
  }
  /// The owner named in messages.
  const std::string& owner() const noexcept {
    return owner_;
  }

  /// Whether the state has `field`.
  bool has(const std::string& field) const {
    return !state_entry(archive_, field).isNone();
  }

  /// A required field, of any kind.
  c10::IValue read(const std::string& field) const {
    c10::IValue value = state_entry(archive_, field);
    TORCH_CHECK(
        !value.isNone(),
        owner_,
        ": the ",
        type_,
        " state (version ",
        version_,
        ") has no field `",
        field,
        "`");
    return value;
  }

  /// A required integer field.
  int64_t read_int(const std::string& field) const {
    const c10::IValue v = read(field);
    expect(v.isInt(), field, "an integer", v);
    return v.toInt();
  }
  /// A required float field.
  double read_double(const std::string& field) const {
    const c10::IValue v = read(field);
    expect(v.isDouble(), field, "a float", v);
    return v.toDouble();
  }
  /// A required bool field.
  bool read_bool(const std::string& field) const {
    const c10::IValue v = read(field);
    expect(v.isBool(), field, "a bool", v);
    return v.toBool();
  }
  /// A required string field.
  std::string read_string(const std::string& field) const {
    const c10::IValue v = read(field);
    expect(v.isString(), field, "a string", v);
    return v.toStringRef();
  }
  /// A required list of floats.
  std::vector<double> read_doubles(const std::string& field) const {
    const c10::IValue v = read(field);
    expect(v.isDoubleList(), field, "a list of floats", v);
    return v.toDoubleVector();
  }
  /// A required list of integers.
  std::vector<int64_t> read_ints(const std::string& field) const {
    const c10::IValue v = read(field);
    expect(v.isIntList(), field, "a list of integers", v);
    return v.toIntVector();
  }

  /// A CPU tensor of `dtype` whose shape matches `shape` (-1: any size in
  /// that dimension), made contiguous.
  at::Tensor read_tensor(
      const std::string& field,
      at::ScalarType dtype,
      const std::vector<int64_t>& shape) const {
    const c10::IValue v = read(field);
    bool ok = v.isTensor();
    if (ok) {
      const at::Tensor& t = v.toTensor();
      ok = t.defined() && t.device().is_cpu() && t.scalar_type() == dtype &&
           t.dim() == static_cast<int64_t>(shape.size());
      for (std::size_t d = 0; ok && d < shape.size(); ++d) {
        ok = shape[d] < 0 || t.size(static_cast<int64_t>(d)) == shape[d];
      }
    }
    if (!ok) {
      std::ostringstream want;
      want << "a CPU " << c10::toString(dtype) << " tensor of shape [";
      for (std::size_t d = 0; d < shape.size(); ++d) {
        want << (d > 0 ? ", " : "");
        if (shape[d] < 0) {
          want << "*";
        } else {
          want << shape[d];
        }
      }
      want << "]";
      expect(false, field, want.str(), v);
    }
    return v.toTensor().contiguous();
  }

  /// A nested archive (e.g. a child component's state) into `out`.
  void read_archive(
      const std::string& field, torch::serialize::InputArchive& out) const {
    const c10::IValue v = read(field);
    expect(
        v.isObject() && archive_.try_read(field, out),
        field,
        "a nested archive",
        v);
  }

  /// Throws "field `f` of the <type> state must be <what>, but it is <v>"
  /// unless `ok`; components use it for their own checks of a field's value.
  void expect(
      bool ok,
      const std::string& field,
      const std::string& what,
      const c10::IValue& value) const {
    TORCH_CHECK(
        ok,
        owner_,
        ": field `",
        field,
        "` of the ",
        type_,
        " state must be ",
        what,
        ", but it is ",
        state_kind_of(value));
  }

 private:
  torch::serialize::InputArchive& archive_;
  std::string owner_;
  std::string type_;
  int64_t version_ = 0;
};

} // namespace detail
} // namespace dlcore
