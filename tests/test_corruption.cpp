// Bad input and damaged files, in one place: the files dlcore writes with a
// checksum (weights, selector state, resampler state, gzip IDX) against seeded
// byte flips of every byte; crafted archives with valid CRCs against each rule
// of the archive guard; every reader (IDX, CIFAR, weights, states) against
// FIFOs, folders and devices; and the options whose values could crash, hang
// or allocate without bound. The expected outcome everywhere is a c10::Error
// that names the file or option and the problem. (Plain IDX and CIFAR files
// carry no checksum: a flipped pixel is valid data there.)

#include <dlcore/data/batches.h>
#include <dlcore/data/cifar.h>
#include <dlcore/data/hashtag_resampler.h>
#include <dlcore/data/idx.h>
#include <dlcore/data/label_noise.h>
#include <dlcore/data/pseudo_label.h>
#include <dlcore/detail/archive.h>
#include <dlcore/detail/state.h>
#include <dlcore/detail/thread_pool.h>
#include <dlcore/nn/checkpoint.h>
#include <dlcore/optim/step_lr.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

using Bytes = std::vector<char>;

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl =
        (fs::temp_directory_path() / "dlcore_corruption_XXXXXX").string();
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

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

/// What a call did: returned, threw a c10::Error (with its message), or
/// threw anything else (always a test failure).
struct Outcome {
  enum Kind { kOk, kC10, kOther } kind = kOk;
  std::string message;
};

Outcome outcome_of(const std::function<void()>& f) {
  Outcome o;
  try {
    f();
  } catch (const c10::Error& e) {
    o.kind = Outcome::kC10;
    o.message = e.what_without_backtrace();
  } catch (const std::exception& e) {
    o.kind = Outcome::kOther;
    o.message = e.what();
  } catch (...) {
    o.kind = Outcome::kOther;
    o.message = "unknown exception";
  }
  return o;
}

std::string message_of(const std::function<void()>& f) {
  const Outcome o = outcome_of(f);
  if (o.kind == Outcome::kOk) {
    return "no error";
  }
  if (o.kind == Outcome::kOther) {
    return "NOT A c10::Error: " + o.message;
  }
  return o.message;
}

// ------------------------------------------------------------ a zip writer

uint32_t crc_of(const std::string& s) {
  return static_cast<uint32_t>(crc32(
      0L,
      reinterpret_cast<const Bytef*>(s.data()),
      static_cast<uInt>(s.size())));
}

void put16(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v & 0xFF));
  out.push_back(static_cast<char>((v >> 8) & 0xFF));
}
void put32(std::string& out, uint32_t v) {
  put16(out, v & 0xFFFF);
  put16(out, v >> 16);
}

/// A zip of stored entries with correct CRCs, in the layout LibTorch writes
/// (no data descriptors): crafted archives that pass the zip checks, so
/// that the tests reach the pickle walk.
Bytes make_zip(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out;
  std::string cd;
  for (const auto& [name, data] : files) {
    const auto offset = static_cast<uint32_t>(out.size());
    const uint32_t crc = crc_of(data);
    put32(out, 0x04034b50);
    put16(out, 0); // version needed
    put16(out, 0); // flags
    put16(out, 0); // method
    put32(out, 0); // time, date
    put32(out, crc);
    put32(out, static_cast<uint32_t>(data.size()));
    put32(out, static_cast<uint32_t>(data.size()));
    put16(out, static_cast<uint32_t>(name.size()));
    put16(out, 0);
    out += name;
    out += data;
    put32(cd, 0x02014b50);
    put16(cd, 0); // made by
    put16(cd, 0); // needed
    put16(cd, 0); // flags
    put16(cd, 0); // method
    put32(cd, 0); // time, date
    put32(cd, crc);
    put32(cd, static_cast<uint32_t>(data.size()));
    put32(cd, static_cast<uint32_t>(data.size()));
    put16(cd, static_cast<uint32_t>(name.size()));
    put16(cd, 0); // extra
    put16(cd, 0); // comment
    put16(cd, 0); // disk
    put16(cd, 0); // internal
    put32(cd, 0); // external
    put32(cd, offset);
    cd += name;
  }
  const auto cd_offset = static_cast<uint32_t>(out.size());
  out += cd;
  put32(out, 0x06054b50);
  put16(out, 0);
  put16(out, 0);
  put16(out, static_cast<uint32_t>(files.size()));
  put16(out, static_cast<uint32_t>(files.size()));
  put32(out, static_cast<uint32_t>(cd.size()));
  put32(out, cd_offset);
  put16(out, 0);
  return Bytes(out.begin(), out.end());
}

// -------------------------------------------------- pickles written by hand

std::string op_str(const std::string& s) {
  std::string out = "X";
  put32(out, static_cast<uint32_t>(s.size()));
  return out + s;
}
std::string op_global(const std::string& module, const std::string& name) {
  return "c" + module + "\n" + name + "\n";
}
std::string op_int(int v) {
  return std::string("K") + static_cast<char>(v);
}

/// The pieces of a pickle of {"w": tensor} whose storage '0' holds
/// `numel` floats viewed with `sizes`, `strides` and `offset`.
struct TensorPickle {
  int numel = 2;
  std::vector<int> sizes = {2};
  std::vector<int> strides = {1};
  int offset = 0;
  std::string storage_global = op_global("torch", "FloatStorage");

  std::string tensor() const {
    std::string s = op_global("torch._utils", "_rebuild_tensor_v2");
    s += "((" + op_str("storage") + storage_global + op_str("0") +
         op_str("cpu") + op_int(numel) + "tQ";
    s += op_int(offset);
    s += "(";
    for (int v : sizes) {
      s += op_int(v);
    }
    s += "t(";
    for (int v : strides) {
      s += op_int(v);
    }
    s += "t\x89" + op_global("collections", "OrderedDict") + ")RtR";
    return s;
  }

