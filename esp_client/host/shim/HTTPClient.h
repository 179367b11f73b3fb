// Shim of espressif/arduino-esp32 libraries/HTTPClient/src/HTTPClient.h (2.0.x / 3.x).
#pragma once
#include "WiFi.h"

typedef enum {
  HTTPC_DISABLE_FOLLOW_REDIRECTS,
  HTTPC_STRICT_FOLLOW_REDIRECTS,
  HTTPC_FORCE_FOLLOW_REDIRECTS
} followRedirects_t;

class HTTPClient {
 public:
  void setAuthorization(const char* user, const char* password);
  void setAuthorization(const char* auth);
  void addHeader(const String& name, const String& value, bool first = false, bool replace = true);
};
