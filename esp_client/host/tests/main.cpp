// Runs every registered test; exit status 0 only when all passed.
#include <stdlib.h>

#include <new>

#include "tiny_test.h"

namespace {

tt::TestCase* g_head = 0;
tt::TestCase* g_tail = 0;
int g_failuresInTest = 0;
const char* g_currentTest = "";
unsigned long g_allocations = 0;

}  // namespace

// Counting allocator: lets tests assert that the core never touches the heap.
void* operator new(size_t size) {
  ++g_allocations;
  void* p = malloc(size == 0 ? 1 : size);
  if (p == 0) abort();
  return p;
}
void* operator new[](size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
void operator delete[](void* p, size_t) noexcept { free(p); }

namespace tt {

void registerTest(TestCase* test) {
  // Keep declaration order within a file; files come in link order.
  if (g_tail) {
    g_tail->next = test;
  } else {
    g_head = test;
  }
  g_tail = test;
}

void reportFailure(const char* file, int line, const char* what) {
  ++g_failuresInTest;
  fprintf(stderr, "FAIL %s (%s:%d)\n      %s\n", g_currentTest, file, line, what);
}

unsigned long allocationCount() { return g_allocations; }

}  // namespace tt

int main(int argc, char** argv) {
  const char* only = argc > 1 ? argv[1] : 0;  // optional substring filter
  int passed = 0;
  int failed = 0;
  for (tt::TestCase* t = g_head; t; t = t->next) {
    if (only && strstr(t->name, only) == 0) continue;
    g_currentTest = t->name;
    g_failuresInTest = 0;
    t->fn();
    if (g_failuresInTest == 0) {
      ++passed;
    } else {
      ++failed;
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
