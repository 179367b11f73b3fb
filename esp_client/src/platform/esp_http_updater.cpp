#if defined(ESP8266) || defined(ESP32)

#include "esp_http_updater.h"

#include <Arduino.h>

#if defined(ESP8266)
#include <ESP8266httpUpdate.h>
#else
#include <HTTPUpdate.h>
#endif

#include "../tinyota/text.h"

namespace {

uint32_t nonNegative(int value) { return value < 0 ? 0u : static_cast<uint32_t>(value); }

#if defined(ESP8266)

t_httpUpdate_return runCore(TinyOtaNetClient& client, const tinyota::UpdateRequest& request,
                            tinyota::ProgressSink& progress) {
  ESPhttpUpdate.rebootOnUpdate(false);
  // closeConnectionsOnUpdate() defaults to true: before writing flash, handleUpdate() calls
  // WiFiClient::stopAllExcept(<the download>), which drops the MQTT socket mid-update. We
  // keep it (false) so progress reaches the broker while the image streams; the price is
  // the idle MQTT socket's lwIP buffers during the update. Should the session drop anyway
  // (e.g. keepalive on a slow link), PubSubSession::publish() reconnects before the
  // outcome is published, so the result is never lost.
  ESPhttpUpdate.closeConnectionsOnUpdate(false);
  ESPhttpUpdate.setAuthorization(request.user, request.password);
  ESPhttpUpdate.onProgress([&progress](int done, int total) {
    progress.onProgress(nonNegative(done), nonNegative(total));
  });
  const t_httpUpdate_return result = ESPhttpUpdate.update(client, request.url, request.currentVersion);
  ESPhttpUpdate.onProgress(nullptr);  // the callback refers to this call's sink
  return result;
}

String lastError() { return ESPhttpUpdate.getLastErrorString(); }

#else  // ESP32

t_httpUpdate_return runCore(TinyOtaNetClient& client, const tinyota::UpdateRequest& request,
                            tinyota::ProgressSink& progress) {
  httpUpdate.rebootOnUpdate(false);
  httpUpdate.onProgress([&progress](int done, int total) {
    progress.onProgress(nonNegative(done), nonNegative(total));
  });
#if ESP_ARDUINO_VERSION_MAJOR >= 3
  // HTTPUpdate::setAuthorization() exists since the 3.x line.
  httpUpdate.setAuthorization(request.user, request.password);
  const t_httpUpdate_return result = httpUpdate.update(client, request.url, request.currentVersion);
#else
  // 2.0.x has no HTTPUpdate::setAuthorization(); its request callback runs after the core
  // added its own headers, and HTTPClient::setAuthorization() adds "Authorization: Basic".
  const char* user = request.user;
  const char* password = request.password;
  const t_httpUpdate_return result = httpUpdate.update(
      client, request.url, request.currentVersion,
      [user, password](HTTPClient* http) { http->setAuthorization(user, password); });
#endif
  httpUpdate.onProgress(nullptr);  // the callback refers to this call's sink
  return result;
}

String lastError() { return httpUpdate.getLastErrorString(); }

#endif

}  // namespace

void EspHttpUpdater::run(const tinyota::UpdateRequest& request, tinyota::ProgressSink& progress,
                         tinyota::UpdateResult& result) {
  t_httpUpdate_return outcome;
  if (tinyota::startsWith(request.url, "https://")) {
    TinyOtaNetClient* client = httpsClient_ ? httpsClient_() : nullptr;
    if (client == nullptr) {
      result.outcome = tinyota::kUpdateFailed;
      tinyota::copyText(result.error, sizeof result.error,
                        "https:// needs TINYOTA_HTTPS_CA_CERT or TINYOTA_HTTPS_INSECURE in config.h");
      return;
    }
    outcome = runCore(*client, request, progress);
  } else {
    WiFiClient client;
    outcome = runCore(client, request, progress);
  }

  switch (outcome) {
    case HTTP_UPDATE_OK:
      result.outcome = tinyota::kUpdateOk;
      result.error[0] = '\0';
      return;
    case HTTP_UPDATE_NO_UPDATES:  // the server answered 304
      result.outcome = tinyota::kUpdateNoUpdate;
      result.error[0] = '\0';
      return;
    case HTTP_UPDATE_FAILED:
      break;
  }
  result.outcome = tinyota::kUpdateFailed;
  const String error = lastError();
  tinyota::copyText(result.error, sizeof result.error, error.length() ? error.c_str() : "HTTP update failed");
}

#endif  // ESP8266 || ESP32
