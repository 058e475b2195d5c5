#include <dlcore/per_group.h>
#include <dlcore/version.h>

#include <regex>
#include <string>

TEST_CASE("PerGroup broadcasts one value to every group") {
  dlcore::PerGroup<double> v(0.5);
  CHECK(v.is_broadcast());
  CHECK(v.expand(3, "T", "x") == std::vector<double>{0.5, 0.5, 0.5});
}

TEST_CASE("PerGroup keeps one value per group") {
  dlcore::PerGroup<double> v(std::vector<double>{1.0, 2.0});
  CHECK_FALSE(v.is_broadcast());
  CHECK(v.expand(2, "T", "x") == std::vector<double>{1.0, 2.0});
}

TEST_CASE("PerGroup rejects a list whose length differs from the groups") {
  dlcore::PerGroup<double> v = {1.0, 2.0, 3.0};
  try {
    v.expand(2, "CyclicLR", "max_lr");
    FAIL("expected an error");
  } catch (const c10::Error& e) {
    CHECK_THAT(
        e.what_without_backtrace(),
        Catch::Contains("CyclicLR: expected max_lr to have one value per "
                        "param group (2 groups), but got 3 values"));
  }
}

TEST_CASE("version() is the project's major.minor.patch") {
  const std::string v = dlcore::version();
  CHECK(v == "0.1.0");
  CHECK(std::regex_match(v, std::regex("^[0-9]+\\.[0-9]+\\.[0-9]+$")));
}