  std::string pickle() const {
    return "\x80\x02}(" + op_str("w") + tensor() + "u.";
  }
};

/// A weights archive holding `pickle` as data.pkl and 8 bytes of storage.
Bytes weights_archive(const std::string& pickle, const std::string& storage) {
  return make_zip(
      {{"archive/data.pkl", pickle},
       {"archive/data/0", storage},
       {"archive/version", "3\n"}});
}

const std::string kTwoFloats =
    std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);

// -------------------------------------------------------- byte-flip sweep

/// Flips every byte of `original` in turn (xor with a seeded non-zero
/// value), writes it to `path` and runs `load`, which returns true when it
/// loaded exactly what the original holds. Each flip must either give a
/// c10::Error or load the same content; another exception type is a failure.
/// Returns {flips rejected with an error, flips that load the same}.
std::pair<int, int> flip_every_byte(
    const Bytes& original,
    const std::string& path,
    uint32_t seed,
    const std::function<bool()>& load_same) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> value(1, 255);
  int rejected = 0;
  int same = 0;
  for (size_t i = 0; i < original.size(); ++i) {
    Bytes b = original;
    const int x = value(rng);
    b[i] = static_cast<char>(b[i] ^ x);
    write_file(path, b);
    bool loaded_same = false;
    const Outcome o = outcome_of([&] { loaded_same = load_same(); });
    INFO(
        "byte " << i << " of " << original.size() << " xor " << x << ": "
                << o.message);
    REQUIRE(o.kind != Outcome::kOther);
    if (o.kind == Outcome::kC10) {
      // The error names the file.
      REQUIRE_THAT(o.message, Contains(path));
      ++rejected;
    } else {
      // A flip in a field nothing reads (zip version or time fields that
      // LibTorch ignores, the padding of an extra field, "version made
      // by") may load: then it must load exactly the original content.
      REQUIRE(loaded_same);
      ++same;
    }
  }
  return {rejected, same};
}

bool same_tensors(
    const std::map<std::string, torch::Tensor>& a,
    const std::map<std::string, torch::Tensor>& b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    if (it == b.end() || it->second.scalar_type() != t.scalar_type() ||
        it->second.sizes() != t.sizes() || !it->second.equal(t)) {
      return false;
    }
  }
  return true;
}

using dlcore::TopKTopPSelector;
using dlcore::TopKTopPSelectorOptions;

/// Everything observable of a selector's state.
struct SelectorState {
  int64_t rows_seen;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  torch::Tensor indices, labels, scores;
  explicit SelectorState(const TopKTopPSelector& s)
      : rows_seen(s.rows_seen()), ranges(s.ranges()) {
    const auto r = s.result();
    indices = r.indices;
    labels = r.labels;
    scores = r.scores;
  }
  bool operator==(const SelectorState& o) const {
    return rows_seen == o.rows_seen && ranges == o.ranges &&
           indices.equal(o.indices) && labels.equal(o.labels) &&
           scores.equal(o.scores);
  }
};

torch::Tensor chunk_scores(int64_t rows, int64_t classes, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::rand({rows, classes});
}

dlcore::HashtagResampler small_resampler(
    dlcore::ResamplingMode mode = dlcore::ResamplingMode::kDraw) {
  return dlcore::HashtagResampler(
      torch::tensor({0, 1, 1, 2, 0, 2, 2, 1}, torch::kLong),
      dlcore::HashtagResamplerOptions(dlcore::SamplingScheme::kSquareRoot)
          .seed(5)
          .mode(mode));
}

} // namespace

// ============================================================ archive guard

TEST_CASE(
    "corruption: every byte flip of a weights file is an error naming the "
    "file or loads the same weights",
    "[corruption]") {
  TempDir dir;
  torch::manual_seed(0);
  torch::nn::Linear net(3, 2);
  const std::string good = dir / "good.pt";
  dlcore::save_weights(*net, good);
  const auto expected = dlcore::read_weights(good);
  const Bytes original = read_file(good);
  const std::string bad = dir / "flipped.pt";
  const auto [rejected, same] = flip_every_byte(original, bad, 20261204, [&] {
    return same_tensors(dlcore::read_weights(bad), expected);
  });
  // Most bytes are checked: only unused zip fields may change.
  CAPTURE(original.size(), rejected, same);
  CHECK(rejected > 2 * same);
  CHECK(rejected + same == static_cast<int>(original.size()));
  // The probe's byte: data.pkl's GLOBAL (offset 2) changed to NEWOBJ
  // crashed LibTorch's unpickler; the CRC now rejects it.
  Bytes probe = original;
  const std::string start("\x80\x02\x63", 3);
  const auto at =
      std::search(probe.begin(), probe.end(), start.begin(), start.end());
  REQUIRE(at != probe.end());
  at[2] = '\x81';
  write_file(bad, probe);
  CHECK_THAT(
      message_of([&] { dlcore::read_weights(bad); }),
      Contains("read_weights: '" + bad + "' is not a valid LibTorch archive") &&
          Contains("entry 'archive/data.pkl' has CRC-32"));
}

TEST_CASE(
    "corruption: every byte flip of a selector state is an error naming the "
    "file or loads the same state, and a failed load changes nothing",
    "[corruption]") {
  TempDir dir;
  const int64_t c = 3, k = 2, p = 2;
  TopKTopPSelector saved({c, k, p});
  saved.ingest(chunk_scores(6, c, 1), 0);
  const std::string good = dir / "selector.pt";
  saved.save(good);
  const SelectorState expected(saved);
  const Bytes original = read_file(good);
  // The loading selector holds another state, which a failed load keeps.
  TopKTopPSelector target({c, k, p});
  target.ingest(chunk_scores(4, c, 2), 100);
  const SelectorState before(target);
  const std::string bad = dir / "flipped.pt";
  const auto [rejected, same] = flip_every_byte(original, bad, 7, [&] {
    const Outcome o = outcome_of([&] { target.load(bad); });
    if (o.kind != Outcome::kOk) {
      CHECK(SelectorState(target) == before);
      if (o.kind == Outcome::kC10) {
        throw c10::Error({__func__, __FILE__, __LINE__}, o.message);
      }
      throw std::runtime_error(o.message);
    }
    const bool ok = SelectorState(target) == expected;
    target = TopKTopPSelector({c, k, p});
    target.ingest(chunk_scores(4, c, 2), 100);
    return ok;
  });
  CAPTURE(original.size(), rejected, same);
  CHECK(rejected > 2 * same);
}

