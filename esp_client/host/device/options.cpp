#include "options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/tinyota/server_url.h"
#include "../../src/tinyota/signature.h"
#include "../../src/tinyota/topics.h"

namespace hostdev {

namespace {

bool parseUnsigned(const std::string& text, unsigned long max, unsigned long& out) {
  if (text.empty() || text[0] == '-' || text[0] == '+') return false;
  errno = 0;
  char* end = 0;
  const unsigned long long v = strtoull(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v > max) return false;
  out = static_cast<unsigned long>(v);
  return true;
}

// mqtt://host[:port]
bool parseBroker(const std::string& url, std::string& host, int& port) {
  const std::string scheme = "mqtt://";
  if (url.compare(0, scheme.size(), scheme) != 0) return false;
  std::string rest = url.substr(scheme.size());
  if (!rest.empty() && rest[rest.size() - 1] == '/') rest.erase(rest.size() - 1);
  port = 1883;
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']') == std::string::npos) {
    unsigned long p;
    if (!parseUnsigned(rest.substr(colon + 1), 65535, p) || p == 0) return false;
    port = static_cast<int>(p);
    rest.erase(colon);
  }
  host = rest;
  return !host.empty() && host.find('/') == std::string::npos && host.find('@') == std::string::npos;
}

// The first line of FILE, without its line end: a password kept out of the command line.
bool readPasswordFile(const std::string& path, std::string& out, std::string& error) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == 0) {
    error = "--password-file " + path + ": " + strerror(errno);
    return false;
  }
  char line[512];
  const bool got = fgets(line, sizeof line, f) != 0;
  fclose(f);
  out = got ? line : "";
  while (!out.empty() && (out[out.size() - 1] == '\n' || out[out.size() - 1] == '\r')) out.erase(out.size() - 1);
  if (out.empty()) {
    error = "--password-file " + path + " holds no password on its first line";
    return false;
  }
  return true;
}

}  // namespace

const char* usageText() {
  return "usage: tinyota-device --id ID --password-file FILE --broker mqtt://HOST[:PORT]\n"
         "                      --server URL --state-dir DIR --version VERSION [options]\n"
         "\n"
         "Runs the TinyOTA device core against a real broker and server, sending the\n"
         "requests an ESP8266/ESP32 sends. Flashed images go to DIR/firmware.bin; a\n"
         "successful update re-executes this program into the version read from the\n"
         "image's TINYOTA_FW_VERSION= marker.\n"
         "\n"
         "  --id ID                 device id ([A-Za-z0-9_-]+), HTTP Basic user, MQTT client id\n"
         "  --password-file FILE    HTTP Basic and MQTT password: the first line of FILE\n"
         "                          (or set TINYOTA_DEVICE_PASSWORD)\n"
         "  --password PASSWORD     the same on the command line, where `ps` shows it to everyone\n"
         "  --mqtt-user USER        MQTT user name (default: the id)\n"
         "  --broker URL            mqtt://host[:port] (port 1883 by default)\n"
         "  --server URL            the server's base URL (its server.public_url): announcements\n"
         "                          whose url is not under it are refused, nothing is requested\n"
         "  --public-key HEX        the server's announcement key (130 hex digits, `tinyota keygen`):\n"
         "                          only announcements signed with it are acted on\n"
         "  --state-dir DIR         created if missing\n"
         "  --version VERSION       running version while DIR holds no flashed image\n"
         "  --platform NAME         esp8266 (default) or esp32: headers and error texts\n"
         "  --free-space BYTES      reported free sketch space (default 1044480 / 1310720)\n"
         "  --prefix PREFIX         topic prefix (default tinyota)\n"
         "  --progress-interval MS  minimum time between progress reports (default 1000)\n"
         "  --help\n";
}

