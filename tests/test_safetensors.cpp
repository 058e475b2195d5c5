#include <dlcore/nn/safetensors.h>

#include <dlcore/nn/models/lenet5.h>

#include "golden/safetensors.h"

#include <sys/stat.h>
#include <sys/types.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

namespace {

using Catch::Contains;

/// A fresh, empty folder for one test.
std::filesystem::path fresh_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("dlcore_test_safetensors_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(
      (std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  // A new file rather than a truncated one: ext4 flushes a file that was
  // truncated and rewritten when it is closed, which made the byte-change
  // test wait on the disk thousands of times.
  std::filesystem::remove(path);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string u64le(uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) {
    s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  return s;
}

/// A file of the format: length, `header` as given (no padding), `data`.
std::string st_bytes(const std::string& header, const std::string& data = "") {
  return u64le(header.size()) + header + data;
}

/// The message of the `c10::Error` that `f` throws; any other exception
/// propagates (and fails the test), no exception gives "(no error)".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "(no error)";
}

/// Same dtype, shape and bytes (NaN-safe, unlike torch::equal).
bool same_bits(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) {
    return false;
  }
  const auto ca = a.cpu().contiguous();
  const auto cb = b.cpu().contiguous();
  return ca.nbytes() == cb.nbytes() &&
         (ca.nbytes() == 0 ||
          std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0);
}

bool same_tensors(
    const std::map<std::string, torch::Tensor>& a,
    const std::map<std::string, torch::Tensor>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (const auto& [name, t] : a) {
    const auto it = b.find(name);
    if (it == b.end() || !same_bits(t, it->second)) {
      return false;
    }
  }
  return true;
}

struct NetImpl : torch::nn::Module {
  explicit NetImpl(int64_t classes, uint64_t seed = 0) {
    torch::manual_seed(seed);
    register_module("conv", torch::nn::Conv2d(1, 2, 3));
    register_module("bn", torch::nn::BatchNorm2d(2));
    register_module("fc", torch::nn::Linear(2, classes));
  }
};
TORCH_MODULE(Net);

bool same_state(const torch::nn::Module& a, const torch::nn::Module& b) {
  const auto sa = dlcore::state_dict(a);
  const auto sb = dlcore::state_dict(b);
  if (sa.size() != sb.size()) {
    return false;
  }
  for (std::size_t i = 0; i < sa.size(); ++i) {
    if (sa[i].first != sb[i].first || !same_bits(sa[i].second, sb[i].second)) {
      return false;
    }
  }
  return true;
}

c10::ScalarType golden_dtype(const std::string& name) {
  const auto* d = dlcore::detail::safetensors_dtype(name);
  REQUIRE(d != nullptr);
  return d->type;
}

/// A golden tensor as LibTorch builds it from the recorded values.
torch::Tensor golden_tensor(const golden_safetensors::Tensor& g) {
  const auto dtype = golden_dtype(g.dtype);
  torch::Tensor flat =
      g.floats.empty()
          ? torch::tensor(g.ints, torch::kLong)
          : torch::tensor(g.floats, torch::TensorOptions(torch::kDouble));
  if (g.floats.empty() && g.ints.empty()) {
    flat = torch::empty({0}, torch::kDouble);
  }
  return flat.to(dtype).reshape(g.shape);
}

} // namespace

TEST_CASE(
    "save_safetensors and read_safetensors round-trip every dtype, 0-d, "
    "empty and non-contiguous tensors",
    "[safetensors]") {
  torch::manual_seed(20261204);
  const auto wide = [](c10::ScalarType t, int64_t lo, int64_t hi) {
    return torch::randint(lo, hi, {3, 5}, torch::TensorOptions(t));
  };
  auto f32 = torch::randn({4, 3}).t(); // non-contiguous
  f32[0][0] = std::numeric_limits<float>::quiet_NaN();
  f32[1][1] = -std::numeric_limits<float>::infinity();
  f32[2][2] = -0.0f;
  const auto f64_base = torch::randn({10}, torch::kDouble);
  const auto f64 = f64_base.slice(0, 1, 10, 2); // offset and stride 2
  auto param = torch::randn({2, 2}).requires_grad_(true);
  const std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"f32.transposed", f32},
      {"f64.strided", f64},
      {"f16", torch::randn({2, 3}).to(torch::kHalf)},
      {"bf16", torch::randn({3, 2}).to(torch::kBFloat16).t()},
      {"i64", wide(torch::kLong, -(int64_t(1) << 62), int64_t(1) << 62)},
      {"i32", wide(torch::kInt, INT32_MIN, INT32_MAX)},
      {"i16", wide(torch::kShort, INT16_MIN, INT16_MAX)},
      {"i8", wide(torch::kChar, INT8_MIN, INT8_MAX)},
      {"u8", wide(torch::kByte, 0, 256)},
      {"bool", wide(torch::kLong, 0, 2).to(torch::kBool)},
      {"scalar.f64", torch::tensor(3.25, torch::kDouble)},
      {"scalar.bool", torch::tensor(true)},
      {"empty.i32", torch::empty({0, 5}, torch::kInt)},
      {"empty.bool", torch::empty({2, 0}, torch::kBool)},
      {"param", param},
      {"caf\xc3\xa9", torch::ones({1}, torch::kHalf)},
  };
  const auto dir = fresh_dir("roundtrip");
  const auto path = (dir / "all.safetensors").string();
  dlcore::save_safetensors(tensors, path, {{"format", "pt"}, {"step", "7"}});
  // Atomic write: no temporary file is left next to it.
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  CHECK(names == std::vector<std::string>{"all.safetensors"});

  const auto file = dlcore::read_safetensors_file(path);
  CHECK(file.checksum_verified);
  CHECK(file.metadata.size() == 3);
  CHECK(file.metadata.at("format") == "pt");
  CHECK(file.metadata.at("step") == "7");
  CHECK(file.metadata.count(dlcore::kSafetensorsChecksumKey) == 1);
  REQUIRE(file.tensors.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    INFO(name);
    const auto& got = file.tensors.at(name);
    CHECK(same_bits(got, t));
    CHECK(got.is_contiguous());
    CHECK(got.device().is_cpu());
    CHECK_FALSE(got.requires_grad());
  }
  CHECK(same_tensors(dlcore::read_safetensors(path), file.tensors));
  // The source tensors are untouched (copies were written).
  CHECK(param.requires_grad());
  CHECK_FALSE(f32.is_contiguous());
}