TEST_CASE(
    "corruption: every byte flip of a resampler state is an error naming "
    "the file or loads the same state",
    "[corruption]") {
  TempDir dir;
  auto saved = small_resampler();
  saved.set_epoch(3);
  saved.next(2);
  const std::string good = dir / "resampler.pt";
  saved.save(good);
  const Bytes original = read_file(good);
  const std::string bad = dir / "flipped.pt";
  const auto [rejected, same] = flip_every_byte(original, bad, 11, [&] {
    auto r = small_resampler();
    r.load(bad);
    return r.epoch() == saved.epoch() && r.position() == saved.position() &&
           r.epoch_length() == saved.epoch_length() &&
           r.options().seed() == saved.options().seed();
  });
  CAPTURE(original.size(), rejected, same);
  CHECK(rejected > 2 * same);
}

TEST_CASE(
    "corruption: every byte flip of a Batches or StepLR state is an error "
    "naming the file or loads the same state",
    "[corruption]") {
  TempDir dir;
  const dlcore::TensorDataset ds{
      torch::arange(12, torch::kFloat).view({6, 2}),
      torch::arange(6, torch::kLong)};
  const auto opts = dlcore::BatchesOptions(4).shuffle(true).seed(9);
  dlcore::Batches saved(ds, opts);
  saved.set_epoch(3);
  const std::string good = dir / "batches.pt";
  saved.save(good);
  const std::string bad = dir / "flipped.pt";
  {
    const Bytes original = read_file(good);
    const auto [rejected, same] = flip_every_byte(original, bad, 13, [&] {
      dlcore::Batches b(ds, opts);
      b.set_epoch(-1);
      b.load(bad);
      return b.epoch() == 3;
    });
    CAPTURE(original.size(), rejected, same);
    CHECK(rejected > 2 * same);
  }
  torch::optim::SGD opt(
      std::vector<torch::Tensor>{torch::zeros({2}, torch::requires_grad())},
      torch::optim::SGDOptions(0.1));
  dlcore::StepLR step(opt, dlcore::StepLROptions(2).gamma(0.5));
  step.step();
  step.step();
  const std::string sched = dir / "step_lr.pt";
  step.save(sched);
  const Bytes original = read_file(sched);
  const auto [rejected, same] = flip_every_byte(original, bad, 17, [&] {
    torch::optim::SGD o(
        std::vector<torch::Tensor>{torch::zeros({2}, torch::requires_grad())},
        torch::optim::SGDOptions(0.1));
    dlcore::StepLR s(o, dlcore::StepLROptions(2).gamma(0.5));
    s.load(bad);
    return s.last_epoch() == 2 && s.get_last_lr() == step.get_last_lr();
  });
  CAPTURE(original.size(), rejected, same);
  CHECK(rejected > 2 * same);
}

TEST_CASE(
    "corruption: the hand-written archive loads, so the crafted ones below "
    "fail for the reason they name",
    "[corruption]") {
  TempDir dir;
  const std::string path = dir / "w.pt";
  write_file(path, weights_archive(TensorPickle().pickle(), kTwoFloats));
  const auto w = dlcore::read_weights(path);
  REQUIRE(w.count("w") == 1);
  CHECK(w.at("w").equal(torch::tensor({1.0f, 2.0f})));
}

