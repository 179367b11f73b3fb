// Small pieces: bounded text, JSON escaping, the status payload, topics, the version marker.
#include "../../src/tinyota/firmware_marker.h"
#include "../../src/tinyota/json_reader.h"
#include "../../src/tinyota/limits.h"
#include "../../src/tinyota/status.h"
#include "../../src/tinyota/text.h"
#include "../../src/tinyota/topics.h"
#include "tiny_test.h"

using namespace tinyota;

namespace {

// Reads one string member of a status payload back with the core's own JSON reader.
bool memberString(const char* json, const char* key, char* out, size_t cap) {
  JsonObjectReader reader(json, strlen(json));
  JsonMember m;
  bool found = false;
  while (reader.next(m)) {
    if (jsonKeyEquals(m.key, key) && m.type == kJsonString) found = jsonDecodeString(m.value, out, cap);
  }
  return reader.complete() && found;
}

}  // namespace

TEST(text_copy_is_bounded_and_terminated) {
  char buf[4];
  CHECK(copyText(buf, sizeof buf, "abc"));
  CHECK_STR(buf, "abc");
  CHECK(!copyText(buf, sizeof buf, "abcd"));
  CHECK_STR(buf, "abc");
  CHECK(copyText(buf, sizeof buf, 0));
  CHECK_STR(buf, "");
}

TEST(text_builder_is_all_or_nothing_per_append) {
  char buf[8];
  TextBuilder b(buf, sizeof buf);
  b.add("abc").addUint(1234);
  CHECK(b.ok());
  CHECK_STR(buf, "abc1234");
  b.addChar('x');
  CHECK(!b.ok());
  CHECK_STR(buf, "abc1234");
  char num[24];
  TextBuilder n(num, sizeof num);
  n.addUint(0).addChar(' ').addUint(4294967295ul);
  CHECK_STR(num, "0 4294967295");
}

