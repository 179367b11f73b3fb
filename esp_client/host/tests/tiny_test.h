// A minimal test harness: TEST(name) { CHECK(...); } registered at static-init time.
// The runner (main.cpp) prints every failure and ends with "N passed, M failed".
#ifndef TINY_TEST_H
#define TINY_TEST_H

#include <stddef.h>
#include <stdio.h>
#include <string.h>

namespace tt {

typedef void (*TestFn)();

struct TestCase {
  const char* name;
  TestFn fn;
  TestCase* next;
};

void registerTest(TestCase* test);
void reportFailure(const char* file, int line, const char* what);
// Heap allocations made by operator new since the program started (see main.cpp).
unsigned long allocationCount();

struct Registrar {
  Registrar(TestCase* test) { registerTest(test); }
};

inline void reportStrings(const char* file, int line, const char* expr, const char* a, const char* b) {
  reportFailure(file, line, expr);
  fprintf(stderr, "      got:      \"%s\"\n      expected: \"%s\"\n", a ? a : "(null)", b ? b : "(null)");
}

inline void reportLongs(const char* file, int line, const char* expr, long long a, long long b) {
  reportFailure(file, line, expr);
  fprintf(stderr, "      got: %lld, expected: %lld\n", a, b);
}

}  // namespace tt

#define TT_CONCAT2(a, b) a##b
#define TT_CONCAT(a, b) TT_CONCAT2(a, b)

#define TEST(name)                                                     \
  static void name();                                                  \
  static tt::TestCase TT_CONCAT(name, _case) = {#name, name, 0};       \
  static tt::Registrar TT_CONCAT(name, _registrar)(&TT_CONCAT(name, _case)); \
  static void name()

#define CHECK(cond)                                          \
  do {                                                       \
    if (!(cond)) tt::reportFailure(__FILE__, __LINE__, #cond); \
  } while (0)

#define CHECK_EQ(a, b)                                                                   \
  do {                                                                                   \
    const long long tt_a = static_cast<long long>(a);                                    \
    const long long tt_b = static_cast<long long>(b);                                    \
    if (tt_a != tt_b) tt::reportLongs(__FILE__, __LINE__, #a " == " #b, tt_a, tt_b);     \
  } while (0)

#define CHECK_STR(a, b)                                                                  \
  do {                                                                                   \
    const char* tt_a = (a);                                                              \
    const char* tt_b = (b);                                                              \
    if (tt_a == 0 || tt_b == 0 || strcmp(tt_a, tt_b) != 0)                               \
      tt::reportStrings(__FILE__, __LINE__, #a " == " #b, tt_a, tt_b);                   \
  } while (0)

#endif  // TINY_TEST_H
