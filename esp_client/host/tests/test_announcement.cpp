// Announcement parsing: the accepted shape, malformed (ignored) versus refused (answered).
#include "../../src/tinyota/announcement.h"
#include "tiny_test.h"

using namespace tinyota;

namespace {

AnnouncementStatus parse(const char* text, Announcement& out) {
  return parseAnnouncement(text, strlen(text), out);
}

const char* kFull =
    "{\"id\":\"a1\",\"version\":\"1.4.0\",\"url\":\"http://ota.lan:8000/fw/kitchen/1.4.0.bin\","
    "\"size\":482144,\"md5\":\"0123456789abcdef0123456789ABCDEF\","
    "\"sha256\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}";

}  // namespace

TEST(announcement_full_payload) {
  Announcement a;
  CHECK(parse(kFull, a) == kAnnouncementOk);
  CHECK_STR(a.id, "a1");
  CHECK_STR(a.version, "1.4.0");
  CHECK_STR(a.url, "http://ota.lan:8000/fw/kitchen/1.4.0.bin");
  CHECK(a.hasSize);
  CHECK_EQ(a.size, 482144);
  CHECK_STR(a.md5, "0123456789abcdef0123456789ABCDEF");
  CHECK_EQ(strlen(a.sha256), 64);
}

TEST(announcement_minimal_payload_and_extra_keys) {
  Announcement a;
  CHECK(parse("{\"url\":\"https://h/x.bin\",\"version\":\"2.0.0-rc.1\",\"id\":\"z\"}", a) ==
        kAnnouncementOk);
  CHECK(!a.hasSize);
  CHECK_STR(a.md5, "");
  CHECK_STR(a.sha256, "");
  CHECK(parse("{\"id\":\"x\",\"version\":\"1.0.0\",\"url\":\"http://h/f\",\"notes\":{\"a\":[1,2]},"
              "\"size\":null,\"md5\":null,\"sha256\":null,\"extra\":\"\\u00e9\"}",
              a) == kAnnouncementOk);
  CHECK(!a.hasSize);
}

TEST(announcement_escaped_values_are_decoded) {
  Announcement a;
  CHECK(parse("{\"\\u0069d\":\"a\\/b\",\"version\":\"1.0.0\",\"url\":\"http:\\/\\/h\\/f.bin\"}", a) ==
        kAnnouncementOk);
  CHECK_STR(a.id, "a/b");
  CHECK_STR(a.url, "http://h/f.bin");
}

TEST(announcement_malformed_is_classified_and_not_a_refusal) {
  struct Case {
    const char* text;
    AnnouncementStatus expected;
  } cases[] = {
      {"not json", kAnnouncementNotJsonObject},
      {"[1,2]", kAnnouncementNotJsonObject},
      {"{\"id\":\"a\",\"version\":\"1.0.0\",\"url\":\"http://h/f\"", kAnnouncementNotJsonObject},
      {"{\"version\":\"1.0.0\",\"url\":\"http://h/f\"}", kAnnouncementMissingId},
      {"{\"id\":\"a\",\"url\":\"http://h/f\"}", kAnnouncementMissingVersion},
      {"{\"id\":\"a\",\"version\":\"1.0.0\"}", kAnnouncementMissingUrl},
      {"{\"id\":1,\"version\":\"1.0.0\",\"url\":\"http://h/f\"}", kAnnouncementWrongType},
      {"{\"id\":\"a\",\"version\":1.0,\"url\":\"http://h/f\"}", kAnnouncementWrongType},
      {"{\"id\":\"a\",\"version\":\"1.0.0\",\"url\":null}", kAnnouncementWrongType},
      {"{\"id\":\"a\",\"version\":\"1.0.0\",\"url\":\"http://h/f\",\"size\":\"12\"}", kAnnouncementWrongType},
      {"{\"id\":\"a\",\"version\":\"1.0.0\",\"url\":\"http://h/f\",\"md5\":[]}", kAnnouncementWrongType},
      {"{\"id\":\"a\",\"id\":\"b\",\"version\":\"1.0.0\",\"url\":\"http://h/f\"}", kAnnouncementDuplicateKey},
      {"{\"id\":\"\",\"version\":\"1.0.0\",\"url\":\"http://h/f\"}", kAnnouncementBadId},
      {"{\"id\":\"a b\",\"version\":\"1.0.0\",\"url\":\"http://h/f\"}", kAnnouncementBadId},
      {"{\"id\":\"\\u00e9\",\"version\":\"1.0.0\",\"url\":\"http://h/f\"}", kAnnouncementBadId},
      {"{\"id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\","
       "\"version\":\"1.0.0\",\"url\":\"http://h/f\"}", kAnnouncementBadId},  // 65 chars
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    Announcement a;
    const AnnouncementStatus got = parse(cases[i].text, a);
    if (got != cases[i].expected) {
      tt::reportStrings(__FILE__, __LINE__, cases[i].text, describeAnnouncementStatus(got),
                        describeAnnouncementStatus(cases[i].expected));
    }
    CHECK(!isRefusal(got));
  }
}

