#include <dlcore/data/cifar.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("dlcore_test_cifar_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Writes raw records byte by byte, independently of write_cifar_file.
void write_raw(
    const fs::path& path, const std::vector<std::vector<uint8_t>>& records) {
  std::ofstream out(path, std::ios::binary);
  for (const auto& r : records) {
    out.write(
        reinterpret_cast<const char*>(r.data()),
        static_cast<std::streamsize>(r.size()));
  }
}

std::vector<uint8_t> record10(uint8_t label, uint8_t seed) {
  std::vector<uint8_t> r(3073);
  r[0] = label;
  for (int i = 0; i < 3072; ++i) {
    r[static_cast<std::size_t>(i + 1)] =
        static_cast<uint8_t>((i * 7 + seed) % 256);
  }
  return r;
}

std::vector<uint8_t> record100(uint8_t coarse, uint8_t fine, uint8_t seed) {
  std::vector<uint8_t> r(3074);
  r[0] = coarse;
  r[1] = fine;
  for (int i = 0; i < 3072; ++i) {
    r[static_cast<std::size_t>(i + 2)] =
        static_cast<uint8_t>((i * 3 + seed) % 256);
  }
  return r;
}

} // namespace

TEST_CASE(
    "CIFAR-10 records are read byte for byte in channel-plane order",
    "[cifar]") {
  const auto dir = temp_dir("ten");
  write_raw(dir / "test_batch.bin", {record10(3, 1), record10(9, 2)});
  const auto r = dlcore::read_cifar_file(
      (dir / "test_batch.bin").string(), dlcore::CifarFormat::kCifar10);
  REQUIRE(r.images.sizes() == torch::IntArrayRef{2, 3, 32, 32});
  CHECK(r.images.scalar_type() == torch::kUInt8);
  CHECK(torch::equal(r.labels, torch::tensor({3, 9}, torch::kLong)));
  CHECK_FALSE(r.coarse_labels.defined());
  // Pixel i of the record is channel i / 1024, row (i % 1024) / 32, column i
  // % 32.
  const auto expected = record10(9, 2);
  for (int i : {0, 31, 32, 1023, 1024, 2047, 3071}) {
    CHECK(
        r.images[1][i / 1024][(i % 1024) / 32][i % 32].item<int>() ==
        expected[static_cast<std::size_t>(i + 1)]);
  }
  // Normalized loader, test split, found in the folder itself.
  const auto test = dlcore::load_cifar10(dir.string(), false);
  CHECK(test.size() == 2);
  CHECK(test.data.scalar_type() == torch::kFloat);
  const float x = static_cast<float>(expected[1]) / 255.0f;
  CHECK(test.data[1][0][0][0].item<float>() == (x - 0.4914f) / 0.2470f);
  fs::remove_all(dir);
}

TEST_CASE("CIFAR-10 training batches are concatenated in order", "[cifar]") {
  const auto root = temp_dir("ten_train");
  const auto dir = root / "cifar-10-batches-bin";
  fs::create_directories(dir);
  for (int b = 1; b <= 5; ++b) {
    write_raw(
        dir / ("data_batch_" + std::to_string(b) + ".bin"),
        {record10(static_cast<uint8_t>(b), 0),
         record10(0, static_cast<uint8_t>(b))});
  }
  const auto train = dlcore::load_cifar10(
      root.string(), true, dlcore::CifarOptions().normalize(false));
  CHECK(train.size() == 10);
  CHECK(train.data.scalar_type() == torch::kUInt8);
  CHECK(torch::equal(
      train.targets,
      torch::tensor({1, 0, 2, 0, 3, 0, 4, 0, 5, 0}, torch::kLong)));
  fs::remove(dir / "data_batch_3.bin");
  CHECK_THROWS_WITH(
      dlcore::load_cifar10(root.string(), true),
      Catch::Contains("cannot open") && Catch::Contains("data_batch_3.bin"));
  CHECK_THROWS_WITH(
      dlcore::load_cifar10((root / "elsewhere").string(), false),
      Catch::Contains("expected 'test_batch.bin' in") &&
          Catch::Contains("found it in neither"));
  fs::remove_all(root);
}

