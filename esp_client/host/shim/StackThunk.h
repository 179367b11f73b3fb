// ESP8266 core 3.x cores/esp8266/StackThunk.h, the declarations TinyOTA uses. The real
// make_stack_thunk() emits Xtensa assembly that switches to the BearSSL stack; the shim
// only declares nothing, so -fsyntax-only on a PC accepts the same source.
#ifndef SHIM_STACKTHUNK_H
#define SHIM_STACKTHUNK_H

#include <stdint.h>

extern "C" {
void stack_thunk_add_ref();
void stack_thunk_del_ref();
uint32_t stack_thunk_get_refcnt();
}

#define make_stack_thunk(fcnToThunk)

#endif  // SHIM_STACKTHUNK_H
