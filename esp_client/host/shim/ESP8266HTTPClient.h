// Shim of esp8266/Arduino libraries/ESP8266HTTPClient (core 3.1.x), the types HTTPUpdate uses.
#pragma once
#include "ESP8266WiFi.h"

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
