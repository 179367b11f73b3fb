// Shim of esp8266/Arduino libraries/ESP8266httpUpdate/src/ESP8266httpUpdate.h (core 3.1.x).
#pragma once
#include <functional>

#include "Arduino.h"
#include "ESP8266HTTPClient.h"
#include "ESP8266WiFi.h"

constexpr int HTTP_UE_TOO_LESS_SPACE = (-100);
constexpr int HTTP_UE_SERVER_NOT_REPORT_SIZE = (-101);
constexpr int HTTP_UE_SERVER_FILE_NOT_FOUND = (-102);
constexpr int HTTP_UE_SERVER_FORBIDDEN = (-103);
constexpr int HTTP_UE_SERVER_WRONG_HTTP_CODE = (-104);
constexpr int HTTP_UE_SERVER_FAULTY_MD5 = (-105);
constexpr int HTTP_UE_BIN_VERIFY_HEADER_FAILED = (-106);
constexpr int HTTP_UE_BIN_FOR_WRONG_FLASH = (-107);
constexpr int HTTP_UE_SERVER_UNAUTHORIZED = (-108);

enum HTTPUpdateResult { HTTP_UPDATE_FAILED, HTTP_UPDATE_NO_UPDATES, HTTP_UPDATE_OK };
typedef HTTPUpdateResult t_httpUpdate_return;

using HTTPUpdateStartCB = std::function<void()>;
using HTTPUpdateEndCB = std::function<void()>;
using HTTPUpdateErrorCB = std::function<void(int)>;
using HTTPUpdateProgressCB = std::function<void(int, int)>;

class ESP8266HTTPUpdate {
 public:
  ESP8266HTTPUpdate(void);
  ESP8266HTTPUpdate(int httpClientTimeout);
  ~ESP8266HTTPUpdate(void);

  void rebootOnUpdate(bool reboot);
  void setFollowRedirects(followRedirects_t follow);
  void closeConnectionsOnUpdate(bool sever);
  void setLedPin(int ledPin = -1, uint8_t ledOn = HIGH);
  void setAuthorization(const String& user, const String& password);
  void setAuthorization(const String& auth);

  t_httpUpdate_return update(WiFiClient& client, const String& url, const String& currentVersion = "");
  t_httpUpdate_return update(WiFiClient& client, const String& host, uint16_t port, const String& uri = "/",
                             const String& currentVersion = "");
  t_httpUpdate_return updateFS(WiFiClient& client, const String& url, const String& currentVersion = "");

  void onStart(HTTPUpdateStartCB cbOnStart);
  void onEnd(HTTPUpdateEndCB cbOnEnd);
  void onError(HTTPUpdateErrorCB cbOnError);
  void onProgress(HTTPUpdateProgressCB cbOnProgress);

  int getLastError(void);
  String getLastErrorString(void);
};

extern ESP8266HTTPUpdate ESPhttpUpdate;
