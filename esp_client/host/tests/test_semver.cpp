// Semantic Versioning 2.0.0: grammar (section 2, 9, 10) and precedence (section 11).
#include "../../src/tinyota/semver.h"
#include "tiny_test.h"

using namespace tinyota;

namespace {

int order(const char* a, const char* b) {
  int o = 99;
  if (!compareSemver(a, b, o)) return 99;
  return o;
}

}  // namespace

TEST(semver_accepts_valid_versions) {
  const char* good[] = {
      "0.0.0",          "1.2.3",         "10.20.30",        "1.0.0-alpha",   "1.0.0-alpha.1",
      "1.0.0-0.3.7",    "1.0.0-x.7.z.92", "1.0.0-x-y-z.--", "1.0.0+20130313144700",
      "1.0.0-beta+exp.sha.5114f85",      "1.0.0+21AF26D3----117B344092BD", "1.0.0+001",
      "1.0.0-rc.1+build.1",              "99999999999999999999999.0.0", "1.0.0--",
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; ++i) {
    if (!isSemver(good[i])) tt::reportStrings(__FILE__, __LINE__, "refused", good[i], "(valid)");
  }
}

TEST(semver_refuses_invalid_versions) {
  const char* bad[] = {
      "",        "1",        "1.2",      "1.2.3.4",  "01.2.3",   "1.02.3",  "1.2.03",
      "v1.2.3",  " 1.2.3",   "1.2.3 ",   "1.2.3-",   "1.2.3+",   "1.2.3-01", "1.2.3-a..b",
      "1.2.3-a.", "1.2.3+a..b", "1.2.3-a_b", "1.2.3+a+b", "-1.2.3",  "1.2.-3", "1.2.3-é",
      "a.b.c",   "1..3",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    if (isSemver(bad[i])) tt::reportStrings(__FILE__, __LINE__, "accepted", bad[i], "(invalid)");
  }
  CHECK(!isSemver(0));
}

TEST(semver_precedence_follows_the_spec_example) {
  // Section 11.4: 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta <
  // 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0.
  const char* chain[] = {"1.0.0-alpha",  "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                         "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1",       "1.0.0",
                         "2.0.0",        "2.1.0",         "2.1.1"};
  const size_t n = sizeof chain / sizeof chain[0];
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      const int expected = i < j ? -1 : (i > j ? 1 : 0);
      if (order(chain[i], chain[j]) != expected) {
        tt::reportStrings(__FILE__, __LINE__, "wrong order", chain[i], chain[j]);
      }
    }
  }
}

TEST(semver_compares_numbers_numerically_and_ignores_build_metadata) {
  CHECK_EQ(order("1.9.0", "1.10.0"), -1);
  CHECK_EQ(order("1.0.10", "1.0.9"), 1);
  CHECK_EQ(order("18446744073709551616.0.0", "18446744073709551615.0.0"), 1);
  CHECK_EQ(order("1.0.0+a", "1.0.0+b"), 0);
  CHECK_EQ(order("1.0.0-rc.1+a", "1.0.0-rc.1"), 0);
  CHECK_EQ(order("1.0.0-1", "1.0.0-a"), -1);   // numeric identifiers sort first
  CHECK_EQ(order("1.0.0-a.b", "1.0.0-a"), 1);  // more fields win
  CHECK_EQ(order("1.0.0-B", "1.0.0-a"), -1);   // ASCII order: uppercase first
  CHECK_EQ(order("1.0.0", "nonsense"), 99);
}
