// Command line of tinyota-device.
#ifndef HOSTDEV_OPTIONS_H
#define HOSTDEV_OPTIONS_H

#include <stdint.h>

#include <string>

#include "http_rules.h"

namespace hostdev {

struct Options {
  std::string id;
  std::string password;      // HTTP Basic and MQTT
  bool passwordInArgv;       // --password: readable by every user of the machine in `ps`
  std::string mqttUser;      // defaults to id
  std::string brokerHost;
  int brokerPort;
  std::string stateDir;      // flashed image, attempted-id "NVS" file, log
  std::string version;       // the version before anything was flashed
  Platform platform;
  uint32_t freeSpace;
  bool freeSpaceSet;
  std::string prefix;
  std::string serverUrl;     // downloads only from URLs under it (the server's public_url)
  std::string publicKey;     // 130 hex digits; empty: signatures are not checked
  uint32_t progressIntervalMs;
  bool help;
};

const char* usageText();

// False with a one-line reason in `error` when the command line cannot work. `envPassword` is
// $TINYOTA_DEVICE_PASSWORD (or null): the password given without showing it in `ps`.
bool parseOptions(int argc, char** argv, Options& out, std::string& error, const char* envPassword = 0);

}  // namespace hostdev

#endif  // HOSTDEV_OPTIONS_H
