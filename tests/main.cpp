// Catch2's main for dlcore_tests; the tests live in tests/test_*.cpp.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