TEST_CASE(
    "save_weights_safetensors and load_weights_safetensors round-trip LeNet5 "
    "and a model with buffers",
    "[safetensors]") {
  const auto dir = fresh_dir("module");
  {
    torch::manual_seed(1);
    dlcore::LeNet5 a(10);
    torch::manual_seed(2);
    dlcore::LeNet5 b(10);
    REQUIRE_FALSE(same_state(*a, *b));
    const auto path = (dir / "lenet5.safetensors").string();
    dlcore::save_weights_safetensors(*a, path, {{"model", "LeNet5"}});
    // The file holds exactly the state's names.
    const auto file = dlcore::read_safetensors_file(path);
    std::vector<std::string> file_names;
    for (const auto& [name, t] : file.tensors) {
      (void)t;
      file_names.push_back(name);
    }
    std::vector<std::string> state_names;
    for (const auto& [name, t] : dlcore::state_dict(*a)) {
      (void)t;
      state_names.push_back(name);
    }
    std::sort(state_names.begin(), state_names.end());
    CHECK(file_names == state_names);
    CHECK(file.metadata.at("model") == "LeNet5");

    const auto fc3 = b->named_parameters()["fc3.weight"];
    const auto impl = fc3.unsafeGetTensorImpl();
    const auto report = dlcore::load_weights_safetensors(*b, path);
    CHECK(same_state(*a, *b));
    CHECK(report.loaded.size() == state_names.size());
    CHECK(report.missing.empty());
    CHECK(report.unexpected.empty());
    // In place: the module's tensors keep their identity.
    CHECK(b->named_parameters()["fc3.weight"].unsafeGetTensorImpl() == impl);
    CHECK(b->named_parameters()["fc3.weight"].requires_grad());
    // The loaded model computes what the saved one does.
    torch::manual_seed(3);
    const auto x = torch::randn({2, 1, 28, 28});
    CHECK(torch::equal(a->forward(x), b->forward(x)));
  }
  {
    Net a(3, 1);
    {
      torch::NoGradGuard g;
      a->named_buffers()["bn.running_var"].fill_(2.5);
      a->named_buffers()["bn.num_batches_tracked"].fill_(11);
    }
    Net b(3, 2);
    const auto path = (dir / "net.safetensors").string();
    dlcore::save_weights_safetensors(*a, path);
    CHECK(
        dlcore::read_safetensors(path).at("bn.num_batches_tracked").dtype() ==
        torch::kLong);
    dlcore::load_weights_safetensors(*b, path);
    CHECK(same_state(*a, *b));
  }
}