TEST_CASE("CIFAR-100 has coarse and fine labels", "[cifar]") {
  const auto root = temp_dir("hundred");
  const auto dir = root / "cifar-100-binary";
  fs::create_directories(dir);
  write_raw(
      dir / "train.bin",
      {record100(19, 99, 0), record100(0, 5, 1), record100(7, 42, 2)});
  const auto fine = dlcore::load_cifar100(root.string(), true);
  CHECK(torch::equal(fine.targets, torch::tensor({99, 5, 42}, torch::kLong)));
  const auto coarse = dlcore::load_cifar100(
      root.string(),
      true,
      dlcore::CifarOptions().label(dlcore::CifarLabel::kCoarse));
  CHECK(torch::equal(coarse.targets, torch::tensor({19, 0, 7}, torch::kLong)));
  const float x = static_cast<float>(record100(0, 5, 1)[2 + 1024]) / 255.0f;
  CHECK(fine.data[1][1][0][0].item<float>() == (x - 0.4867f) / 0.2565f);
  fs::remove_all(root);
}

TEST_CASE("write_cifar_file round-trips through read_cifar_file", "[cifar]") {
  const auto dir = temp_dir("write");
  auto gen = at::detail::createCPUGenerator(5);
  const auto images =
      torch::randint(0, 256, {4, 3, 32, 32}, gen, torch::kUInt8);
  const auto fine = torch::tensor({0, 99, 50, 1}, torch::kLong);
  const auto coarse = torch::tensor({0, 19, 10, 1}, torch::kLong);
  const auto path = (dir / "train.bin").string();
  dlcore::write_cifar_file(
      path, dlcore::CifarFormat::kCifar100, images, fine, coarse);
  CHECK(fs::file_size(path) == 4 * 3074);
  // No temporary file is left next to the result.
  CHECK(
      std::distance(fs::directory_iterator(dir), fs::directory_iterator()) ==
      1);
  const auto r = dlcore::read_cifar_file(path, dlcore::CifarFormat::kCifar100);
  CHECK(torch::equal(r.images, images));
  CHECK(torch::equal(r.labels, fine));
  CHECK(torch::equal(r.coarse_labels, coarse));

  CHECK_THROWS_WITH(
      dlcore::write_cifar_file(
          path, dlcore::CifarFormat::kCifar100, images, fine),
      Catch::Contains("expected coarse_labels [4] for CIFAR-100"));
  CHECK_THROWS_WITH(
      dlcore::write_cifar_file(
          path, dlcore::CifarFormat::kCifar10, images, fine),
      Catch::Contains("expected labels in [0, 10)"));
  CHECK_THROWS_WITH(
      dlcore::write_cifar_file(
          path, dlcore::CifarFormat::kCifar10, images.to(torch::kFloat), fine),
      Catch::Contains(
          "expected uint8 images [N, 3, 32, 32], but got [4, 3, 32, 32]") ||
          Catch::Contains("expected uint8 images"));
  // The rejected writes left the earlier file as it was.
  CHECK(torch::equal(
      dlcore::read_cifar_file(path, dlcore::CifarFormat::kCifar100).images,
      images));
  fs::remove_all(dir);
}

TEST_CASE("malformed CIFAR files are rejected with the file named", "[cifar]") {
  const auto dir = temp_dir("bad");
  const auto truncated = dir / "truncated.bin";
  {
    auto r = record10(1, 0);
    r.resize(3000);
    write_raw(truncated, {record10(1, 0), r});
  }
  CHECK_THROWS_WITH(
      dlcore::read_cifar_file(
          truncated.string(), dlcore::CifarFormat::kCifar10),
      Catch::Contains("truncated.bin' to hold whole CIFAR-10 records of 3073 "
                      "bytes, but its size 6073"));
  const auto empty = dir / "empty.bin";
  write_raw(empty, {});
  CHECK_THROWS_WITH(
      dlcore::read_cifar_file(empty.string(), dlcore::CifarFormat::kCifar10),
      Catch::Contains("but its size 0"));
  const auto ten = dir / "ten.bin";
  write_raw(ten, {record10(1, 0), record10(2, 0)});
  CHECK_THROWS_WITH(
      dlcore::read_cifar_file(ten.string(), dlcore::CifarFormat::kCifar100),
      Catch::Contains("(it looks like CIFAR-10)"));
  const auto bad_label = dir / "bad_label.bin";
  write_raw(bad_label, {record10(1, 0), record10(10, 0)});
  CHECK_THROWS_WITH(
      dlcore::read_cifar_file(
          bad_label.string(), dlcore::CifarFormat::kCifar10),
      Catch::Contains("expected CIFAR-10 labels in [0, 10)") &&
          Catch::Contains("record 1 has 10"));
  const auto bad_fine = dir / "bad_fine.bin";
  write_raw(bad_fine, {record100(3, 100, 0)});
  CHECK_THROWS_WITH(
      dlcore::read_cifar_file(
          bad_fine.string(), dlcore::CifarFormat::kCifar100),
      Catch::Contains("CIFAR-100 fine labels in [0, 100)"));
  CHECK_THROWS_WITH(
      dlcore::read_cifar_file(
          (dir / "missing.bin").string(), dlcore::CifarFormat::kCifar10),
      Catch::Contains("cannot open") && Catch::Contains("missing.bin"));
  fs::remove_all(dir);
}