TEST_CASE(
    "corruption: crafted archives with a valid CRC are rejected by the "
    "pickle walk (probe finding 1 and 6)",
    "[corruption]") {
  TempDir dir;
  const std::string path = dir / "crafted.pt";
  auto error_for = [&](const std::string& pickle,
                       const std::string& storage = kTwoFloats) {
    write_file(path, weights_archive(pickle, storage));
    return message_of([&] { dlcore::read_weights(path); });
  };
  const std::string good = TensorPickle().pickle();
  // NEWOBJ where the first opcode was, with a valid CRC (LibTorch 1.13 pops
  // an empty stack).
  std::string newobj = good;
  newobj[2] = '\x81';
  CHECK_THAT(
      error_for(newobj),
      Contains(
          "read_weights: '" + path + "' is not a valid LibTorch archive") &&
          Contains(
              "pickle 'archive/data.pkl' at offset 2: the stack is empty"));
  // Tuple opcodes on an empty stack.
  CHECK_THAT(error_for("\x80\x02\x85."), Contains("TUPLE1 needs 1 items"));
  // A memo get past the puts, and a memo put far past them (8 GB in
  // LibTorch's memo table).
  CHECK_THAT(error_for("\x80\x02h\x05."), Contains("memo index 5"));
  CHECK_THAT(
      error_for(std::string("\x80\x02Nr\x00\x00\x00\x20.", 9)),
      Contains("skips past the 0 memo entries"));
  // A string longer than the entry (LibTorch allocates it first).
  CHECK_THAT(
      error_for(std::string("\x80\x02X\xff\xff\xff\xff.", 8)),
      Contains("runs past the end of the entry"));
  // An unknown opcode and an unknown global.
  CHECK_THAT(error_for("\x80\x02\x93."), Contains("opcode 0x93"));
  CHECK_THAT(
      error_for("\x80\x02" + op_global("os", "system") + "."),
      Contains("unsupported global 'os.system'"));
  // REDUCE on something that is not a function (a storage type, an int).
  CHECK_THAT(
      error_for("\x80\x02" + op_global("torch", "FloatStorage") + ")R."),
      Contains("not a supported global"));
  // A storage claiming 2^30 elements of an 8-byte record (GBs in LibTorch,
  // or reads past the record).
  TensorPickle huge;
  huge.numel = 0; // replaced below by a 4-byte int
  std::string big = huge.pickle();
  const std::string small_numel = op_str("cpu") + op_int(0);
  big.replace(
      big.find(small_numel),
      small_numel.size(),
      op_str("cpu") + std::string("J\x00\x00\x00\x40", 5));
  CHECK_THAT(
      error_for(big),
      Contains("a storage of 1073741824 elements of 4 bytes in "
               "'archive/data/0', which holds 8 bytes"));
  // A view reaching past its storage (silently wrong values before).
  TensorPickle past;
  past.sizes = {3};
  CHECK_THAT(
      error_for(past.pickle()),
      Contains("reaches element 2 of a "
               "storage of 2 elements"));
  past.sizes = {2};
  past.offset = 1;
  CHECK_THAT(error_for(past.pickle()), Contains("reaches element 2"));
  // A storage record that does not exist.
  CHECK_THAT(
      message_of([&] {
        write_file(
            path,
            make_zip({{"archive/data.pkl", good}, {"archive/version", "3\n"}}));
        dlcore::read_weights(path);
      }),
      Contains("which the archive does not hold"));
  // Nesting deeper than the limit.
  std::string deep = "\x80\x02]";
  for (int i = 0; i < 300; ++i) {
    deep += "(]";
  }
  for (int i = 0; i < 300; ++i) {
    deep += "e";
  }
  CHECK_THAT(error_for(deep + "."), Contains("nested deeper than 200"));
  std::string nested = "\x80\x02N";
  for (int i = 0; i < 300; ++i) {
    nested += "\x85";
  }
  CHECK_THAT(error_for(nested + "."), Contains("nested deeper than"));
  // A list placed inside itself.
  CHECK_THAT(
      error_for(std::string("\x80\x02]q\x00(h\x00\x65.", 10)),
      Contains("inside itself"));
  // Trailing bytes after STOP.
  CHECK_THAT(error_for(good + "N"), Contains("STOP before the end"));
}

TEST_CASE(
    "corruption: the zip structure is checked against the file (CRC, "
    "sizes, offsets, method, names)",
    "[corruption]") {
  TempDir dir;
  const std::string path = dir / "z.pt";
  const std::string pickle = TensorPickle().pickle();
  auto error_for = [&](Bytes b) {
    write_file(path, b);
    return message_of([&] { dlcore::read_weights(path); });
  };
  const Bytes good = weights_archive(pickle, kTwoFloats);
  // A flipped data byte: the CRC names the entry (LibTorch 1.13 loads it).
  Bytes data_flip = good;
  const auto at = std::search(
      data_flip.begin(), data_flip.end(), kTwoFloats.begin(), kTwoFloats.end());
  REQUIRE(at != data_flip.end());
  at[3] = static_cast<char>(at[3] ^ 0x01);
  CHECK_THAT(
      error_for(data_flip),
      Contains("entry 'archive/data/0' has CRC-32") &&
          Contains("but the central directory records"));
  // Truncated at every length: an error, never a crash.
  for (size_t n = 0; n < good.size(); ++n) {
    INFO("truncated to " << n << " bytes");
    CHECK_THAT(
        error_for(Bytes(good.begin(), good.begin() + n)),
        Contains("is not a valid LibTorch archive"));
  }
  // Junk appended after the end record.
  Bytes junk = good;
  junk.push_back('x');
  CHECK_THAT(error_for(junk), Contains("no zip end-of-central-directory"));
  // Not inside one folder, and duplicate names.
  CHECK_THAT(
      error_for(make_zip({{"data.pkl", pickle}})),
      Contains("is not inside a folder"));
  CHECK_THAT(
      error_for(make_zip(
          {{"archive/data.pkl", pickle},
           {"archive/data/0", kTwoFloats},
           {"archive/data/0", kTwoFloats}})),
      Contains("appears twice"));
  CHECK_THAT(
      error_for(make_zip({{"archive/version", "3\n"}})),
      Contains("no 'archive/data.pkl' entry"));
  CHECK_THAT(
      error_for(make_zip(
          {{"archive/data.pkl", pickle},
           {"archive/data/0", kTwoFloats},
           {"archive/version", "three"}})),
      Contains("'archive/version' is not a version number"));
  // Not a zip at all, and an empty file.
  CHECK_THAT(error_for(Bytes(100, 'a')), Contains("no zip end"));
  CHECK_THAT(error_for(Bytes()), Contains("fewer than a zip's end record"));
}

TEST_CASE(
    "corruption: exceptions escaping a load are c10::Errors naming the file",
    "[corruption]") {
  CHECK_THAT(
      message_of([] {
        dlcore::detail::archive_errors_named(
            "f.pt", "owner", []() -> int { throw std::out_of_range("range"); });
      }),
      Contains("owner: cannot load 'f.pt': range"));
  CHECK_THAT(
      message_of([] {
        dlcore::detail::archive_errors_named(
            "f.pt", "owner", []() -> int { throw std::bad_alloc(); });
      }),
      Contains("owner: cannot load 'f.pt': out of memory"));
  CHECK_THAT(
      message_of([] {
        dlcore::detail::archive_errors_named("f.pt", "owner", []() -> int {
          throw std::runtime_error("parse error");
        });
      }),
      Contains("owner: cannot load 'f.pt': parse error"));
}

// ============================================= fields against invariants