TEST_CASE(
    "load_weights_safetensors reports missing, unexpected, shape and dtype "
    "mismatches and loads nothing unless all match",
    "[safetensors]") {
  const auto dir = fresh_dir("strict");
  Net source(3, 1);
  auto state = dlcore::state_dict(*source);
  const auto path = (dir / "w.safetensors").string();

  SECTION("missing and unexpected names: an error when strict") {
    std::vector<std::pair<std::string, torch::Tensor>> edited;
    for (const auto& [name, t] : state) {
      if (name != "fc.bias") {
        edited.emplace_back(name, t);
      }
    }
    edited.emplace_back("extra.weight", torch::ones({2}));
    dlcore::save_safetensors(edited, path);
    Net target(3, 2);
    Net before(3, 2);
    const auto m =
        error_of([&] { dlcore::load_weights_safetensors(*target, path); });
    CHECK_THAT(
        m,
        Contains(
            "load_weights_safetensors: '" + path +
            "' does not match the model (nothing was loaded)"));
    CHECK_THAT(m, Contains("missing in the file (1): fc.bias"));
    CHECK_THAT(m, Contains("unexpected in the file (1): extra.weight"));
    CHECK_THAT(m, Contains("strict(false)"));
    CHECK(same_state(*target, *before));

    const auto report = dlcore::load_weights_safetensors(
        *target, path, dlcore::LoadWeightsOptions().strict(false));
    CHECK(report.missing == std::vector<std::string>{"fc.bias"});
    CHECK(report.unexpected == std::vector<std::string>{"extra.weight"});
    CHECK(report.loaded.size() == state.size() - 1);
    CHECK(torch::equal(
        target->named_parameters()["fc.weight"],
        source->named_parameters()["fc.weight"]));
    CHECK(torch::equal(
        target->named_parameters()["fc.bias"],
        before->named_parameters()["fc.bias"]));
  }

  SECTION("ignore skips names on both sides") {
    dlcore::save_weights_safetensors(*source, path);
    Net target(5, 2);
    const auto report = dlcore::load_weights_safetensors(
        *target, path, dlcore::LoadWeightsOptions().ignore("^fc\\."));
    CHECK(report.ignored == std::vector<std::string>{"fc.weight", "fc.bias"});
    CHECK(report.missing.empty());
    CHECK(report.unexpected.empty());
    CHECK(torch::equal(
        target->named_parameters()["conv.weight"],
        source->named_parameters()["conv.weight"]));
    CHECK_THAT(
        error_of([&] {
          dlcore::load_weights_safetensors(
              *target, path, dlcore::LoadWeightsOptions().ignore("("));
        }),
        Contains("load_weights_safetensors: expected ignore to be a valid "
                 "ECMAScript regex, but got '('"));
  }

  SECTION("shape and dtype mismatches: errors even when not strict") {
    std::vector<std::pair<std::string, torch::Tensor>> edited;
    for (const auto& [name, t] : state) {
      edited.emplace_back(
          name, name == "conv.weight" ? t.to(torch::kDouble) : t);
    }
    dlcore::save_safetensors(edited, path);
    Net target(5, 2);
    Net before(5, 2);
    const auto m = error_of([&] {
      dlcore::load_weights_safetensors(
          *target, path, dlcore::LoadWeightsOptions().strict(false));
    });
    CHECK_THAT(m, Contains("nothing was loaded"));
    CHECK_THAT(
        m,
        Contains("shape mismatches (2): fc.weight: file [3, 2] vs model "
                 "[5, 2], fc.bias: file [3] vs model [5]"));
    CHECK_THAT(
        m,
        Contains("dtype mismatches (1): conv.weight: file F64 vs model F32"));
    CHECK_THAT(m, !Contains("missing in the file"));
    CHECK(same_state(*target, *before));
  }
}

