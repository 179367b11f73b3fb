// The host device's stand-in for ESPhttpUpdate / HTTPUpdate on libcurl.
//
// It sends what the cores send (HTTP/1.0, their User-Agent and x-ESP8266-* / x-ESP32-*
// headers, Basic Auth) and is as strict as they are: Content-Length required, the first
// byte must be 0xE9, x-MD5 verified, 304 means "no update", 401/403/404 and other codes
// fail with the cores' own texts. The image is "flashed" into <state-dir>/firmware.bin
// only after every check passed, like Update.end() only then activates a new image.
#ifndef HOSTDEV_CURL_UPDATER_H
#define HOSTDEV_CURL_UPDATER_H

#include <signal.h>

#include "../../src/tinyota/ports.h"
#include "http_rules.h"
#include "logger.h"
#include "state_dir.h"

namespace hostdev {

class CurlUpdater : public tinyota::Updater {
 public:
  CurlUpdater(const DeviceFacts& facts, const StateDir& dir, Logger& log, volatile sig_atomic_t* stop);
  void run(const tinyota::UpdateRequest& request, tinyota::ProgressSink& progress, tinyota::UpdateResult& result);

 private:
  DeviceFacts facts_;
  StateDir dir_;
  Logger& log_;
  volatile sig_atomic_t* stop_;
};

}  // namespace hostdev

#endif  // HOSTDEV_CURL_UPDATER_H