TEST_CASE(
    "corruption: a resampler state with a position, epoch or epoch length "
    "its setters refuse is an error (probe finding 2)",
    "[corruption]") {
  TempDir dir;
  const std::string path = dir / "state.pt";
  // The state of the legacy format (one 0-d buffer per key) for
  // small_resampler(kReplicate), with one field replaced.
  auto write_state = [&](const std::string& key, const torch::Tensor& value) {
    std::map<std::string, torch::Tensor> f = {
        {"version", torch::tensor(int64_t{1})},
        {"seed", torch::tensor(int64_t{5})},
        {"epoch", torch::tensor(int64_t{1})},
        {"position", torch::tensor(int64_t{2})},
        {"epoch_length", torch::tensor(int64_t{8})},
        {"rank", torch::tensor(int64_t{0})},
        {"world_size", torch::tensor(int64_t{1})},
        {"num_images", torch::tensor(int64_t{8})},
        {"num_tags", torch::tensor(int64_t{3})},
        {"mode", torch::tensor(int64_t{1})},
        {"alpha", torch::tensor(0.5, torch::kDouble)}};
    f[key] = value;
    torch::serialize::OutputArchive a;
    for (const auto& [k, v] : f) {
      a.write(k, v, /*is_buffer=*/true);
    }
    a.save_to(path);
  };
  auto with = [&](const std::string& key, int64_t value) {
    write_state(key, torch::tensor(value));
    auto loader = small_resampler(dlcore::ResamplingMode::kReplicate);
    loader.set_epoch(2);
    const std::string m = message_of([&] { loader.load(path); });
    if (m != "no error") {
      // A failed load leaves the sampler as it was.
      CHECK(loader.epoch() == 2);
      CHECK(loader.position() == 0);
      CHECK(loader.epoch_length() == 8);
    }
    return m;
  };
  // The unchanged state loads.
  CHECK(with("position", 2) == "no error");
  CHECK_THAT(
      with("position", -3),
      Contains("HashtagResampler::load: cannot load '" + path + "'") &&
          Contains("expected a saved position in [0, 8]") &&
          Contains("got -3"));
  CHECK_THAT(with("position", -1000), Contains("got -1000"));
  CHECK_THAT(with("position", -(int64_t{1} << 40)), Contains("position"));
  CHECK_THAT(with("position", 9), Contains("got 9"));
  CHECK_THAT(with("epoch", -1), Contains("expected a saved epoch >= 0"));
  CHECK_THAT(
      with("epoch_length", int64_t{1} << 60),
      Contains("kReplicate materializes the epoch"));
  CHECK_THAT(
      with("epoch_length", -5), Contains("expected an epoch length in [0, "));
  CHECK_THAT(with("num_images", 9), Contains("num_images = 9"));
  // A field of the wrong dtype.
  write_state("position", torch::tensor(1.5));
  auto loader = small_resampler(dlcore::ResamplingMode::kReplicate);
  CHECK_THAT(
      message_of([&] { loader.load(path); }),
      Contains("expected the saved `position` to be one CPU Long value"));
  // The same checks on the state format `save` writes now.
  auto with_field = [&](const std::string& key, int64_t value) {
    std::map<std::string, int64_t> f = {
        {"seed", 5},
        {"epoch", 1},
        {"position", 2},
        {"epoch_length", 8},
        {"rank", 0},
        {"world_size", 1},
        {"num_images", 8},
        {"num_tags", 3},
        {"mode", 1}};
    f[key] = value;
    torch::serialize::OutputArchive a;
    dlcore::detail::StateWriter state(a, "HashtagResampler", 1);
    for (const auto& [k, v] : f) {
      state.put_int(k, v);
    }
    state.put_double("alpha", 0.5);
    a.save_to(path);
    auto loader = small_resampler(dlcore::ResamplingMode::kReplicate);
    loader.set_epoch(2);
    const std::string m = message_of([&] { loader.load(path); });
    if (m != "no error") {
      CHECK(loader.epoch() == 2);
      CHECK(loader.position() == 0);
      CHECK(loader.epoch_length() == 8);
    } else {
      CHECK(loader.epoch() == f["epoch"]);
      CHECK(loader.position() == f["position"]);
    }
    return m;
  };
  CHECK(with_field("position", 2) == "no error");
  CHECK_THAT(
      with_field("position", -3),
      Contains("HashtagResampler::load: cannot load '" + path + "'") &&
          Contains("expected a saved position in [0, 8]") &&
          Contains("got -3"));
  CHECK_THAT(with_field("position", 9), Contains("got 9"));
  CHECK_THAT(with_field("epoch", -1), Contains("expected a saved epoch >= 0"));
  CHECK_THAT(
      with_field("epoch_length", int64_t{1} << 60),
      Contains("kReplicate materializes the epoch"));
  CHECK_THAT(with_field("num_images", 9), Contains("num_images = 9"));
  // A valid state round-trips through the file.
  auto r = small_resampler(dlcore::ResamplingMode::kReplicate);
  r.set_epoch(4);
  const auto first = r.next(3);
  r.save(path);
  auto back = small_resampler(dlcore::ResamplingMode::kReplicate);
  back.load(path);
  CHECK(back.epoch() == 4);
  CHECK(back.position() == 3);
  CHECK(back.next(5) == r.next(5));
}