TEST_CASE(
    "read_safetensors refuses every structural error with a message naming "
    "the file and the entry",
    "[safetensors]") {
  const auto dir = fresh_dir("structure");
  const auto path = (dir / "bad.safetensors").string();
  const std::string f32x2 = std::string(8, '\0'); // 2 float zeros
  const auto entry = [](const std::string& name,
                        const std::string& dtype,
                        const std::string& shape,
                        const std::string& offsets) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
           ",\"data_offsets\":" + offsets + "}";
  };
  const std::string good_a = entry("a", "F32", "[2]", "[0,8]");
  struct Case {
    const char* what;
    std::string bytes;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"a file shorter than the length field",
       std::string(5, '\0'),
       "it has 5 bytes, fewer than the 8 of the header length"},
      {"a header length above the bound",
       u64le(uint64_t(1) << 63) + "{}",
       "the header length 9223372036854775808 exceeds the bound of "
       "100000000 bytes"},
      {"a header length beyond the file",
       u64le(1000) + "{}",
       "the header length 1000 exceeds the 2 bytes after the length field"},
      {"an empty header", u64le(0), "the header is not valid JSON"},
      {"JSON cut short", st_bytes("{\"a\":"), "the header is not valid JSON"},
      {"JSON followed by garbage",
       st_bytes("{} x"),
       "the header is not valid JSON"},
      // nlohmann/json alone would stop at the NUL and accept "{}".
      {"a NUL byte in the header",
       st_bytes(std::string("{}\0x", 4)),
       "the header is not valid JSON (a NUL byte at byte 2 of the header)"},
      {"a key that is not UTF-8",
       st_bytes("{\"\xff\":1}"),
       "the header is not valid JSON"},
      {"a header that is not an object",
       st_bytes("[]"),
       "the header must be a JSON object, but is an array"},
      {"a duplicate tensor name",
       st_bytes(
           "{" + good_a + "," + entry("a", "F32", "[2]", "[8,16]") + "}",
           f32x2 + f32x2),
       "the header has the key \"a\" twice (duplicate keys are not allowed)"},
      {"a duplicate metadata key",
       st_bytes("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}"),
       "__metadata__ has the key \"k\" twice"},
      {"__metadata__ twice",
       st_bytes("{\"__metadata__\":{},\"__metadata__\":{}}"),
       "the header has the key \"__metadata__\" twice"},
      {"a metadata value that is not a string",
       st_bytes("{\"__metadata__\":{\"k\":1}}"),
       "__metadata__ value of \"k\" must be a string, but is a number"},
      {"__metadata__ that is not an object",
       st_bytes("{\"__metadata__\":[]}"),
       "__metadata__ must be an object of strings, but is an array"},
      {"an entry that is not an object",
       st_bytes("{\"a\":1}"),
       "entry \"a\" must be an object {dtype, shape, data_offsets}, but is a "
       "number"},
      {"a missing field",
       st_bytes("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", f32x2),
       "entry \"a\": the field \"shape\" is missing"},
      {"an unknown field",
       st_bytes(
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"offsets\":[0,8]}}",
           f32x2),
       "entry \"a\": unknown field \"offsets\""},
      {"a duplicate field",
       st_bytes("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}"),
       "entry \"a\": the field \"dtype\" appears twice"},
      {"a dtype that is not a string",
       st_bytes("{\"a\":{\"dtype\":32}}"),
       "entry \"a\": dtype must be a string, but is a number"},
      {"an unknown dtype",
       st_bytes("{" + entry("a", "F31", "[2]", "[0,8]") + "}", f32x2),
       "entry \"a\": dtype \"F31\" is not a safetensors dtype (expected one "
       "of BOOL, U8, I8, I16, F16, BF16, I32, F32, F64, I64)"},
      {"a dtype LibTorch does not hold",
       st_bytes("{" + entry("a", "U16", "[4]", "[0,8]") + "}", f32x2),
       "entry \"a\": dtype \"U16\" has no LibTorch type that dlcore reads"},
      {"a negative dimension",
       st_bytes("{" + entry("a", "F32", "[-1]", "[0,8]") + "}", f32x2),
       "entry \"a\": shape has a negative dimension (-1)"},
      {"a fractional dimension",
       st_bytes("{" + entry("a", "F32", "[2.0]", "[0,8]") + "}", f32x2),
       "entry \"a\": shape must hold non-negative integers, but has 2.0"},
      {"a nested shape",
       st_bytes("{" + entry("a", "F32", "[[2]]", "[0,8]") + "}", f32x2),
       "entry \"a\": shape must be an array of non-negative integers, but has "
       "an array"},
      {"a shape that is not an array",
       st_bytes("{" + entry("a", "F32", "2", "[0,8]") + "}", f32x2),
       "entry \"a\": shape must be an array of non-negative integers, but has "
       "a number"},
      {"too many dimensions",
       st_bytes(
           "{" +
               entry(
                   "a",
                   "F32",
                   "[2" +
                       [] {
                         std::string s;
                         for (int i = 0; i < 64; ++i) {
                           s += ",1";
                         }
                         return s;
                       }() +
                       "]",
                   "[0,8]") +
               "}",
           f32x2),
       "entry \"a\": shape has more than 64 dimensions"},
      {"a dimension beyond int64",
       st_bytes(
           "{" + entry("a", "F32", "[9223372036854775808]", "[0,8]") + "}",
           f32x2),
       "entry \"a\": shape dimension 9223372036854775808 exceeds int64"},
      {"a shape whose size overflows",
       st_bytes(
           "{" + entry("a", "F32", "[4294967296,4294967296]", "[0,8]") + "}",
           f32x2),
       "entry \"a\": shape [4294967296, 4294967296] is too large (its size "
       "overflows int64)"},
      {"an empty shape whose strides overflow",
       st_bytes(
           "{" + entry("a", "F32", "[0,4611686018427387904,4]", "[0,0]") + "}"),
       "entry \"a\": shape [0, 4611686018427387904, 4] is too large"},
      {"three offsets",
       st_bytes("{" + entry("a", "F32", "[2]", "[0,8,8]") + "}", f32x2),
       "entry \"a\": data_offsets has more than 2 numbers"},
      {"one offset",
       st_bytes("{" + entry("a", "F32", "[2]", "[8]") + "}", f32x2),
       "entry \"a\": data_offsets must hold 2 numbers [begin, end], but has 1"},
      {"a negative offset",
       st_bytes("{" + entry("a", "F32", "[2]", "[-8,0]") + "}", f32x2),
       "entry \"a\": data_offsets has a negative offset (-8)"},
      {"offsets that end before they begin",
       st_bytes("{" + entry("a", "F32", "[0]", "[8,0]") + "}", f32x2),
       "entry \"a\": data_offsets [8, 0] end before they begin"},
      {"offsets that do not match the shape",
       st_bytes("{" + entry("a", "F32", "[2]", "[0,4]") + "}", f32x2),
       "entry \"a\": data_offsets [0, 4] span 4 bytes, but shape [2] of F32 "
       "needs 8"},
      {"offsets beyond the data area",
       st_bytes("{" + entry("a", "F32", "[2]", "[8,16]") + "}", f32x2),
       "entry \"a\": data_offsets [8, 16] end beyond the data area (8 bytes)"},
      {"a gap between tensors",
       st_bytes(
           "{" + entry("a", "F32", "[1]", "[0,4]") + "," +
               entry("b", "F32", "[1]", "[8,12]") + "}",
           std::string(12, '\0')),
       "entry \"b\": data_offsets [8, 12] leave a gap of 4 bytes after offset "
       "4"},
      {"a gap at the start",
       st_bytes("{" + entry("a", "F32", "[1]", "[4,8]") + "}", f32x2),
       "entry \"a\": data_offsets [4, 8] leave a gap of 4 bytes after offset "
       "0"},
      {"overlapping tensors",
       st_bytes(
           "{" + entry("a", "F32", "[2]", "[0,8]") + "," +
               entry("b", "F32", "[2]", "[4,12]") + "}",
           std::string(12, '\0')),
       "entry \"b\": data_offsets [4, 12] overlap entry \"a\" [0, 8]"},
      {"bytes after the last tensor",
       st_bytes("{" + good_a + "}", f32x2 + "xyz"),
       "the data area has 11 bytes, but the tensors cover only 8 (trailing "
       "bytes after the last tensor)"},
      {"data but no tensors",
       st_bytes("{}", "x"),
       "the data area has 1 bytes, but the tensors cover only 0"},
      {"a BOOL byte other than 0 or 1",
       st_bytes(
           "{" + entry("m", "BOOL", "[3]", "[0,3]") + "}",
           std::string("\1\2\0", 3)),
       "entry \"m\": BOOL element 1 is the byte 2 (expected 0 or 1)"},
      {"a malformed checksum",
       st_bytes("{\"__metadata__\":{\"dlcore.crc32\":\"xyz\"}}"),
       "the checksum entry \"dlcore.crc32\" is \"xyz\", not of the form "
       "\"header=xxxxxxxx,data=xxxxxxxx\": the file is damaged"},
      {"a wrong header checksum",
       st_bytes("{\"__metadata__\":{\"dlcore.crc32\":\"header=00000000,data="
                "00000000\"}}"),
       "the header's CRC-32 is "},
      {"a checksum key one byte off",
       st_bytes("{\"__metadata__\":{\"dlcore.crc33\":\"x\"}}"),
       "the __metadata__ key \"dlcore.crc33\" differs from dlcore's checksum "
       "key \"dlcore.crc32\" in one byte: the file is damaged"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    write_bytes(path, c.bytes);
    const auto m = error_of([&] { dlcore::read_safetensors(path); });
    CHECK_THAT(m, Contains("read_safetensors: '" + path + "'"));
    CHECK_THAT(m, Contains(c.message));
    // The module loader reads through the same checks.
    Net net(3);
    CHECK_THAT(
        error_of([&] { dlcore::load_weights_safetensors(*net, path); }),
        Contains(c.message));
  }

  SECTION("a header length above the bound in a file that is long enough") {
    // A sparse file of 100 MB: the bound, not the file size, refuses it.
    write_bytes(path, u64le(dlcore::kSafetensorsMaxHeaderBytes + 1) + "{}");
    std::filesystem::resize_file(path, dlcore::kSafetensorsMaxHeaderBytes + 16);
    CHECK_THAT(
        error_of([&] { dlcore::read_safetensors(path); }),
        Contains("the header length 100000001 exceeds the bound of 100000000 "
                 "bytes"));
    std::filesystem::remove(path);
  }

  SECTION("a damaged data byte in a dlcore file") {
    dlcore::save_safetensors({{"a", torch::arange(4, torch::kFloat)}}, path);
    auto bytes = read_bytes(path);
    bytes[bytes.size() - 3] ^= 0x10;
    write_bytes(path, bytes);
    CHECK_THAT(
        error_of([&] { dlcore::read_safetensors(path); }),
        Contains("the tensor data is damaged"));
  }
}

