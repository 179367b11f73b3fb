// ESP8266 core 3.x: tools/sdk/include/bearssl/bearssl.h is BearSSL 0.6 with the ESP8266
// port's additions. The calls TinyOTA makes exist unchanged in upstream BearSSL 0.6, so the
// shim hands over to Debian's copy (libbearssl-dev).
#include <bearssl.h>