TEST_CASE(
    "corruption: a selector state that breaks the selector's invariants is "
    "an error (probe findings 1 and 7)",
    "[corruption]") {
  TempDir dir;
  const std::string path = dir / "sel.pt";
  const int64_t c = 4, p = 1;
  // A state of the legacy format (C = 4, K = 12, P = 1, 10 rows), with
  // fields replaced; loaded by a selector with `k`.
  TopKTopPSelector src({c, 12, p});
  src.ingest(chunk_scores(10, c, 3), 0);
  const auto cand = src.candidates();
  const torch::Tensor ind = std::get<0>(cand);
  const torch::Tensor lab = std::get<1>(cand);
  const torch::Tensor sco = std::get<2>(cand);
  REQUIRE(ind.numel() == 10);
  auto load_with = [&](std::map<std::string, torch::Tensor> edits,
                       int64_t k = 12) {
    std::map<std::string, torch::Tensor> f = {
        {"version", torch::tensor({int64_t{1}})},
        {"ckp", torch::tensor({c, k, p})},
        {"rows_seen", torch::tensor({int64_t{10}})},
        {"ranges", src.ranges_tensor()},
        {"indices", ind},
        {"labels", lab},
        {"scores", sco}};
    for (const auto& [key, v] : edits) {
      f[key] = v;
    }
    torch::serialize::OutputArchive a;
    for (const auto& [key, v] : f) {
      a.write(key, v);
    }
    a.save_to(path);
    TopKTopPSelector loader({c, k, p});
    return message_of([&] { loader.load(path); });
  };
  CHECK(load_with({}) == "no error");
  CHECK_THAT(
      load_with({{"rows_seen", torch::tensor({int64_t{-100}})}}),
      Contains("TopKTopPSelector: cannot load '" + path + "'") &&
          Contains("rows_seen to be one value >= 0, but got -100"));
  // An index outside the recorded ranges.
  auto moved = ind.clone();
  moved[0] = 500;
  CHECK_THAT(
      load_with({{"indices", moved}}),
      Contains("saved candidate image 500 lies outside every recorded range"));
  // One image in two classes at P = 1, and twice in one class.
  CHECK_THAT(
      load_with(
          {{"indices", torch::cat({ind, ind.slice(0, 0, 1)})},
           {"labels", torch::cat({lab, (lab.slice(0, 0, 1) + 1) % c})},
           {"scores", torch::cat({sco, sco.slice(0, 0, 1)})}}),
      Contains("in at most p = 1 classes, but image"));
  CHECK_THAT(
      load_with(
          {{"indices", torch::cat({ind, ind.slice(0, 0, 1)})},
           {"labels", torch::cat({lab, lab.slice(0, 0, 1)})},
           {"scores", torch::cat({sco, sco.slice(0, 0, 1)})}}),
      Contains("appears twice in class"));
  // More than K candidates in a class (loaded with K = 3).
  CHECK_THAT(
      load_with({{"labels", torch::zeros_like(lab)}}, 3),
      Contains("at most k = 3 saved candidates per class"));
  // Ranges covering more rows than were seen.
  CHECK_THAT(
      load_with(
          {{"ranges", torch::tensor({int64_t{0}, int64_t{20}}).view({1, 2})}}),
      Contains("the saved ranges cover 20 rows, more than the saved "
               "rows_seen (10)"));
  // A field of the wrong dtype or shape.
  CHECK_THAT(
      load_with({{"scores", sco.to(torch::kFloat)}}),
      Contains("expected the saved `scores` to be a CPU Double tensor"));
  CHECK_THAT(
      load_with({{"ckp", torch::tensor({int64_t{4}})}}),
      Contains("expected the saved `ckp` to hold 3 values"));
  // The same invariants on the state format `save` writes now.
  auto load_state_with = [&](std::map<std::string, torch::Tensor> edits,
                             int64_t rows_seen = 10) {
    std::map<std::string, torch::Tensor> f = {
        {"ranges", src.ranges_tensor()},
        {"indices", ind},
        {"labels", lab},
        {"scores", sco}};
    for (const auto& [key, v] : edits) {
      f[key] = v;
    }
    torch::serialize::OutputArchive a;
    dlcore::detail::StateWriter state(a, "TopKTopPSelector", 1);
    state.put_int("num_classes", c).put_int("k", 12).put_int("p", p);
    state.put_int("rows_seen", rows_seen);
    for (const auto& [key, v] : f) {
      state.put_tensor(key, v);
    }
    a.save_to(path);
    TopKTopPSelector loader({c, 12, p});
    return message_of([&] { loader.load(path); });
  };
  CHECK(load_state_with({}) == "no error");
  CHECK_THAT(
      load_state_with({}, -100),
      Contains("TopKTopPSelector: cannot load '" + path + "'") &&
          Contains("field `rows_seen` of the dlcore.TopKTopPSelector state "
                   "must be an integer >= 0, but it is an integer (-100)"));
  CHECK_THAT(
      load_state_with({{"indices", moved}}),
      Contains("saved candidate image 500 lies outside every recorded range"));
  CHECK_THAT(
      load_state_with(
          {{"indices", torch::cat({ind, ind.slice(0, 0, 1)})},
           {"labels", torch::cat({lab, lab.slice(0, 0, 1)})},
           {"scores", torch::cat({sco, sco.slice(0, 0, 1)})}}),
      Contains("appears twice in class"));
  CHECK_THAT(
      load_state_with(
          {{"ranges", torch::tensor({int64_t{0}, int64_t{20}}).view({1, 2})}}),
      Contains("the saved ranges cover 20 rows, more than the saved "
               "rows_seen (10)"));
}

