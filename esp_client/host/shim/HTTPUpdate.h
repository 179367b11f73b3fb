// Shim of espressif/arduino-esp32 libraries/HTTPUpdate/src/HTTPUpdate.h: the 2.0.x shape
// (request callback, no setAuthorization) and the 3.x shape (NetworkClient, setAuthorization).
#pragma once
#include <functional>

#include "Arduino.h"
#include "HTTPClient.h"
#include "WiFi.h"

#define HTTP_UE_TOO_LESS_SPACE (-100)
#define HTTP_UE_SERVER_NOT_REPORT_SIZE (-101)
#define HTTP_UE_SERVER_FILE_NOT_FOUND (-102)
#define HTTP_UE_SERVER_FORBIDDEN (-103)
#define HTTP_UE_SERVER_WRONG_HTTP_CODE (-104)
#define HTTP_UE_SERVER_FAULTY_MD5 (-105)
#define HTTP_UE_BIN_VERIFY_HEADER_FAILED (-106)
#define HTTP_UE_BIN_FOR_WRONG_FLASH (-107)
#define HTTP_UE_NO_PARTITION (-108)

enum HTTPUpdateResult { HTTP_UPDATE_FAILED, HTTP_UPDATE_NO_UPDATES, HTTP_UPDATE_OK };
typedef HTTPUpdateResult t_httpUpdate_return;

using HTTPUpdateStartCB = std::function<void()>;
using HTTPUpdateRequestCB = std::function<void(HTTPClient*)>;
using HTTPUpdateEndCB = std::function<void()>;
using HTTPUpdateErrorCB = std::function<void(int)>;
using HTTPUpdateProgressCB = std::function<void(int, int)>;

class HTTPUpdate {
 public:
  HTTPUpdate(void);
  HTTPUpdate(int httpClientTimeout);
  ~HTTPUpdate(void);

  void rebootOnUpdate(bool reboot);
  void setFollowRedirects(followRedirects_t follow);
  void setLedPin(int ledPin = -1, uint8_t ledOn = HIGH);

#if ESP_ARDUINO_VERSION_MAJOR >= 3
  void setMD5sum(const String& md5Sum);
  void setAuthorization(const String& user, const String& password);
  void setAuthorization(const String& auth);
  t_httpUpdate_return update(NetworkClient& client, const String& url, const String& currentVersion = "",
                             HTTPUpdateRequestCB requestCB = NULL);
  t_httpUpdate_return update(NetworkClient& client, const String& host, uint16_t port, const String& uri = "/",
                             const String& currentVersion = "", HTTPUpdateRequestCB requestCB = NULL);
#else
  t_httpUpdate_return update(WiFiClient& client, const String& url, const String& currentVersion = "",
                             HTTPUpdateRequestCB requestCB = NULL);
  t_httpUpdate_return update(WiFiClient& client, const String& host, uint16_t port, const String& uri = "/",
                             const String& currentVersion = "", HTTPUpdateRequestCB requestCB = NULL);
#endif
  t_httpUpdate_return update(HTTPClient& httpClient, const String& currentVersion = "",
                             HTTPUpdateRequestCB requestCB = NULL);

  void onStart(HTTPUpdateStartCB cbOnStart);
  void onEnd(HTTPUpdateEndCB cbOnEnd);
  void onError(HTTPUpdateErrorCB cbOnError);
  void onProgress(HTTPUpdateProgressCB cbOnProgress);

  int getLastError(void);
  String getLastErrorString(void);
};

extern HTTPUpdate httpUpdate;
