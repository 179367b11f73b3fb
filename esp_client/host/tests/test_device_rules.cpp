// The host device's pure parts: MD5, the emulated core rules, the command line.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

#include "../device/http_rules.h"
#include "../device/md5.h"
#include "../device/options.h"
#include "tiny_test.h"

using namespace hostdev;

namespace {

std::string md5Of(const std::string& text) {
  Md5 md5;
  md5.update(text.data(), text.size());
  char hex[33];
  md5.finishHex(hex);
  return hex;
}

DeviceFacts facts(Platform platform) {
  DeviceFacts f;
  memset(&f, 0, sizeof f);
  f.platform = platform;
  deriveIdentity("kitchen", f);
  f.freeSpace = 1000;
  f.sketchSize = 300;
  strcpy(f.sketchMd5, "d41d8cd98f00b204e9800998ecf8427e");
  f.chipSize = 4u * 1024 * 1024;
  return f;
}

ResponseHead head(int code, long long length = -1, const char* md5 = 0) {
  ResponseHead h;
  memset(&h, 0, sizeof h);
  h.code = code;
  h.hasLength = length >= 0;
  h.length = length;
  h.hasMd5 = md5 != 0;
  if (md5) strcpy(h.md5, md5);
  return h;
}

bool parse(std::initializer_list<const char*> args, Options& out, std::string& error) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>("tinyota-device"));
  for (const char* a : args) argv.push_back(const_cast<char*>(a));
  return parseOptions(static_cast<int>(argv.size()), argv.data(), out, error);
}

}  // namespace

// Keeps the std::string alive while it is compared.
#define CHECK_MD5(input, expected)                                                     \
  do {                                                                                 \
    const std::string tt_digest = md5Of(input);                                        \
    CHECK_STR(tt_digest.c_str(), expected);                                            \
  } while (0)