TEST_CASE(
    "corruption: a selector whose ingest failed part-way refuses further use "
    "until a saved state is loaded, and duplicate indices are a clear error "
    "(probe finding 7)",
    "[corruption]") {
  const int64_t c = 5, k = 4, p = 2;
  auto x = chunk_scores(12, c, 9);
  auto poisoned = x.clone();
  poisoned[6][2] = std::numeric_limits<float>::quiet_NaN();
  const std::string refused = "an earlier ingest failed part-way";
  for (int threads : {1, 3}) {
    TopKTopPSelector s(TopKTopPSelectorOptions(c, k, p).num_threads(threads));
    s.ingest(chunk_scores(4, c, 1), 100);
    torch::serialize::OutputArchive saved;
    s.save(saved);
    std::ostringstream bytes;
    saved.save_to(bytes);
    CHECK_THAT(
        message_of([&] { s.ingest(poisoned, 0); }),
        Contains("row 6 of the chunk (image 6) has nan for class 2"));
    // Rows 0-5 went in before the NaN was found: retrying the corrected
    // chunk, reading or saving the state are all refused, never a state
    // with rows counted twice.
    CHECK_THAT(message_of([&] { s.ingest(x, 0); }), Contains(refused));
    CHECK_THAT(message_of([&] { s.result(); }), Contains(refused));
    CHECK_THAT(message_of([&] { s.candidates(); }), Contains(refused));
    CHECK_THAT(
        message_of([&] {
          torch::serialize::OutputArchive out;
          s.save(out);
        }),
        Contains(refused) && Contains("row 6 of the chunk"));
    TopKTopPSelector other({c, k, p});
    CHECK_THAT(message_of([&] { other.merge(s); }), Contains(refused));
    // Loading the saved state makes it whole again; the corrected chunk is
    // then accepted and the result equals a selector that never saw the
    // poisoned one.
    std::istringstream in(bytes.str());
    torch::serialize::InputArchive archive;
    archive.load_from(in);
    s.load(archive);
    s.ingest(x, 0);
    TopKTopPSelector clean({c, k, p});
    clean.ingest(chunk_scores(4, c, 1), 100);
    clean.ingest(x, 0);
    CHECK(SelectorState(s) == SelectorState(clean));
    CHECK(s.rows_seen() == 16);
  }
  // A chunk ingested on several threads (4 blocks of 256 rows), the bad
  // value in the last block.
  {
    auto big = chunk_scores(1024, c, 10);
    big[900][4] = -std::numeric_limits<float>::infinity();
    TopKTopPSelector s(TopKTopPSelectorOptions(c, k, p).num_threads(4));
    s.ingest(chunk_scores(300, c, 1), 5000);
    CHECK_THAT(
        message_of([&] { s.ingest(big, 0); }),
        Contains("row 900 of the chunk (image 900) has -inf for class 4"));
    CHECK_THAT(message_of([&] { s.result(); }), Contains(refused));
  }
  // Through an index tensor, and with an index repeated in the chunk or
  // inside a recorded range.
  TopKTopPSelector s({c, k, p});
  s.ingest(x.slice(0, 0, 4), 0);
  const SelectorState before(s);
  CHECK_THAT(
      message_of([&] {
        s.ingest(x.slice(0, 4, 7), torch::tensor({7, 8, 7}, torch::kLong));
      }),
      Contains("expected distinct indices in a chunk, but index 7 appears "
               "more than once"));
  CHECK_THAT(
      message_of([&] {
        s.ingest(x.slice(0, 4, 7), torch::tensor({7, 2, 9}, torch::kLong));
      }),
      Contains("index 2 lies in the ingested rows [0, 4)"));
  CHECK(SelectorState(s) == before);
  s.ingest(x.slice(0, 4, 7), torch::tensor({7, 8, 9}, torch::kLong));
  CHECK(s.rows_seen() == 7);
  CHECK_NOTHROW(s.result());
}

TEST_CASE(
    "corruption: soft_targets checks the offsets it reads (probe finding 3)",
    "[corruption]") {
  dlcore::TagLists bad{
      torch::tensor({0, 1000000}, torch::kLong),
      torch::tensor({0}, torch::kLong)};
  CHECK_THAT(
      message_of([&] {
        dlcore::soft_targets(bad, torch::tensor({0}, torch::kLong), 3);
      }),
      Contains("soft_targets: expected offsets with offsets[0] = 0, "
               "offsets[N] = number of tags (1)"));
  dlcore::TagLists decreasing{
      torch::tensor({0, 2, 1, 2}, torch::kLong),
      torch::tensor({0, 1}, torch::kLong)};
  CHECK_THAT(
      message_of([&] {
        dlcore::soft_targets(decreasing, torch::tensor({1}, torch::kLong), 3);
      }),
      Contains("image 1 has offsets [2, 1]"));
  dlcore::TagLists good{
      torch::tensor({0, 2, 2, 3}, torch::kLong),
      torch::tensor({2, 0, 1}, torch::kLong)};
  CHECK(dlcore::soft_targets(good, torch::tensor({0, 2}, torch::kLong), 3)
            .equal(torch::tensor({{0.5f, 0.0f, 0.5f}, {0.0f, 1.0f, 0.0f}})));
}

// ============================================================= threads