TEST_CASE("normalize_cifar validates its input", "[cifar]") {
  CHECK_THROWS_WITH(
      dlcore::normalize_cifar(
          torch::zeros({1, 1, 32, 32}, torch::kUInt8),
          dlcore::cifar10_mean(),
          dlcore::cifar10_std()),
      Catch::Contains(
          "expected uint8 images [N, 3, H, W], but got [1, 1, 32, 32]"));
  CHECK_THROWS_WITH(
      dlcore::normalize_cifar(
          torch::zeros({1, 3, 2, 2}, torch::kUInt8),
          dlcore::cifar10_mean(),
          {1.0f, 0.0f, 1.0f}),
      Catch::Contains("channel 1 has 0"));
  const auto y = dlcore::normalize_cifar(
      torch::full({1, 3, 2, 2}, 255, torch::kUInt8),
      {0.5f, 0.5f, 0.5f},
      {0.5f, 0.5f, 0.5f});
  CHECK(torch::all(y == 1.0f).item<bool>());
}

TEST_CASE(
    "read_cifar_file: every truncation of a file is whole records or an "
    "error naming the file",
    "[cifar]") {
  // CIFAR files have no header: each record is its label byte(s) then 3072
  // pixels, so every cut inside a record (its label bytes included) must
  // be refused, and a cut at a record boundary reads the records before
  // it. The file holds two records.
  const auto dir = temp_dir("truncations");
  int64_t tried = 0;
  int64_t errors = 0;
  for (const auto format :
       {dlcore::CifarFormat::kCifar10, dlcore::CifarFormat::kCifar100}) {
    const bool hundred = format == dlcore::CifarFormat::kCifar100;
    std::vector<uint8_t> bytes;
    for (uint8_t i = 0; i < 2; ++i) {
      const auto r = hundred ? record100(i, i + 1, i) : record10(i, i);
      bytes.insert(bytes.end(), r.begin(), r.end());
    }
    const auto record = static_cast<std::size_t>(hundred ? 3074 : 3073);
    const std::string path = (dir / "cut.bin").string();
    // Every cut inside the first record's label bytes and the pixels just
    // after them, every cut within 3 bytes of a record boundary, and every
    // 61st byte in between (each cut is a file write: all 12,294 took 45 s
    // on a busy machine).
    const std::size_t labels = record - 3072;
    std::set<std::size_t> cuts;
    for (std::size_t len = 0; len < labels + 4; ++len) {
      cuts.insert(len);
    }
    for (std::size_t b = record; b <= bytes.size(); b += record) {
      for (std::size_t len = b - 3;
           len < std::min(b + labels + 4, bytes.size());
           ++len) {
        cuts.insert(len);
      }
    }
    for (std::size_t len = 0; len < bytes.size(); len += 61) {
      cuts.insert(len);
    }
    for (const std::size_t len : cuts) {
      write_raw(
          path,
          {std::vector<uint8_t>(
              bytes.begin(), bytes.begin() + static_cast<long>(len))});
      ++tried;
      if (len > 0 && len % record == 0) {
        const auto r = dlcore::read_cifar_file(path, format);
        REQUIRE(r.images.size(0) == static_cast<int64_t>(len / record));
        CHECK(r.labels[0].item<int64_t>() == (hundred ? 1 : 0));
        continue;
      }
      try {
        dlcore::read_cifar_file(path, format);
        FAIL("a cut at " << len << " bytes loaded");
      } catch (const c10::Error& e) {
        const std::string msg = e.what_without_backtrace();
        INFO(msg);
        CHECK(msg.rfind("read_cifar_file: expected '" + path + "'", 0) == 0);
        ++errors;
      }
    }
  }
  WARN(
      "CIFAR truncation sweep: " << tried << " inputs tried, " << errors
                                 << " clean errors, " << tried - errors
                                 << " whole-record files read");
  CHECK(tried == 234);
  CHECK(errors == tried - 2);
  fs::remove_all(dir);
}
