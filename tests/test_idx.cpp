#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/idx.h>

#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<unsigned char>;

// The real set: $DLCORE_FASHION_MNIST_DIR, else Debian's folder.
const std::string kRealDir = dlcore::default_fashion_mnist_dir();

/// A fresh folder under the system temp dir, removed with everything in it.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl =
        (fs::temp_directory_path() / "dlcore_idx_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const {
    return (path / name).string();
  }
};

void write_bytes(const std::string& path, const Bytes& bytes, bool gzip) {
  if (gzip) {
    gzFile gz = gzopen(path.c_str(), "wb");
    REQUIRE(gz != nullptr);
    if (!bytes.empty()) {
      REQUIRE(
          gzwrite(gz, bytes.data(), static_cast<unsigned>(bytes.size())) ==
          static_cast<int>(bytes.size()));
    }
    REQUIRE(gzclose(gz) == Z_OK);
  } else {
    std::ofstream out(path, std::ios::binary);
    out.write(
        reinterpret_cast<const char*>(bytes.data()),
        static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
  }
}

Bytes read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(
      (std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// The first `n` inflated bytes of a (gzip) file.
Bytes inflate_prefix(const std::string& path, size_t n) {
  gzFile gz = gzopen(path.c_str(), "rb");
  REQUIRE(gz != nullptr);
  Bytes out(n);
  const int got = gzread(gz, out.data(), static_cast<unsigned>(n));
  gzclose(gz);
  REQUIRE(got == static_cast<int>(n));
  return out;
}

Bytes header(uint8_t code, const std::vector<uint32_t>& dims) {
  Bytes h = {0, 0, code, static_cast<unsigned char>(dims.size())};
  for (uint32_t d : dims) {
    h.push_back(static_cast<unsigned char>(d >> 24));
    h.push_back(static_cast<unsigned char>(d >> 16));
    h.push_back(static_cast<unsigned char>(d >> 8));
    h.push_back(static_cast<unsigned char>(d));
  }
  return h;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string error_of(const std::string& path) {
  try {
    dlcore::read_idx(path);
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "(no error)";
}

/// Brute-force reference of the IDX rules: the dtype size and dims the bytes
/// describe when they form a valid file, else nothing.
struct Expected {
  bool valid = false;
  int elem_size = 0;
  uint8_t code = 0;
  std::vector<int64_t> dims;
  size_t header_bytes = 0;
};

Expected reference_parse(const Bytes& b) {
  Expected e;
  if (b.size() < 4 || b[0] != 0 || b[1] != 0) {
    return e;
  }
  const std::vector<std::pair<uint8_t, int>> codes = {
      {0x08, 1}, {0x09, 1}, {0x0B, 2}, {0x0C, 4}, {0x0D, 4}, {0x0E, 8}};
  for (const auto& [c, s] : codes) {
    if (b[2] == c) {
      e.elem_size = s;
    }
  }
  const size_t ndim = b[3];
  if (e.elem_size == 0 || ndim < 1 || ndim > 16 || b.size() < 4 + 4 * ndim) {
    return e;
  }
  size_t total = static_cast<size_t>(e.elem_size);
  for (size_t d = 0; d < ndim; ++d) {
    const uint64_t n = (uint64_t{b[4 + 4 * d]} << 24) |
                       (uint64_t{b[5 + 4 * d]} << 16) |
                       (uint64_t{b[6 + 4 * d]} << 8) | uint64_t{b[7 + 4 * d]};
    if (n == 0) {
      return e;
    }
    e.dims.push_back(static_cast<int64_t>(n));
    total *= n; // Products of real mutations stay far below 2^64 / 2^32.
    if (total > (size_t{1} << 40)) {
      return e;
    }
  }
  e.header_bytes = 4 + 4 * ndim;
  e.code = b[2];
  e.valid = b.size() == e.header_bytes + total;
  return e;
}

} // namespace

TEST_CASE("read_idx reads the real Fashion-MNIST training files", "[idx]") {
  const torch::Tensor images =
      dlcore::read_idx(kRealDir + "/train-images-idx3-ubyte.gz");
  CHECK(images.scalar_type() == torch::kByte);
  CHECK(images.sizes() == torch::IntArrayRef({60000, 28, 28}));
  CHECK(images.is_contiguous());
  CHECK(images.max().item<int>() == 255);
  CHECK(images.min().item<int>() == 0);

  const torch::Tensor labels =
      dlcore::read_idx(kRealDir + "/train-labels-idx1-ubyte.gz");
  CHECK(labels.scalar_type() == torch::kByte);
  CHECK(labels.sizes() == torch::IntArrayRef({60000}));
  CHECK(labels[0].item<int>() == 9); // The first image is an ankle boot.
}

TEST_CASE("read_idx round-trips every IDX dtype, plain and gzip", "[idx]") {
  TempDir dir;
  const std::vector<torch::Tensor> tensors = {
      torch::arange(0, 256, torch::kInt).to(torch::kByte).reshape({4, 8, 8}),
      torch::arange(-128, 128, torch::kInt).to(torch::kChar).reshape({256}),
      torch::tensor({-32768, -1, 0, 1, 258, 32767}, torch::kShort)
          .reshape({2, 3}),
      torch::tensor(
          {-2147483647 - 1, -1, 0, 1, 16909060, 2147483647}, torch::kInt)
          .reshape({3, 1, 2}),
      torch::tensor(
          {-1.5f,
           0.0f,
           3.25e-7f,
           std::numeric_limits<float>::infinity(),
           1e30f,
           -0.0f},
          torch::kFloat),
      torch::randn({3, 4, 5}, torch::kDouble),
  };
  for (bool gzip : {false, true}) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      const std::string path =
          dir / ("t" + std::to_string(i) + (gzip ? ".gz" : ".idx"));
      dlcore::write_idx(path, tensors[i], gzip);
      const torch::Tensor back = dlcore::read_idx(path);
      INFO("dtype " << tensors[i].scalar_type() << ", gzip " << gzip);
      CHECK(back.scalar_type() == tensors[i].scalar_type());
      CHECK(back.sizes() == tensors[i].sizes());
      CHECK(torch::equal(back, tensors[i]));
    }
  }
}

TEST_CASE("read_idx decodes big-endian elements as the format says", "[idx]") {
  TempDir dir;
  // int16 0x0102 = 258 and 0xfffe = -2; int32 0x01020304 = 16909060;
  // float32 0x3fc00000 = 1.5.
  write_bytes(
      dir / "i16", concat(header(0x0B, {2}), {0x01, 0x02, 0xff, 0xfe}), false);
  write_bytes(
      dir / "i32", concat(header(0x0C, {1}), {0x01, 0x02, 0x03, 0x04}), false);
  write_bytes(
      dir / "f32", concat(header(0x0D, {1}), {0x3f, 0xc0, 0x00, 0x00}), false);
  CHECK(torch::equal(
      dlcore::read_idx(dir / "i16"), torch::tensor({258, -2}, torch::kShort)));
  CHECK(dlcore::read_idx(dir / "i32").item<int>() == 16909060);
  CHECK(dlcore::read_idx(dir / "f32").item<float>() == 1.5f);
}

TEST_CASE("read_idx detects gzip by its magic bytes, not the name", "[idx]") {
  TempDir dir;
  const Bytes file = concat(header(0x08, {2, 2}), {1, 2, 3, 4});
  write_bytes(dir / "compressed.idx", file, true);
  write_bytes(dir / "plain.gz", file, false);
  const torch::Tensor want =
      torch::tensor({1, 2, 3, 4}, torch::kByte).reshape({2, 2});
  CHECK(torch::equal(dlcore::read_idx(dir / "compressed.idx"), want));
  CHECK(torch::equal(dlcore::read_idx(dir / "plain.gz"), want));
  CHECK(read_file_bytes(dir / "compressed.idx")[0] == 0x1f);
}

TEST_CASE("read_idx names the file and the fault in every error", "[idx]") {
  TempDir dir;
  using Catch::Contains;
  const Bytes payload = {1, 2, 3, 4, 5, 6};
  for (bool gzip : {false, true}) {
    INFO("gzip " << gzip);
    const std::string p = dir / (gzip ? "bad.gz" : "bad");

    write_bytes(p, {}, gzip);
    CHECK_THAT(error_of(p), Contains(p) && Contains("it is empty"));

    write_bytes(p, {0, 0, 8}, gzip);
    CHECK_THAT(
        error_of(p),
        Contains(
            "truncated header: expected 4 bytes of magic number but got 3"));

    write_bytes(p, concat({0, 1, 8, 1, 0, 0, 0, 6}, payload), gzip);
    CHECK_THAT(
        error_of(p),
        Contains(p) &&
            Contains("expected the IDX magic number 0x00 0x00 <dtype> <ndim> "
                     "but got 0x00 0x01 0x08 0x01"));

    write_bytes(p, concat(header(0x0A, {6}), payload), gzip);
    CHECK_THAT(
        error_of(p),
        Contains(p) && Contains("expected an IDX dtype code") &&
            Contains("but got 0x0a"));

    write_bytes(p, {0, 0, 8, 0}, gzip);
    CHECK_THAT(
        error_of(p),
        Contains("expected 1 to 16 dimensions but the header declares 0"));
    write_bytes(p, {0, 0, 8, 17}, gzip);
    CHECK_THAT(
        error_of(p),
        Contains("expected 1 to 16 dimensions but the header declares 17"));

    write_bytes(p, {0, 0, 8, 3, 0, 0, 0, 6, 0, 0}, gzip);
    CHECK_THAT(
        error_of(p),
        Contains(p) &&
            Contains("truncated header: expected 12 bytes of dimensions (3 x "
                     "uint32) but got 6"));

    write_bytes(p, concat(header(0x08, {3, 0}), payload), gzip);
    CHECK_THAT(
        error_of(p),
        Contains("expected every dimension >= 1 but dimension 1 is 0"));

    write_bytes(p, concat(header(0x08, {7}), payload), gzip);
    CHECK_THAT(
        error_of(p),
        Contains(p) &&
            Contains("truncated: the header declares 7 bytes of data but only "
                     "6 follow the 8-byte header"));

    write_bytes(p, concat(header(0x08, {5}), payload), gzip);
    CHECK_THAT(error_of(p), Contains(p) && Contains("trailing data"));

    write_bytes(p, concat(header(0x0C, {2}), payload), gzip);
    CHECK_THAT(
        error_of(p),
        Contains("truncated: the header declares 8 bytes of data but only 6"));
  }
}

TEST_CASE("read_idx rejects missing files and folders", "[idx]") {
  TempDir dir;
  using Catch::Contains;
  const std::string missing = dir / "nope-idx1-ubyte.gz";
  CHECK_THAT(
      error_of(missing),
      Contains("read_idx: " + missing + ": cannot open the file") &&
          Contains("No such file"));
  CHECK_THAT(error_of(dir.path.string()), Contains("expected a regular file"));
}

TEST_CASE(
    "read_idx refuses a header that claims more than the file can hold "
    "before allocating",
    "[idx]") {
  TempDir dir;
  using Catch::Contains;
  // 4e9 x 4e9 x 8 bytes would overflow; 60000 x 65535 x 65535 cannot fit a
  // small gzip file, nor a small plain one.
  write_bytes(
      dir / "over.gz",
      concat(header(0x0E, {4000000000u, 4000000000u, 4000000000u}), {1}),
      true);
  CHECK_THAT(error_of(dir / "over.gz"), Contains("overflow"));
  write_bytes(
      dir / "huge.gz", concat(header(0x08, {60000, 65535, 65535}), {1}), true);
  CHECK_THAT(
      error_of(dir / "huge.gz"),
      Contains("bytes of data but a gzip file of") &&
          Contains("cannot hold more than 1032 times that"));
  write_bytes(
      dir / "huge", concat(header(0x08, {60000, 65535, 65535}), {1}), false);
  CHECK_THAT(
      error_of(dir / "huge"),
      Contains("truncated: the header declares 257690173500000 bytes"));
}

TEST_CASE("read_idx reports corrupt gzip data", "[idx]") {
  TempDir dir;
  const std::string p = dir / "x.gz";
  Bytes file = header(0x08, {4096});
  for (int i = 0; i < 4096; ++i) {
    file.push_back(static_cast<unsigned char>((i * 7919) % 251));
  }
  write_bytes(p, file, true);
  Bytes gz = read_file_bytes(p);
  // A flipped CRC in the gzip trailer.
  Bytes bad_crc = gz;
  bad_crc[gz.size() - 6] ^= 0x40;
  write_bytes(p, bad_crc, false);
  CHECK_THAT(
      error_of(p),
      Catch::Contains(
          "read_idx: " + p + ": corrupt gzip data (incorrect data check)"));
  // A gzip stream cut short.
  Bytes cut(gz.begin(), gz.begin() + static_cast<long>(gz.size() / 2));
  write_bytes(p, cut, false);
  CHECK_THAT(error_of(p), Catch::Contains("truncated"));
}

TEST_CASE("write_idx validates its tensor and writes atomically", "[idx]") {
  TempDir dir;
  using Catch::Contains;
  const std::string p = dir / "out.idx";
  auto error_of_write = [&](const torch::Tensor& t) -> std::string {
    try {
      dlcore::write_idx(p, t);
    } catch (const c10::Error& e) {
      return e.what_without_backtrace();
    }
    return "(no error)";
  };
  CHECK_THAT(
      error_of_write(torch::Tensor()),
      Contains("write_idx: " + p + ": expected a defined tensor"));
  CHECK_THAT(
      error_of_write(torch::zeros({2}, torch::kBool)),
      Contains("expected a uint8, int8, int16, int32, float32 or float64 "
               "tensor but got Bool"));
  CHECK_THAT(
      error_of_write(torch::zeros({}, torch::kByte)),
      Contains("expected 1 to 16 dimensions but got 0"));
  CHECK_THAT(
      error_of_write(torch::zeros({2, 0}, torch::kByte)),
      Contains("expected every dimension in [1, 2^32) but got sizes [2, 0]"));
  CHECK_FALSE(fs::exists(p));

  // Overwrites in place; no temporary file is left behind; non-contiguous
  // input is written in logical order.
  dlcore::write_idx(p, torch::ones({3}, torch::kByte));
  const torch::Tensor t = torch::arange(6, torch::kInt).reshape({2, 3}).t();
  dlcore::write_idx(p, t);
  CHECK(torch::equal(dlcore::read_idx(p), t));
  CHECK(std::distance(fs::directory_iterator(dir.path), {}) == 1);
}

TEST_CASE(
    "read_idx survives truncations and byte flips of real file headers",
    "[idx]") {
  TempDir dir;
  // Small valid files made of the real files' first bytes: the header with
  // the count set to 20, then the first 20 images (or labels).
  const int64_t k = 20;
  Bytes images = inflate_prefix(
      kRealDir + "/train-images-idx3-ubyte.gz", 16 + 28 * 28 * k);
  images[4] = images[5] = images[6] = 0;
  images[7] = static_cast<unsigned char>(k);
  Bytes labels =
      inflate_prefix(kRealDir + "/train-labels-idx1-ubyte.gz", 8 + k);
  labels[4] = labels[5] = labels[6] = 0;
  labels[7] = static_cast<unsigned char>(k);
  REQUIRE(reference_parse(images).valid);
  REQUIRE(reference_parse(labels).valid);

  int64_t errors = 0;
  int64_t successes = 0;
  // Reads `bytes` in both forms; the result must match the reference parse.
  auto check_one = [&](const Bytes& bytes, const std::string& what) {
    const Expected want = reference_parse(bytes);
    for (bool gzip : {false, true}) {
      const std::string p = dir / (gzip ? "m.gz" : "m");
      write_bytes(p, bytes, gzip);
      INFO(what << ", gzip " << gzip);
      try {
        const torch::Tensor t = dlcore::read_idx(p);
        REQUIRE(want.valid);
        CHECK(t.sizes() == torch::IntArrayRef(want.dims));
        CHECK(t.element_size() == want.elem_size);
        if (want.elem_size == 1) {
          CHECK(
              std::memcmp(
                  t.data_ptr(),
                  bytes.data() + want.header_bytes,
                  bytes.size() - want.header_bytes) == 0);
        }
        ++successes;
      } catch (const c10::Error& e) {
        INFO(e.what_without_backtrace());
        CHECK_FALSE(want.valid);
        CHECK_THAT(
            std::string(e.what_without_backtrace()),
            Catch::StartsWith("read_idx: " + p + ": "));
        ++errors;
      }
    }
  };

  std::mt19937_64 rng(20240501);
  for (const Bytes* base : {&images, &labels}) {
    const size_t header_bytes = reference_parse(*base).header_bytes;
    // Every truncation inside the header and a few inside the payload.
    for (size_t len = 0; len <= header_bytes + 8; ++len) {
      check_one(
          Bytes(base->begin(), base->begin() + static_cast<long>(len)),
          "truncated to " + std::to_string(len));
    }
    check_one(
        Bytes(base->begin(), base->end() - 1), "last payload byte removed");
    check_one(concat(*base, {0}), "one trailing byte");
    // Random flips of one to three header bytes.
    for (int trial = 0; trial < 300; ++trial) {
      Bytes m = *base;
      const int flips = 1 + static_cast<int>(rng() % 3);
      std::string what = "flips";
      for (int f = 0; f < flips; ++f) {
        const size_t pos = rng() % header_bytes;
        const auto mask = static_cast<unsigned char>(1 + rng() % 255);
        m[pos] ^= mask;
        what += " @" + std::to_string(pos) + "^" + std::to_string(mask);
      }
      check_one(m, what);
    }
  }
  // Header flips that keep the byte count (uint8 <-> int8) must succeed.
  Bytes as_int8 = images;
  as_int8[2] = 0x09;
  check_one(as_int8, "uint8 relabelled int8");
  CHECK(errors > 1000);
  CHECK(successes >= 2);

  // Flips anywhere in a real gzip stream: an error, or exactly the original.
  const std::string gz_path = dir / "orig.gz";
  write_bytes(gz_path, labels, true);
  const Bytes gz = read_file_bytes(gz_path);
  const torch::Tensor original = dlcore::read_idx(gz_path);
  for (int trial = 0; trial < 300; ++trial) {
    Bytes m = gz;
    const size_t pos = rng() % m.size();
    m[pos] ^= static_cast<unsigned char>(1 + rng() % 255);
    write_bytes(gz_path, m, false);
    INFO("gzip byte " << pos << " flipped");
    try {
      const torch::Tensor t = dlcore::read_idx(gz_path);
      CHECK(torch::equal(t, original));
    } catch (const c10::Error& e) {
      CHECK_THAT(
          std::string(e.what_without_backtrace()),
          Catch::StartsWith("read_idx: " + gz_path + ": "));
    }
  }
}

TEST_CASE(
    "read_idx refuses a huge size claimed in any dimension of any header, "
    "plain or gzip, before allocating",
    "[idx]") {
  TempDir dir;
  // Every dtype, 1 to 4 dimensions, each dimension in turn set to a huge
  // count (the others 2), over 8 bytes of payload. The reader must refuse
  // each by the size the header declares (before it allocates that size),
  // never by a failed allocation or read.
  const std::vector<uint8_t> codes = {0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E};
  const std::vector<uint32_t> huge = {65536u, 1u << 31, 0xFFFFFFFFu};
  int64_t tried = 0;
  int64_t clean = 0;
  for (const uint8_t code : codes) {
    for (size_t ndim = 1; ndim <= 4; ++ndim) {
      for (size_t d = 0; d < ndim; ++d) {
        for (const uint32_t h : huge) {
          std::vector<uint32_t> dims(ndim, 2);
          dims[d] = h;
          const Bytes bytes = concat(header(code, dims), Bytes(8, 1));
          for (const bool gzip : {false, true}) {
            const std::string p = dir / (gzip ? "h.gz" : "h");
            write_bytes(p, bytes, gzip);
            ++tried;
            const std::string msg = error_of(p);
            INFO(
                "code " << int(code) << ", dims " << ndim << ", huge dim " << d
                        << " = " << h << ", gzip " << gzip << ": " << msg);
            const bool named = msg.rfind("read_idx: " + p + ": ", 0) == 0;
            const bool by_size =
                msg.find("the header declares") != std::string::npos ||
                msg.find("overflow") != std::string::npos;
            CHECK(named);
            CHECK(by_size);
            clean += named && by_size;
          }
        }
      }
    }
  }
  // All dimensions huge at once: the product overflows 64 bits.
  for (const bool gzip : {false, true}) {
    const std::string p = dir / (gzip ? "all.gz" : "all");
    write_bytes(
        p,
        concat(header(0x0E, std::vector<uint32_t>(16, 0xFFFFFFFFu)), {1}),
        gzip);
    ++tried;
    const std::string msg = error_of(p);
    INFO(msg);
    CHECK_THAT(msg, Catch::Contains("overflow"));
    clean += msg.find("overflow") != std::string::npos;
  }
  WARN(
      "IDX huge-size sweep: " << tried << " inputs tried, " << clean
                              << " clean errors");
  CHECK(tried == 6 * (1 + 2 + 3 + 4) * 3 * 2 + 2);
}