TEST(md5_rfc1321_test_suite) {
  // RFC 1321, appendix A.5.
  CHECK_MD5("", "d41d8cd98f00b204e9800998ecf8427e");
  CHECK_MD5("a", "0cc175b9c0f1b6a831c399e269772661");
  CHECK_MD5("abc", "900150983cd24fb0d6963f7d28e17f72");
  CHECK_MD5("message digest", "f96b697d7cb7938d525a2f31aaf161d0");
  CHECK_MD5("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b");
  CHECK_MD5("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "d174ab98d277d9f5a5611c2c9f419d9f");
  CHECK_MD5("1234567890123456789012345678901234567890123456789012345678901234567890123456789"
                  "0",
            "57edf4a22be3c955ac49da2e2107b67a");
}

TEST(md5_is_independent_of_chunking) {
  std::string data;
  for (int i = 0; i < 5000; ++i) data.push_back(static_cast<char>(i * 31 + 7));
  const std::string whole = md5Of(data);
  for (size_t chunk = 1; chunk < 130; chunk += 7) {
    Md5 md5;
    for (size_t at = 0; at < data.size(); at += chunk) {
      md5.update(data.data() + at, std::min(chunk, data.size() - at));
    }
    char hex[33];
    md5.finishHex(hex);
    CHECK_STR(hex, whole.c_str());
  }
  // Lengths around the 56-byte padding boundary.
  CHECK_MD5(std::string(55, 'x'), "04364420e25c512fd958a70738aa8f72");
  CHECK_MD5(std::string(56, 'x'), "668a72d5ba17f08e62dabcafad6db14b");
  CHECK_MD5(std::string(64, 'x'), "c1bb4f81d892b2d57947682aeb252456");
}

TEST(request_headers_match_the_esp8266_core) {
  const DeviceFacts f = facts(kEsp8266);
  Header h[16];
  const size_t n = requestHeaders(f, "1.3.0", h, 16);
  CHECK_EQ(n, 10);
  CHECK_STR(userAgent(kEsp8266), "ESP8266-http-Update");
  CHECK_STR(h[1].name, "x-ESP8266-STA-MAC");
  CHECK_STR(h[3].name, "x-ESP8266-free-space");
  CHECK_STR(h[3].value, "1000");
  CHECK_STR(h[4].name, "x-ESP8266-sketch-size");
  CHECK_STR(h[6].name, "x-ESP8266-chip-size");
  CHECK_STR(h[6].value, "4194304");
  CHECK_STR(h[8].name, "x-ESP8266-mode");
  CHECK_STR(h[8].value, "sketch");
  CHECK_STR(h[9].name, "x-ESP8266-version");
  CHECK_STR(h[9].value, "1.3.0");
  CHECK_EQ(strlen(h[1].value), 17);
  CHECK_EQ(requestHeaders(f, "", h, 16), 9);  // the cores omit an empty version
}

TEST(request_headers_match_the_esp32_core) {
  const DeviceFacts f = facts(kEsp32);
  Header h[16];
  const size_t n = requestHeaders(f, "2.0.0", h, 16);
  CHECK_STR(userAgent(kEsp32), "ESP32-http-Update");
  CHECK_STR(h[0].name, "Cache-Control");
  CHECK_STR(h[1].name, "x-ESP32-STA-MAC");
  CHECK_STR(h[n - 1].name, "x-ESP32-version");
  CHECK_STR(h[n - 1].value, "2.0.0");
  for (size_t i = 1; i < n; ++i) CHECK(strncmp(h[i].name, "x-ESP32-", 8) == 0);
}

TEST(identity_is_stable_and_locally_administered) {
  DeviceFacts a = facts(kEsp8266);
  DeviceFacts b = facts(kEsp8266);
  CHECK_STR(a.staMac, b.staMac);
  CHECK(strncmp(a.staMac, "02:", 3) == 0);
  DeviceFacts c = facts(kEsp8266);
  deriveIdentity("other", c);
  CHECK(strcmp(a.staMac, c.staMac) != 0);
}

TEST(response_rules_follow_handle_update) {
  char error[128];
  const DeviceFacts f8 = facts(kEsp8266);
  const DeviceFacts f32 = facts(kEsp32);
  CHECK(judgeResponse(f8, head(200, 500), error, sizeof error) == kVerdictFlash);
  CHECK(judgeResponse(f8, head(200, 1000), error, sizeof error) == kVerdictFlash);
  CHECK(judgeResponse(f8, head(200, 1001), error, sizeof error) == kVerdictFail);
  CHECK_STR(error, "Not Enough space");
  CHECK(judgeResponse(f8, head(200), error, sizeof error) == kVerdictFail);
  CHECK_STR(error, "Server Did Not Report Size");
  CHECK(judgeResponse(f8, head(200, 0), error, sizeof error) == kVerdictFail);
  CHECK_STR(error, "Server Did Not Report Size");
  CHECK(judgeResponse(f8, head(304), error, sizeof error) == kVerdictNoUpdate);
  CHECK(judgeResponse(f8, head(404), error, sizeof error) == kVerdictFail);
  CHECK_STR(error, "File Not Found (404)");
  CHECK(judgeResponse(f8, head(403), error, sizeof error) == kVerdictFail);
  CHECK_STR(error, "Forbidden (403)");
  CHECK(judgeResponse(f8, head(401), error, sizeof error) == kVerdictFail);
  CHECK_STR(error, "Unauthorized (401)");
  CHECK(judgeResponse(f32, head(401), error, sizeof error) == kVerdictFail);
  CHECK_STR(error, "Wrong HTTP Code");
  CHECK(judgeResponse(f8, head(302, 0), error, sizeof error) == kVerdictFail);
  CHECK_STR(error, "Wrong HTTP Code");
  CHECK(judgeResponse(f8, head(500, 10), error, sizeof error) == kVerdictFail);
  CHECK_STR(error, "Wrong HTTP Code");
  DeviceFacts noPartition = facts(kEsp32);
  noPartition.freeSpace = 0;
  CHECK(judgeResponse(noPartition, head(200, 10), error, sizeof error) == kVerdictFail);
  CHECK_STR(error, "Partition Could Not be Found");
}

TEST(magic_byte_and_flash_size_rules) {
  char error[128];
  const DeviceFacts f8 = facts(kEsp8266);
  const DeviceFacts f32 = facts(kEsp32);
  const uint8_t good4m[4] = {0xE9, 0x03, 0x02, 0x40};   // 4 MB flash code
  const uint8_t big16m[4] = {0xE9, 0x03, 0x02, 0x90};   // 16 MB on a 4 MB chip
  const uint8_t gzip[4] = {0x1F, 0x8B, 0x08, 0x00};
  CHECK(judgeMagic(f8, good4m, 4, error, sizeof error));
  CHECK(!judgeMagic(f8, big16m, 4, error, sizeof error));
  CHECK_STR(error, "New Binary Does Not Fit Flash Size");
  CHECK(judgeMagic(f32, big16m, 1, error, sizeof error));  // ESP32 checks only the magic
  CHECK(!judgeMagic(f8, gzip, 4, error, sizeof error));
  CHECK_STR(error, "Verify Bin Header Failed");
  CHECK(!judgeMagic(f8, good4m, 3, error, sizeof error));  // body shorter than the peek
  CHECK_STR(error, "Verify Bin Header Failed");
  CHECK(!judgeMagic(f32, gzip, 1, error, sizeof error));
  CHECK_EQ(magicBytesNeeded(kEsp8266), 4);
  CHECK_EQ(magicBytesNeeded(kEsp32), 1);
}

TEST(md5_header_and_error_texts) {
  char error[256];
  CHECK(judgeMd5Header(head(200, 1), error, sizeof error));
  CHECK(judgeMd5Header(head(200, 1, "0123456789abcdef0123456789abcdef"), error, sizeof error));
  CHECK(!judgeMd5Header(head(200, 1, "0123"), error, sizeof error));
  CHECK_STR(error, "Wrong MD5");
  md5MismatchError(kEsp8266, "aa", "bb", error, sizeof error);
  CHECK_STR(error, "Update error: ERROR[7]: MD5 Failed: expected:aa, calculated:bb");
  md5MismatchError(kEsp32, "aa", "bb", error, sizeof error);
  CHECK_STR(error, "Update error: MD5 Check Failed");
  streamTimeoutError(kEsp8266, error, sizeof error);
  CHECK_STR(error, "Update error: ERROR[6]: Stream Read Timeout");
  clientError(kEsp8266, kConnectFailed, error, sizeof error);
  CHECK_STR(error, "HTTP error: connection failed");
  clientError(kEsp32, kConnectFailed, error, sizeof error);
  CHECK_STR(error, "HTTP error: connection refused");
  clientError(kEsp32, kReadTimeout, error, sizeof error);
  CHECK_STR(error, "HTTP error: read Timeout");
}

TEST(options_full_command_line) {
  Options o;
  std::string error;
  CHECK(parse({"--id", "kitchen", "--password", "pw", "--broker", "mqtt://127.0.0.1:1884", "--server",
               "http://127.0.0.1:8000", "--public-key", "04" "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
               "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "--state-dir",
               "/tmp/x", "--version", "1.3.0", "--platform=esp32", "--free-space", "2000000", "--prefix",
               "home/ota", "--progress-interval", "0", "--mqtt-user", "mq"},
              o, error));
  CHECK_STR(error.c_str(), "");
  CHECK_STR(o.id.c_str(), "kitchen");
  CHECK_STR(o.brokerHost.c_str(), "127.0.0.1");
  CHECK_EQ(o.brokerPort, 1884);
  CHECK(o.platform == kEsp32);
  CHECK_EQ(o.freeSpace, 2000000);
  CHECK_STR(o.prefix.c_str(), "home/ota");
  CHECK_EQ(o.progressIntervalMs, 0);
  CHECK_STR(o.mqttUser.c_str(), "mq");
  CHECK_STR(o.serverUrl.c_str(), "http://127.0.0.1:8000");
  CHECK_EQ(o.publicKey.size(), 130);
}

TEST(options_defaults) {
  Options o;
  std::string error;
  CHECK(parse({"--id=k", "--password=p", "--broker=mqtt://broker", "--server=http://ota", "--state-dir=s",
               "--version=1.0.0"}, o, error));
  CHECK_STR(o.publicKey.c_str(), "");
  CHECK_EQ(o.brokerPort, 1883);
  CHECK_STR(o.mqttUser.c_str(), "k");
  CHECK(o.platform == kEsp8266);
  CHECK_EQ(o.freeSpace, 1044480);
  CHECK_STR(o.prefix.c_str(), "tinyota");
  CHECK_EQ(o.progressIntervalMs, 1000);
  CHECK(parse({"--help"}, o, error) && o.help);
}

TEST(options_password_from_a_file_or_the_environment) {
  Options o;
  std::string error;
  char path[] = "/tmp/tinyota-pw-XXXXXX";
  const int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK(write(fd, "s3cret\r\nsecond line\n", 21) == 21);
  close(fd);
  const std::string file = std::string("--password-file=") + path;
  CHECK(parse({"--id=k", file.c_str(), "--broker=mqtt://b", "--server=http://ota", "--state-dir=s", "--version=1.0.0"},
              o, error));
  CHECK_STR(o.password.c_str(), "s3cret");
  CHECK(!o.passwordInArgv);
  CHECK(!parse({"--id=k", file.c_str(), "--password=p", "--broker=mqtt://b", "--server=http://ota", "--state-dir=s",
                "--version=1.0.0"}, o, error));
  CHECK_STR(error.c_str(), "give --password or --password-file, not both");
  unlink(path);
  CHECK(!parse({"--id=k", file.c_str(), "--broker=mqtt://b", "--server=http://ota", "--state-dir=s", "--version=1.0.0"},
               o, error));
  CHECK(error.find("No such file") != std::string::npos);

  std::vector<char*> argv;
  const char* args[] = {"tinyota-device", "--id=k", "--broker=mqtt://b", "--server=http://ota", "--state-dir=s",
                        "--version=1.0.0"};
  for (const char* a : args) argv.push_back(const_cast<char*>(a));
  CHECK(parseOptions(static_cast<int>(argv.size()), argv.data(), o, error, "from-env"));
  CHECK_STR(o.password.c_str(), "from-env");
  CHECK(!parseOptions(static_cast<int>(argv.size()), argv.data(), o, error, 0));
  CHECK(error.find("TINYOTA_DEVICE_PASSWORD") != std::string::npos);
  CHECK(parse({"--id=k", "--password=p", "--broker=mqtt://b", "--server=http://ota", "--state-dir=s",
               "--version=1.0.0"}, o, error) && o.passwordInArgv);
}

TEST(options_refuse_what_cannot_work) {
  const char* base[] = {"--id", "k", "--password", "p", "--state-dir", "s", "--version", "1.0.0", "--server", "http://h"};
  struct Case {
    const char* flag;
    const char* value;
  } cases[] = {{"--broker", "tcp://h:1"},        {"--broker", "mqtt://"},       {"--broker", "mqtt://h:0"},
               {"--broker", "mqtt://h:99999"},   {"--broker", "mqtt://u:p@h"},  {"--platform", "avr"},
               {"--free-space", "-1"},           {"--progress-interval", "x"}, {"--prefix", "a/#"},
               {"--bogus", "1"},                  {"--server", "ftp://h"},       {"--server", "http://u:p@h"},
               {"--server", "http://h/?q"},       {"--public-key", "04ab"},      {"--public-key", "not hex"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>("tinyota-device"));
    const size_t n = strcmp(cases[i].flag, "--server") == 0 ? 8 : 10;  // the case's --server comes last
    for (size_t k = 0; k < n; ++k) argv.push_back(const_cast<char*>(base[k]));
    if (strcmp(cases[i].flag, "--broker") != 0) argv.push_back(const_cast<char*>("--broker")),
        argv.push_back(const_cast<char*>("mqtt://h"));
    argv.push_back(const_cast<char*>(cases[i].flag));
    argv.push_back(const_cast<char*>(cases[i].value));
    Options o;
    std::string error;
    if (parseOptions(static_cast<int>(argv.size()), argv.data(), o, error)) {
      tt::reportStrings(__FILE__, __LINE__, "accepted", cases[i].flag, cases[i].value);
    }
    CHECK(!error.empty());
  }
  Options o;
  std::string error;
  CHECK(!parse({"--id", "server", "--password", "p", "--broker", "mqtt://h", "--server", "http://h", "--state-dir",
               "s", "--version", "1"},
               o, error));
  CHECK(!parse({"--id", "k", "--password", "p", "--broker", "mqtt://h", "--state-dir", "s", "--version", "1"}, o,
               error));  // no --server: a device must know where its password may go
  CHECK(error.find("--server") != std::string::npos);
  CHECK(!parse({"--id", "k"}, o, error));
  CHECK(!parse({"--id"}, o, error));
}
