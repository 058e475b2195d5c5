// Saves killed at random points (SIGKILL, no chance to clean up) leave either
// the old file or the new one, whole and loadable, and the next successful
// save removes the killed saves' temporary files.

#include <dlcore/data/pseudo_label.h>
#include <dlcore/detail/atomic_file.h>
#include <dlcore/nn/checkpoint.h>
#include <dlcore/nn/safetensors.h>

#include <torch/nn/modules/linear.h>

#include <dirent.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

/// A fresh folder under the system's temporary folder, removed at the end.
struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern = "/tmp/dlcore-interrupted-XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    REQUIRE(::mkdtemp(buffer.data()) != nullptr);
    path = buffer.data();
  }
  ~TempDir() {
    for (const auto& f : entries()) {
      ::unlink((path + "/" + f).c_str());
    }
    ::rmdir(path.c_str());
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    if (DIR* d = ::opendir(path.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name != "." && name != "..") {
          out.push_back(name);
        }
      }
      ::closedir(d);
    }
    return out;
  }
  /// Temporary files of saves of `name` (".<name>.tmp.*").
  int temps_of(const std::string& name) const {
    int n = 0;
    for (const auto& e : entries()) {
      n += e.rfind("." + name + ".tmp.", 0) == 0 ? 1 : 0;
    }
    return n;
  }
};

/// One kind of file: how to write version 0 or 1, and which version a file
/// on disk holds (-1: neither, or it does not load).
struct Kind {
  std::string name;
  std::function<void(const std::string& path, int version)> save;
  std::function<int(const std::string& path)> version_of;
};

/// Kills a child that saves `kind` alternately as version 1 and 0, at
/// `kills` random moments, checking after each kill that the file is one
/// of the two versions, whole; then saves once more and checks that no
/// temporary file is left. Returns how many kills left a temporary file
/// (kills that landed inside a save).
int kill_while_saving(const Kind& kind, int kills, uint64_t seed) {
  TempDir dir;
  const std::string path = dir.path + "/" + kind.name;
  kind.save(path, 0);
  REQUIRE(kind.version_of(path) == 0);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> delay_us(0, 30000);
  int interrupted = 0;
  for (int i = 0; i < kills; ++i) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The child only saves; it never returns into the test framework.
      try {
        for (int v = 1;; v = 1 - v) {
          kind.save(path, v);
        }
      } catch (...) {
      }
      ::_exit(3);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO(kind.name << ", kill " << i);
    REQUIRE(WIFSIGNALED(status)); // it was still saving, not failed
    const int v = kind.version_of(path);
    CHECK((v == 0 || v == 1));
    interrupted += dir.temps_of(kind.name) > 0 ? 1 : 0;
  }
  // The next save removes the temporary files of the killed saves.
  kind.save(path, 0);
  CHECK(kind.version_of(path) == 0);
  CHECK(dir.temps_of(kind.name) == 0);
  CHECK(dir.entries() == std::vector<std::string>{kind.name});
  return interrupted;
}

/// Two versions of a 2 MB model.
struct Models {
  torch::nn::Linear a{torch::nn::LinearOptions(512, 1024)};
  torch::nn::Linear b{torch::nn::LinearOptions(512, 1024)};
  Models() {
    torch::NoGradGuard no_grad;
    a->weight.fill_(0.25);
    b->weight.fill_(-0.5);
  }
  const torch::nn::Module& get(int v) const {
    return v == 0 ? *a : *b;
  }
  /// Which model the tensors are, by value.
  int version_of(const std::map<std::string, torch::Tensor>& t) const {
    for (int v : {0, 1}) {
      const auto& m = v == 0 ? a : b;
      auto w = t.find("weight");
      auto bias = t.find("bias");
      if (w != t.end() && bias != t.end() && t.size() == 2 &&
          w->second.equal(m->weight) && bias->second.equal(m->bias)) {
        return v;
      }
    }
    return -1;
  }
};

template <typename F>
int loads_as(F&& read) {
  try {
    return read();
  } catch (const c10::Error&) {
    return -1;
  }
}

} // namespace

TEST_CASE(
    "killed saves leave the old file or the new one, and no temporary files",
    "[interrupted_writes]") {
  const Models models;
  const int kills = 12;
  int interrupted = 0;

  interrupted += kill_while_saving(
      {"model.pt",
       [&](const std::string& p, int v) {
         dlcore::save_weights(models.get(v), p);
       },
       [&](const std::string& p) {
         return loads_as(
             [&] { return models.version_of(dlcore::read_weights(p)); });
       }},
      kills,
      1);

  interrupted += kill_while_saving(
      {"model.safetensors",
       [&](const std::string& p, int v) {
         dlcore::save_weights_safetensors(models.get(v), p);
       },
       [&](const std::string& p) {
         return loads_as(
             [&] { return models.version_of(dlcore::read_safetensors(p)); });
       }},
      kills,
      2);

  // Two selectors of 200,000 candidates each (about 3 MB of state).
  std::vector<dlcore::TopKTopPSelector> selectors;
  for (int v : {0, 1}) {
    torch::manual_seed(v);
    selectors.emplace_back(dlcore::TopKTopPSelectorOptions(100, 2000, 1));
    selectors.back().ingest(torch::rand({200000, 100}), 0);
  }
  const auto want0 = selectors[0].result().indices;
  const auto want1 = selectors[1].result().indices;
  interrupted += kill_while_saving(
      {"selector.pt",
       [&](const std::string& p, int v) { selectors[v].save(p); },
       [&](const std::string& p) {
         return loads_as([&] {
           dlcore::TopKTopPSelector s({100, 2000, 1});
           s.load(p);
           const auto got = s.result().indices;
           return got.equal(want0) ? 0 : got.equal(want1) ? 1 : -1;
         });
       }},
      kills,
      3);

  // A result file (what write_json and CsvTable::write use).
  const std::string text0(3 << 20, 'a');
  const std::string text1(2 << 20, 'b');
  interrupted += kill_while_saving(
      {"results.json",
       [&](const std::string& p, int v) {
         dlcore::detail::write_file_atomic(
             p, v == 0 ? text0 : text1, "results");
       },
       [&](const std::string& p) {
         std::ifstream in(p, std::ios::binary);
         const std::string got((std::istreambuf_iterator<char>(in)), {});
         return got == text0 ? 0 : got == text1 ? 1 : -1;
       }},
      kills,
      4);

  // The kills must have landed inside saves, or nothing was tested.
  INFO(interrupted << " of " << 4 * kills << " kills interrupted a save");
  CHECK(interrupted > 0);
}