TEST_CASE(
    "corruption: tasks whose threads cannot start run on the calling thread "
    "(probe finding 4)",
    "[corruption]") {
  // run_tasks waits for every task and rethrows the first error.
  std::atomic<int> done{0};
  CHECK_THAT(
      message_of([&] {
        dlcore::detail::run_tasks(4, [&](int64_t t) {
          ++done;
          TORCH_CHECK(t != 2, "task ", t, " failed");
        });
      }),
      Contains("task 2 failed"));
  CHECK(done == 4);
  // The selector with 64 ingest threads in a process whose address space
  // leaves room for only a few thread stacks: the same result, no
  // std::terminate. Run in a child process (the limit is per process).
  const int64_t c = 3, k = 50, p = 1;
  auto x = chunk_scores(64 * 256, c, 4);
  TopKTopPSelector reference({c, k, p});
  reference.ingest(x, 0);
  const SelectorState expected(reference);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 3;
    try {
      // Current size plus 96 MB: a handful of 8 MB thread stacks.
      std::ifstream status("/proc/self/status");
      std::string line;
      long vm_kb = 0;
      while (std::getline(status, line)) {
        if (line.rfind("VmSize:", 0) == 0) {
          vm_kb = std::stol(line.substr(7));
        }
      }
      const rlim_t limit = static_cast<rlim_t>(vm_kb + 96 * 1024) * 1024;
      struct rlimit rl {
        limit, limit
      };
      ::setrlimit(RLIMIT_AS, &rl);
      // Let the pool try to start 63 workers: most cannot.
      dlcore::set_pool_threads(64);
      TopKTopPSelector s(TopKTopPSelectorOptions(c, k, p).num_threads(64));
      s.ingest(x, 0);
      code = SelectorState(s) == expected ? 0 : 1;
    } catch (const c10::Error&) {
      code = 2;
    } catch (...) {
      code = 4;
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO("child status " << status);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

// ================================================ non-regular files

TEST_CASE(
    "corruption: readers refuse FIFOs, directories and devices before "
    "opening them (probe findings 5 and 10)",
    "[corruption]") {
  TempDir dir;
  const std::string fifo = dir / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const std::string folder = dir.path.string();
  for (const std::string& path : {fifo, folder, std::string("/dev/null")}) {
    const std::string kind = path == fifo     ? "a FIFO"
                             : path == folder ? "a folder"
                                              : "a character device";
    INFO(path);
    CHECK_THAT(
        message_of([&] { dlcore::read_idx(path); }),
        Contains(
            "read_idx: " + path + ": expected a regular file, but it is " +
            kind));
    CHECK_THAT(
        message_of([&] {
          dlcore::read_cifar_file(path, dlcore::CifarFormat::kCifar10);
        }),
        Contains(path) && Contains("it is " + kind));
    CHECK_THAT(
        message_of([&] { dlcore::read_weights(path); }),
        Contains("read_weights: " + path + ": expected a regular file"));
    TopKTopPSelector s({2, 2, 1});
    CHECK_THAT(
        message_of([&] { s.load(path); }),
        Contains(path) && Contains("it is " + kind));
    auto r = small_resampler();
    CHECK_THAT(
        message_of([&] { r.load(path); }),
        Contains(path) && Contains("it is " + kind));
  }
}

// ======================================================== memory bombs

TEST_CASE(
    "corruption: sizes that options imply are checked before allocating "
    "(probe findings 6, 9 and 10)",
    "[corruption]") {
  // Label noise: 10 labels cannot justify 20000 x 20000 matrices.
  auto labels = torch::arange(10, torch::kLong) % 3;
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            labels,
            dlcore::LabelNoiseOptions(dlcore::NoiseMode::kSymmetric, 0.5)
                .num_classes(20000));
      }),
      Contains("inject_label_noise: num_classes 20000 implies [C, C] "
               "transition matrices of 4e+08 entries"));
  // The largest label is not incremented past int64.
  CHECK_THAT(
      message_of([&] {
        dlcore::inject_label_noise(
            torch::tensor({int64_t{0}, std::numeric_limits<int64_t>::max()}),
            dlcore::LabelNoiseOptions(dlcore::NoiseMode::kSymmetric, 0.5));
      }),
      Contains("needs num_classes in [2, 2^32)"));
  // A marginal whose sum overflows a double: drawn like [1, 1, 1, 1, 1].
  auto noisy = dlcore::inject_label_noise(
      torch::arange(100, torch::kLong) % 5,
      dlcore::LabelNoiseOptions(dlcore::NoiseMode::kMarginal, 1.0)
          .marginal(torch::full({5}, 1e308, torch::kDouble)));
  CHECK(noisy.num_changed == 100);
  CHECK(noisy.labels.min().item<int64_t>() >= 0);
  CHECK(noisy.labels.max().item<int64_t>() <= 4);
  // Resampler: a label at INT64_MAX, and epoch lengths past the bounds.
  CHECK_THAT(
      message_of([] {
        dlcore::HashtagResampler(
            torch::tensor({int64_t{0}, std::numeric_limits<int64_t>::max()}));
      }),
      Contains("expected fewer than 2^32 tags"));
  CHECK_THAT(
      message_of([] {
        dlcore::HashtagResampler(
            torch::tensor({0, 1}, torch::kLong),
            dlcore::HashtagResamplerOptions()
                .mode(dlcore::ResamplingMode::kReplicate)
                .epoch_length(int64_t{1} << 60));
      }),
      Contains("kReplicate materializes the epoch"));
  CHECK_THAT(
      message_of([] {
        dlcore::HashtagResampler(
            torch::tensor({0, 1}, torch::kLong),
            dlcore::HashtagResamplerOptions().world_size(2).epoch_length(
                std::numeric_limits<int64_t>::max()));
      }),
      Contains("expected an epoch length in [0, 2^62]"));
  // Selector: per-class buffers larger than the machine's memory.
  CHECK_THAT(
      message_of([] {
        TopKTopPSelector s({1000, int64_t{1} << 40, 1});
      }),
      Contains("no larger than this machine's memory"));
}

// ================================================================= IDX

TEST_CASE(
    "corruption: a gzip IDX file with junk after the stream is rejected "
    "like plain trailing data (probe finding 11)",
    "[corruption]") {
  TempDir dir;
  const std::string path = dir / "x-idx1-ubyte.gz";
  dlcore::write_idx(path, torch::arange(6, torch::kByte), /*gzip=*/true);
  CHECK(dlcore::read_idx(path).equal(torch::arange(6, torch::kByte)));
  Bytes b = read_file(path);
  for (const std::string& junk :
       std::vector<std::string>{"x", "junk after", std::string(1, 0x1f)}) {
    Bytes j = b;
    j.insert(j.end(), junk.begin(), junk.end());
    write_file(path, j);
    CHECK_THAT(
        message_of([&] { dlcore::read_idx(path); }),
        Contains("read_idx: " + path + ": trailing data"));
  }
  // A flipped byte anywhere in the gzip file: an error or the same data.
  const auto [rejected, same] = flip_every_byte(b, path, 3, [&] {
    return dlcore::read_idx(path).equal(torch::arange(6, torch::kByte));
  });
  CAPTURE(b.size(), rejected, same);
  CHECK(rejected > same);
}