TEST_CASE(
    "read_safetensors refuses folders, FIFOs, devices and missing files "
    "before opening them",
    "[safetensors]") {
  const auto dir = fresh_dir("kinds");
  CHECK_THAT(
      error_of([&] { dlcore::read_safetensors(dir.string()); }),
      Contains(
          "read_safetensors: expected a regular file, but '" + dir.string() +
          "' is a folder"));
  const auto fifo = (dir / "fifo.safetensors").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Opening a FIFO for reading would block until a writer comes: the test
  // would hang here if the reader opened before checking.
  CHECK_THAT(
      error_of([&] { dlcore::read_safetensors(fifo); }),
      Contains("expected a regular file, but '" + fifo + "' is a FIFO"));
  CHECK_THAT(
      error_of([&] { dlcore::read_safetensors("/dev/null"); }),
      Contains("'/dev/null' is a character device"));
  const auto missing = (dir / "missing.safetensors").string();
  CHECK_THAT(
      error_of([&] { dlcore::read_safetensors(missing); }),
      Contains(
          "read_safetensors: expected a readable file, but cannot open '" +
          missing + "': No such file or directory"));
}

TEST_CASE(
    "save_safetensors refuses what the format cannot hold and writes nothing",
    "[safetensors]") {
  const auto dir = fresh_dir("save_errors");
  const auto path = (dir / "x.safetensors").string();
  const auto t = torch::ones({2});
  struct Case {
    const char* what;
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    std::map<std::string, std::string> metadata;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"duplicate names",
       {{"a", t}, {"a", t}},
       {},
       "save_safetensors: expected distinct tensor names, but \"a\" appears "
       "twice (writing '" +
           path + "')"},
      {"the reserved name",
       {{"__metadata__", t}},
       {},
       "the tensor name \"__metadata__\" is reserved by the format"},
      {"the checksum key as metadata",
       {{"a", t}},
       {{"dlcore.crc32", "x"}},
       "the metadata key \"dlcore.crc32\" is reserved for dlcore's checksum"},
      {"a key one byte from the checksum key",
       {{"a", t}},
       {{"dlcore.crc3_", "x"}},
       "the metadata key \"dlcore.crc3_\" is reserved"},
      {"a name that is not UTF-8",
       {{"a\xff", t}},
       {},
       "expected UTF-8 text, but the tensor name \"a\xef\xbf\xbd\" is not"},
      {"a metadata value that is not UTF-8",
       {{"a", t}},
       {{"k", "\xc3"}},
       "expected UTF-8 text, but the value of the metadata key \"k\" is not"},
      {"an undefined tensor",
       {{"a", torch::Tensor()}},
       {},
       "tensor \"a\" is undefined"},
      {"a complex tensor",
       {{"z", torch::ones({2}, torch::kComplexFloat)}},
       {},
       "tensor \"z\" has dtype ComplexFloat, which dlcore does not write as "
       "safetensors (supported: BOOL, U8, I8, I16, F16, BF16, I32, F32, F64, "
       "I64"},
      {"a sparse tensor",
       {{"s", torch::ones({2, 2}).to_sparse()}},
       {},
       "expected dense (strided) tensors, but \"s\" has layout Sparse"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    CHECK_THAT(
        error_of(
            [&] { dlcore::save_safetensors(c.tensors, path, c.metadata); }),
        Contains(c.message));
    CHECK_FALSE(std::filesystem::exists(path));
  }
  // An unwritable place: a file where the folder should be.
  write_bytes((dir / "file").string(), "x");
  CHECK_THAT(
      error_of([&] {
        dlcore::save_safetensors({{"a", t}}, (dir / "file" / "x").string());
      }),
      Contains("save_safetensors: cannot create the folder"));
}