TEST(json_string_escaping) {
  char buf[128];
  TextBuilder b(buf, sizeof buf);
  b.addJsonString("a\"b\\c\nd\re\tf\x01g\x7fh/");
  CHECK_STR(buf, "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007fh/\"");
  TextBuilder u(buf, sizeof buf);
  u.addJsonString("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");  // valid UTF-8 is kept
  CHECK_STR(buf, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
  TextBuilder bad(buf, sizeof buf);
  bad.addJsonString("\xff\xc3(\xed\xa0\x80\xc0\xaf");  // invalid, surrogate, overlong
  CHECK_STR(buf, "\"\\ufffd\\ufffd(\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
}

TEST(status_payload_shape) {
  char json[kMaxStatusLen + 1];
  StatusFields f = {kStateDownloading, "1.3.0", 42, "a1", "", "esp8266", 1044480u};
  CHECK(buildStatusJson(f, json, sizeof json) > 0);
  CHECK_STR(json,
            "{\"state\":\"downloading\",\"version\":\"1.3.0\",\"progress\":42,\"id\":\"a1\","
            "\"platform\":\"esp8266\",\"free_space\":1044480}");
  StatusFields idle = {kStateIdle, "1.4.0", -1, "", 0, "esp32", 0};
  CHECK(buildStatusJson(idle, json, sizeof json) > 0);
  CHECK_STR(json, "{\"state\":\"idle\",\"version\":\"1.4.0\",\"platform\":\"esp32\",\"free_space\":0}");
  StatusFields failed = {kStateFailed, "1.3.0", -1, "a2", "Wrong HTTP Code", "esp8266", 5};
  CHECK(buildStatusJson(failed, json, sizeof json) > 0);
  CHECK_STR(json,
            "{\"state\":\"failed\",\"version\":\"1.3.0\",\"id\":\"a2\",\"error\":\"Wrong HTTP Code\","
            "\"platform\":\"esp8266\",\"free_space\":5}");
}

TEST(status_error_text_round_trips_through_json) {
  const char* error = "Update error: ERROR[7]: MD5 Failed: expected:\"x\", calculated:\\y\n\t\x02";
  char json[kMaxStatusLen + 1];
  StatusFields f = {kStateFailed, "1.0.0", -1, "id\"1", error, "esp8266", 1};
  CHECK(buildStatusJson(f, json, sizeof json) > 0);
  char back[256];
  CHECK(memberString(json, "error", back, sizeof back));
  CHECK_STR(back, error);
  CHECK(memberString(json, "id", back, sizeof back));
  CHECK_STR(back, "id\"1");
  CHECK(memberString(json, "state", back, sizeof back));
  CHECK_STR(back, "failed");
}

TEST(status_shortens_an_error_that_does_not_fit) {
  char error[200];
  memset(error, '\x01', sizeof error - 1);  // every byte escapes to six
  error[sizeof error - 1] = '\0';
  char json[256];
  StatusFields f = {kStateFailed, "1.0.0", -1, "a", error, "esp32", 1};
  const size_t len = buildStatusJson(f, json, sizeof json);
  CHECK(len > 0 && len < sizeof json);
  char back[256];
  CHECK(memberString(json, "state", back, sizeof back));
  CHECK(memberString(json, "error", back, sizeof back));
  CHECK(strlen(back) > 0 && strlen(back) < 40);
  char tiny[10];
  CHECK_EQ(buildStatusJson(f, tiny, sizeof tiny), 0);
  CHECK_STR(tiny, "");
}

TEST(topics_and_device_ids) {
  CHECK(isValidDeviceId("kitchen-1"));
  CHECK(isValidDeviceId("A_b-9"));
  CHECK(!isValidDeviceId(""));
  CHECK(!isValidDeviceId("server"));
  CHECK(!isValidDeviceId("a/b"));
  CHECK(!isValidDeviceId("a+b"));
  CHECK(!isValidDeviceId("a b"));
  CHECK(!isValidDeviceId("k\xc3\xbc"));
  char longId[66];
  memset(longId, 'a', 65);
  longId[65] = '\0';
  CHECK(!isValidDeviceId(longId));
  longId[64] = '\0';
  CHECK(isValidDeviceId(longId));

  CHECK(isValidTopicPrefix("tinyota"));
  CHECK(isValidTopicPrefix("home/ota"));
  CHECK(!isValidTopicPrefix(""));
  CHECK(!isValidTopicPrefix("/ota"));
  CHECK(!isValidTopicPrefix("ota/"));
  CHECK(!isValidTopicPrefix("a//b"));
  CHECK(!isValidTopicPrefix("ota/#"));
  CHECK(!isValidTopicPrefix("ota/+"));

  char topic[kMaxTopicLen + 1];
  CHECK(buildTopic(topic, sizeof topic, "tinyota", "kitchen", "update"));
  CHECK_STR(topic, "tinyota/kitchen/update");
  CHECK(!buildTopic(topic, 10, "tinyota", "kitchen", "update"));
}

TEST(firmware_marker_is_found_in_an_image) {
  unsigned char image[256];
  memset(image, 0xFF, sizeof image);
  image[0] = 0xE9;
  const char stray[] = "TINYOTA_FW_VERSION=";  // a prefix without a version: skipped
  memcpy(image + 10, stray, sizeof stray);
  const char marker[] = "TINYOTA_FW_VERSION=1.4.0-rc.1+b7";
  memcpy(image + 100, marker, sizeof marker);  // sizeof includes the NUL
  char version[kMaxVersionLen + 1];
  CHECK(findFirmwareVersion(image, sizeof image, version, sizeof version));
  CHECK_STR(version, "1.4.0-rc.1+b7");
}

TEST(firmware_marker_needs_its_nul) {
  const char text[] = "xxTINYOTA_FW_VERSION=1.0.0";  // ends without NUL in the scanned range
  char version[kMaxVersionLen + 1];
  CHECK(!findFirmwareVersion(reinterpret_cast<const uint8_t*>(text), sizeof text - 1, version,
                             sizeof version));
  CHECK(findFirmwareVersion(reinterpret_cast<const uint8_t*>(text), sizeof text, version, sizeof version));
  CHECK_STR(version, "1.0.0");
  CHECK(!findFirmwareVersion(0, 0, version, sizeof version));
}

TINYOTA_DEFINE_FIRMWARE_VERSION("9.8.7");

TEST(firmware_marker_macro_defines_the_running_version) {
  CHECK_STR(firmwareVersion(), "9.8.7");
  char version[kMaxVersionLen + 1];
  CHECK(findFirmwareVersion(reinterpret_cast<const uint8_t*>(tinyota_firmware_marker),
                            sizeof(TINYOTA_FW_MARKER_PREFIX "9.8.7"), version, sizeof version));
  CHECK_STR(version, "9.8.7");
}