bool parseOptions(int argc, char** argv, Options& out, std::string& error, const char* envPassword) {
  out = Options();
  out.passwordInArgv = false;
  std::string passwordFile;
  out.brokerPort = 1883;
  out.platform = kEsp8266;
  out.freeSpace = 0;
  out.freeSpaceSet = false;
  out.prefix = "tinyota";
  out.progressIntervalMs = 1000;
  out.help = false;
  std::string broker;

  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      out.help = true;
      return true;
    }
    std::string value;
    const size_t eq = arg.find('=');
    if (arg.compare(0, 2, "--") == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.erase(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      error = arg + " needs a value";
      return false;
    }
    unsigned long number = 0;
    if (arg == "--id") {
      out.id = value;
    } else if (arg == "--password") {
      out.password = value;
      out.passwordInArgv = true;
    } else if (arg == "--password-file") {
      passwordFile = value;
    } else if (arg == "--mqtt-user") {
      out.mqttUser = value;
    } else if (arg == "--broker") {
      broker = value;
    } else if (arg == "--server") {
      out.serverUrl = value;
    } else if (arg == "--public-key") {
      out.publicKey = value;
    } else if (arg == "--state-dir") {
      out.stateDir = value;
    } else if (arg == "--version") {
      out.version = value;
    } else if (arg == "--platform") {
      if (!parsePlatform(value.c_str(), out.platform)) {
        error = "--platform must be esp8266 or esp32";
        return false;
      }
    } else if (arg == "--free-space") {
      if (!parseUnsigned(value, 0xFFFFFFFFul, number)) {
        error = "--free-space must be a byte count";
        return false;
      }
      out.freeSpace = static_cast<uint32_t>(number);
      out.freeSpaceSet = true;
    } else if (arg == "--prefix") {
      out.prefix = value;
    } else if (arg == "--progress-interval") {
      if (!parseUnsigned(value, 3600000ul, number)) {
        error = "--progress-interval must be milliseconds (0 to 3600000)";
        return false;
      }
      out.progressIntervalMs = static_cast<uint32_t>(number);
    } else {
      error = "unknown option " + arg + " (see --help)";
      return false;
    }
  }

  if (!passwordFile.empty()) {
    if (out.passwordInArgv) {
      error = "give --password or --password-file, not both";
      return false;
    }
    if (!readPasswordFile(passwordFile, out.password, error)) return false;
  } else if (out.password.empty() && envPassword != 0) {
    out.password = envPassword;
  }
  if (out.id.empty() || out.password.empty() || broker.empty() || out.serverUrl.empty() || out.stateDir.empty() ||
      out.version.empty()) {
    error = "--id, a password (--password-file or TINYOTA_DEVICE_PASSWORD), --broker, --server, --state-dir and "
            "--version are required (see --help)";
    return false;
  }
  if (!tinyota::isUsableServerBase(out.serverUrl.c_str())) {
    error = "--server must look like http(s)://host[:port][/path], without credentials, query or fragment";
    return false;
  }
  uint8_t key[tinyota::kPublicKeyLen];
  if (!out.publicKey.empty() && !tinyota::parsePublicKeyHex(out.publicKey.c_str(), key)) {
    error = "--public-key must be 130 hex digits starting with 04 (what `tinyota keygen` prints)";
    return false;
  }
  if (!tinyota::isValidDeviceId(out.id.c_str())) {
    error = "--id must be 1-64 of [A-Za-z0-9_-] and not \"server\"";
    return false;
  }
  if (!tinyota::isValidTopicPrefix(out.prefix.c_str())) {
    error = "--prefix must be non-empty, without wildcards or empty levels";
    return false;
  }
  if (!parseBroker(broker, out.brokerHost, out.brokerPort)) {
    error = "--broker must look like mqtt://host[:port]";
    return false;
  }
  if (out.mqttUser.empty()) out.mqttUser = out.id;
  // Defaults match a 4 MB ESP8266 with a 1 MB sketch area and ESP32 default.csv (0x140000).
  if (!out.freeSpaceSet) out.freeSpace = out.platform == kEsp32 ? 1310720u : 1044480u;
  return true;
}

}  // namespace hostdev