TEST_CASE(
    "save_safetensors writes the bytes the format's specification prescribes",
    "[safetensors]") {
  const auto dir = fresh_dir("spec");
  const auto path = (dir / "small.safetensors").string();
  // Given in the opposite of the file's order: the writer stores larger
  // dtypes first (F32 before I8), then by name.
  dlcore::save_safetensors(
      {{"b", torch::tensor({1, -2, 3}, torch::kChar)},
       {"a", torch::tensor({0.5f, -1.0f})}},
      path,
      {{"format", "pt"}});
  const std::string data =
      std::string("\x00\x00\x00\x3f", 4) + // 0.5f, little-endian
      std::string("\x00\x00\x80\xbf", 4) + // -1.0f
      std::string("\x01\xfe\x03", 3);      //      1, -2, 3 as int8
  // dlcore's header checksum: the canonical form of docs/safetensors.md.
  auto str = [](const std::string& s) { return u64le(s.size()) + s; };
  const std::string canonical =
      u64le(1) + str("format") + str("pt") + u64le(2) + str("a") + str("F32") +
      u64le(1) + u64le(2) + u64le(0) + u64le(8) + str("b") + str("I8") +
      u64le(1) + u64le(3) + u64le(8) + u64le(11);
  auto crc = [](const std::string& s) {
    return static_cast<unsigned>(::crc32(
        0,
        reinterpret_cast<const Bytef*>(s.data()),
        static_cast<uInt>(s.size())));
  };
  char checksum[40];
  std::snprintf(
      checksum,
      sizeof(checksum),
      "header=%08x,data=%08x",
      crc(canonical),
      crc(data));
  std::string json =
      std::string("{\"__metadata__\":{\"dlcore.crc32\":\"") + checksum +
      "\",\"format\":\"pt\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[8,11]}}";
  const std::size_t padding = (8 - json.size() % 8) % 8;
  const std::string expected =
      u64le(json.size() + padding) + json + std::string(padding, ' ') + data;
  const std::string bytes = read_bytes(path);
  CHECK(bytes == expected);
  // The pieces, as the specification states them.
  REQUIRE(bytes.size() >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) {
    n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  }
  CHECK(n % 8 == 0);
  CHECK(8 + n + 11 == bytes.size());
  CHECK(bytes.substr(8, json.size()) == json);
  CHECK(bytes.substr(8 + json.size(), padding) == std::string(padding, ' '));
  CHECK(bytes.substr(8 + n) == data);
  const auto file = dlcore::read_safetensors_file(path);
  CHECK(file.checksum_verified);
  CHECK(torch::equal(file.tensors.at("a"), torch::tensor({0.5f, -1.0f})));
}

