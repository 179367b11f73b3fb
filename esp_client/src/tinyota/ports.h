// The tiny interfaces between the portable core and a platform (STYLE.md point 9).
//
// The sketch implements them with PubSubClient, the core's HTTP update routine, EEPROM or
// NVS, millis() and the core's BearSSL / mbedTLS; the host build with libmosquitto, libcurl and files. Destructors are
// protected and non-virtual: the core never owns or deletes a port.
#ifndef TINYOTA_PORTS_H
#define TINYOTA_PORTS_H

#include <stddef.h>
#include <stdint.h>

#include "limits.h"

namespace tinyota {

class MqttPort {
 public:
  // QoS 0 (all PubSubClient can send). False when the message could not be handed over.
  virtual bool publish(const char* topic, const char* payload, bool retained) = 0;

 protected:
  ~MqttPort() {}
};

class ProgressSink {
 public:
  virtual void onProgress(uint32_t done, uint32_t total) = 0;

 protected:
  ~ProgressSink() {}
};

struct UpdateRequest {
  const char* url;
  const char* user;             // HTTP Basic credentials of this device
  const char* password;
  const char* currentVersion;   // sent as x-ESP8266-version / x-ESP32-version
};

enum UpdateOutcome {
  kUpdateOk,        // image written and verified; the device must reboot into it
  kUpdateNoUpdate,  // HTTP 304: the server says the device already runs that version
  kUpdateFailed
};

struct UpdateResult {
  UpdateOutcome outcome;
  char error[kMaxErrorLen + 1];  // the core's getLastErrorString() on failure
};

class Updater {
 public:
  // Downloads, verifies (x-MD5) and writes the image. Must not reboot: the core publishes
  // the outcome first. Reports progress through `progress` while the body streams.
  virtual void run(const UpdateRequest& request, ProgressSink& progress, UpdateResult& result) = 0;

 protected:
  ~Updater() {}
};

// Remembers the id of the last announcement the device started on, across reboots
// (ESP8266: EEPROM, ESP32: NVS, host: a file). One short string, rarely written.
class AttemptStore {
 public:
  virtual bool load(char* id, size_t cap) = 0;  // empty string when nothing is stored
  virtual bool save(const char* id) = 0;

 protected:
  ~AttemptStore() {}
};

class Clock {
 public:
  virtual uint32_t millis() = 0;  // wraps after ~49 days; the core only subtracts

 protected:
  ~Clock() {}
};

// Checks an announcement's signature (signature.h): an ECDSA P-256 signature, raw r || s,
// over SHA-256(message), by the one public key the device was built with. Implemented with
// the crypto the platform ships (src/crypto/p256_verifier.h); the core only asks.
enum SignatureCheck {
  kSignatureValid,
  kSignatureInvalid,
  kSignatureUnchecked  // could not be checked now (e.g. too little free heap); try again later
};

class SignatureVerifier {
 public:
  virtual SignatureCheck verify(const uint8_t* message, size_t len, const uint8_t* signature) = 0;

 protected:
  ~SignatureVerifier() {}
};

class EventLog {
 public:
  virtual void event(const char* line) = 0;  // one line per event, no trailing newline

 protected:
  ~EventLog() {}
};

}  // namespace tinyota

#endif  // TINYOTA_PORTS_H