TEST(announcement_refusals_keep_the_id) {
  struct Case {
    const char* text;
    AnnouncementStatus expected;
  } cases[] = {
      {"{\"id\":\"r\",\"version\":\"v1.0\",\"url\":\"http://h/f\"}", kAnnouncementBadVersion},
      {"{\"id\":\"r\",\"version\":\"123456789012345678901234567890.0.0\",\"url\":\"http://h/f\"}",
       kAnnouncementBadVersion},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"ftp://h/f\"}", kAnnouncementBadUrlScheme},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"HTTP://h/f\"}", kAnnouncementBadUrlScheme},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"/fw/x.bin\"}", kAnnouncementBadUrlScheme},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://\"}", kAnnouncementBadUrl},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http:///f\"}", kAnnouncementBadUrl},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://:80/f\"}", kAnnouncementBadUrl},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://h/a b\"}", kAnnouncementBadUrl},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://u:p@h/f\"}", kAnnouncementUrlHasCredentials},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://h/f\",\"md5\":\"abc\"}", kAnnouncementBadMd5},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://h/f\",\"md5\":\"0123456789abcdef0123456789abcdeg\"}",
       kAnnouncementBadMd5},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://h/f\",\"sha256\":\"00\"}", kAnnouncementBadSha256},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://h/f\",\"size\":-1}", kAnnouncementBadSize},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://h/f\",\"size\":1.5}", kAnnouncementBadSize},
      {"{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://h/f\",\"size\":4294967296}", kAnnouncementBadSize},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    Announcement a;
    const AnnouncementStatus got = parse(cases[i].text, a);
    if (got != cases[i].expected) {
      tt::reportStrings(__FILE__, __LINE__, cases[i].text, describeAnnouncementStatus(got),
                        describeAnnouncementStatus(cases[i].expected));
    }
    CHECK(isRefusal(got));
    CHECK_STR(a.id, "r");
  }
}

TEST(announcement_the_http_at_sign_in_a_path_is_fine) {
  Announcement a;
  CHECK(parse("{\"id\":\"r\",\"version\":\"1.0.0\",\"url\":\"http://h/fw/a@b.bin\"}", a) == kAnnouncementOk);
}

TEST(announcement_size_limits) {
  Announcement a;
  CHECK(parseAnnouncement("", 0, a) == kAnnouncementEmpty);
  char big[kMaxPayloadLen + 2];
  memset(big, ' ', sizeof big);
  const char* body = "{\"id\":\"a\",\"version\":\"1.0.0\",\"url\":\"http://h/f\"}";
  memcpy(big, body, strlen(body));  // valid JSON followed by whitespace
  CHECK(parseAnnouncement(big, kMaxPayloadLen, a) == kAnnouncementOk);
  CHECK(parseAnnouncement(big, kMaxPayloadLen + 1, a) == kAnnouncementTooLarge);
}

TEST(announcement_parsing_never_allocates) {
  Announcement a;
  const unsigned long before = tt::allocationCount();
  for (int i = 0; i < 100; ++i) parse(kFull, a);
  CHECK_EQ(tt::allocationCount() - before, 0);
}