TEST_CASE(
    "read_safetensors reads files written by Python exactly, and "
    "save_safetensors writes the same bytes",
    "[safetensors]") {
  const auto dir = fresh_dir("python");
  const auto golden = golden_safetensors::tensors();
  const auto plain = golden_safetensors::plain_file();
  const auto checked = golden_safetensors::checksummed_file();
  const auto plain_path = (dir / "plain.safetensors").string();
  const auto checked_path = (dir / "checked.safetensors").string();
  write_bytes(plain_path, std::string(plain.begin(), plain.end()));
  write_bytes(checked_path, std::string(checked.begin(), checked.end()));

  for (const auto* path : {&plain_path, &checked_path}) {
    const auto file = dlcore::read_safetensors_file(*path);
    CHECK(file.checksum_verified == (path == &checked_path));
    CHECK(file.metadata.at("format") == "pt");
    CHECK(file.metadata.size() == (path == &checked_path ? 2u : 1u));
    REQUIRE(file.tensors.size() == golden.size());
    for (const auto& g : golden) {
      INFO(g.name);
      const auto& t = file.tensors.at(g.name);
      CHECK(t.scalar_type() == golden_dtype(g.dtype));
      CHECK(t.sizes().vec() == g.shape);
      if (!g.floats.empty()) {
        const auto values = t.to(torch::kDouble).reshape(-1);
        REQUIRE(values.numel() == static_cast<int64_t>(g.floats.size()));
        for (std::size_t i = 0; i < g.floats.size(); ++i) {
          CHECK(values[i].item<double>() == g.floats[i]);
        }
      } else {
        const auto values = t.to(torch::kLong).reshape(-1);
        REQUIRE(values.numel() == static_cast<int64_t>(g.ints.size()));
        for (std::size_t i = 0; i < g.ints.size(); ++i) {
          CHECK(values[i].item<int64_t>() == g.ints[i]);
        }
      }
    }
  }

  // dlcore's writer, given the same tensors (made non-contiguous where they
  // have two dimensions), writes Python's checksummed file byte for byte.
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& g : golden) {
    auto t = golden_tensor(g);
    if (t.dim() == 2 && t.size(0) > 1 && t.size(1) > 1) {
      t = t.t().contiguous().t();
      REQUIRE_FALSE(t.is_contiguous());
    }
    tensors.emplace_back(g.name, t);
  }
  const auto written = (dir / "dlcore.safetensors").string();
  dlcore::save_safetensors(tensors, written, {{"format", "pt"}});
  CHECK(read_bytes(written) == std::string(checked.begin(), checked.end()));
}

TEST_CASE(
    "one changed byte anywhere in a dlcore file is an error, never a "
    "different load",
    "[safetensors]") {
  const auto dir = fresh_dir("flips");
  const auto path = (dir / "small.safetensors").string();
  const std::vector<std::pair<std::string, torch::Tensor>> tensors = {
      {"w", torch::tensor({{0.25f, -1.5f}, {3.0f, 1e-3f}})},
      {"step", torch::tensor(int64_t(7))},
      {"mask", torch::tensor({true, false, true})},
      {"none", torch::empty({0}, torch::kHalf)},
      {"u", torch::tensor({200, 3}, torch::kByte)},
  };
  // A note whose length leaves at least 3 bytes of header padding, so that
  // the padding is part of what is flipped.
  std::string note = "n";
  std::string original;
  std::size_t json_end = 0;
  uint64_t header_end = 0;
  for (;; note += "n") {
    REQUIRE(note.size() < 16);
    dlcore::save_safetensors(tensors, path, {{"note", note}});
    original = read_bytes(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) {
      n = (n << 8) | static_cast<unsigned char>(original[i]);
    }
    header_end = 8 + n;
    json_end = original.rfind('}', header_end - 1) + 1;
    if (header_end - json_end >= 3) {
      break;
    }
  }
  const auto reference = dlcore::read_safetensors_file(path);
  auto is_json_space = [](unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
  };

  std::mt19937 rng(20261204);
  std::uniform_int_distribution<int> mask(1, 255);
  std::size_t tried = 0;
  std::size_t errors = 0;
  std::size_t harmless = 0;
  for (std::size_t i = 0; i < original.size(); ++i) {
    std::vector<int> masks = {1, 2, 4, 8, 16, 32, 64, 128, mask(rng)};
    if (i >= json_end && i < header_end) {
      // The changes that turn a padding space into other JSON whitespace
      // (tab, newline, carriage return): the only harmless ones.
      masks.insert(masks.end(), {0x29, 0x2a, 0x2d});
    }
    for (const int m : masks) {
      std::string bytes = original;
      bytes[i] = static_cast<char>(static_cast<unsigned char>(bytes[i]) ^ m);
      write_bytes(path, bytes);
      ++tried;
      bool failed = false;
      dlcore::SafetensorsFile got;
      try {
        got = dlcore::read_safetensors_file(path);
      } catch (const c10::Error&) {
        failed = true;
      }
      if (failed) {
        ++errors;
        continue;
      }
      // A load is accepted only where the byte is provably insignificant:
      // header padding that stays JSON whitespace, which the parser skips.
      // It must then load exactly what was written.
      INFO("byte " << i << " xor " << m << " loaded without an error");
      CHECK(i >= json_end);
      CHECK(i < header_end);
      CHECK(is_json_space(static_cast<unsigned char>(bytes[i])));
      CHECK(same_tensors(got.tensors, reference.tensors));
      CHECK(got.metadata == reference.metadata);
      CHECK(got.checksum_verified);
      ++harmless;
    }
  }
  // A padding space stays JSON whitespace only under the masks 0x29, 0x2a
  // and 0x2d, never under a single-bit flip: the three added per padding
  // byte are harmless, plus any seeded mask that happens to equal one.
  const std::size_t padding = header_end - json_end;
  CAPTURE(tried, errors, harmless, original.size(), padding);
  CHECK(tried == 9 * original.size() + 3 * padding);
  CHECK(harmless >= 3 * padding);
  CHECK(harmless <= 4 * padding);
}

TEST_CASE(
    "read_safetensors refuses a dlcore file cut at any length",
    "[safetensors]") {
  const auto dir = fresh_dir("truncate");
  const auto path = (dir / "t.safetensors").string();
  dlcore::save_safetensors(
      {{"a", torch::arange(6, torch::kFloat).reshape({2, 3})},
       {"b", torch::tensor({true, false})}},
      path);
  const auto original = read_bytes(path);
  for (std::size_t length = 0; length < original.size(); ++length) {
    INFO("length " << length);
    write_bytes(path, original.substr(0, length));
    CHECK_THAT(
        error_of([&] { dlcore::read_safetensors(path); }),
        Contains("read_safetensors: '" + path + "'"));
  }
}

TEST_CASE(
    "read_safetensors survives seeded random damage: a c10::Error, or the "
    "same tensors when dlcore's checksum is present",
    "[safetensors]") {
  const auto dir = fresh_dir("fuzz");
  const auto path = (dir / "f.safetensors").string();
  const auto checked = golden_safetensors::checksummed_file();
  const auto plain = golden_safetensors::plain_file();
  const std::string checked_bytes(checked.begin(), checked.end());
  const std::string plain_bytes(plain.begin(), plain.end());
  write_bytes(path, checked_bytes);
  const auto reference = dlcore::read_safetensors(path);

  std::mt19937_64 rng(42);
  auto below = [&](std::size_t n) {
    return static_cast<std::size_t>(rng() % n);
  };
  std::size_t errors = 0;
  std::size_t loads = 0;
  for (int round = 0; round < 3000; ++round) {
    const bool with_crc = round % 2 == 0;
    std::string bytes = with_crc ? checked_bytes : plain_bytes;
    switch (round % 6) {
      case 0:
      case 1: { // 1 to 8 bytes set to random values
        const std::size_t k = 1 + below(8);
        for (std::size_t j = 0; j < k; ++j) {
          bytes[below(bytes.size())] = static_cast<char>(rng() & 0xff);
        }
        break;
      }
      case 2:
      case 3: { // a random span removed
        const std::size_t at = below(bytes.size());
        bytes.erase(at, 1 + below(16));
        break;
      }
      default: { // random bytes inserted
        const std::size_t at = below(bytes.size());
        std::string junk(1 + below(16), '\0');
        for (auto& c : junk) {
          c = static_cast<char>(rng() & 0xff);
        }
        bytes.insert(at, junk);
        break;
      }
    }
    write_bytes(path, bytes);
    dlcore::SafetensorsFile got;
    try {
      got = dlcore::read_safetensors_file(path);
    } catch (const c10::Error&) {
      ++errors;
      continue;
    }
    ++loads;
    if (got.checksum_verified) {
      INFO("round " << round);
      CHECK(same_tensors(got.tensors, reference));
    }
  }
  // Loads happen only where the damage missed everything that matters
  // (padding whitespace) or, without a checksum, changed only data bytes.
  CAPTURE(errors, loads);
  CHECK(errors > 2500);
}
