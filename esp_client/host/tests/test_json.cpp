// The flat-object JSON reader: grammar, escapes, numbers, and what it refuses.
#include "../../src/tinyota/json_reader.h"
#include "tiny_test.h"

using namespace tinyota;

namespace {

// Walks the whole text; returns the member count, or -1 when it is not one valid object.
int countMembers(const char* text) {
  JsonObjectReader reader(text, strlen(text));
  JsonMember m;
  int n = 0;
  while (reader.next(m)) ++n;
  return reader.complete() ? n : -1;
}

JsonSpan span(const char* s) {
  JsonSpan out = {s, strlen(s)};
  return out;
}

}  // namespace

TEST(json_accepts_valid_objects) {
  CHECK_EQ(countMembers("{}"), 0);
  CHECK_EQ(countMembers(" \t\r\n{ }\n"), 0);
  CHECK_EQ(countMembers("{\"a\":1}"), 1);
  CHECK_EQ(countMembers("{\"a\":\"x\",\"b\":true,\"c\":false,\"d\":null,\"e\":-1.5e+3}"), 5);
  CHECK_EQ(countMembers("{\"a\":{\"b\":[1,2,{\"c\":[]}]},\"d\":[]}"), 2);
  CHECK_EQ(countMembers("{\"\":0}"), 1);
  CHECK_EQ(countMembers("{\"a\":0,\"a\":1}"), 2);  // duplicates are the caller's business
}

TEST(json_refuses_invalid_text) {
  const char* bad[] = {
      "",          "   ",           "[]",             "\"a\"",          "{",
      "}",         "{\"a\"}",       "{\"a\":}",       "{\"a\":1,}",     "{,\"a\":1}",
      "{\"a\":1 \"b\":2}", "{a:1}", "{'a':1}",       "{\"a\":01}",     "{\"a\":1.}",
      "{\"a\":.5}", "{\"a\":1e}",   "{\"a\":+1}",     "{\"a\":-}",      "{\"a\":tru}",
      "{\"a\":nul}", "{\"a\":True}", "{\"a\":\"x}",   "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
      "{\"a\":\"\\u12g4\"}", "{\"a\":[1,]}", "{\"a\":[1 2]}", "{\"a\":{\"b\"}}", "{} {}",
      "{}x",       "{\"a\":1}}",    "{\"a\":NaN}",    "{\"a\":Infinity}", "\xef\xbb\xbf{}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    if (countMembers(bad[i]) != -1) {
      tt::reportStrings(__FILE__, __LINE__, "accepted invalid JSON", bad[i], "(refused)");
    }
  }
}

TEST(json_refuses_raw_control_characters_in_strings) {
  const char text[] = {'{', '"', 'a', '"', ':', '"', 'x', '\n', '"', '}'};
  JsonObjectReader reader(text, sizeof text);
  JsonMember m;
  CHECK(!reader.next(m));
  CHECK(!reader.complete());
}

TEST(json_refuses_embedded_nul_outside_strings) {
  const char text[] = {'{', '}', '\0'};
  JsonObjectReader reader(text, sizeof text);
  JsonMember m;
  CHECK(!reader.next(m));
  CHECK(!reader.complete());
}

TEST(json_limits_nesting_depth) {
  CHECK_EQ(countMembers("{\"a\":[[[[[[[1]]]]]]]}"), 1);    // 8 levels incl. the object
  CHECK_EQ(countMembers("{\"a\":[[[[[[[[1]]]]]]]]}"), -1);  // 9 levels
}

TEST(json_reports_member_types_and_raw_values) {
  const char* text = "{\"s\":\"a\\\"b\",\"n\":42,\"o\":{\"x\":1},\"t\":true}";
  JsonObjectReader reader(text, strlen(text));
  JsonMember m;
  CHECK(reader.next(m));
  CHECK(m.type == kJsonString);
  CHECK_EQ(m.value.len, 4u);  // a\"b, raw
  CHECK(reader.next(m));
  CHECK(m.type == kJsonNumber);
  CHECK(m.value.len == 2 && memcmp(m.value.data, "42", 2) == 0);
  CHECK(reader.next(m));
  CHECK(m.type == kJsonObject);
  CHECK(m.value.len == 7 && memcmp(m.value.data, "{\"x\":1}", 7) == 0);
  CHECK(reader.next(m));
  CHECK(m.type == kJsonTrue);
  CHECK(!reader.next(m));
  CHECK(reader.complete());
}

TEST(json_decodes_escapes_to_utf8) {
  char out[64];
  CHECK(jsonDecodeString(span("plain"), out, sizeof out));
  CHECK_STR(out, "plain");
  CHECK(jsonDecodeString(span("q\\\"b\\\\s\\/n\\nr\\rt\\tb\\bf\\f"), out, sizeof out));
  CHECK_STR(out, "q\"b\\s/n\nr\rt\tb\bf\f");
  CHECK(jsonDecodeString(span("\\u0041\\u00e9\\u20AC"), out, sizeof out));
  CHECK_STR(out, "A\xc3\xa9\xe2\x82\xac");
  CHECK(jsonDecodeString(span("\\ud83d\\ude00"), out, sizeof out));  // U+1F600 via surrogates
  CHECK_STR(out, "\xf0\x9f\x98\x80");
  CHECK(jsonDecodeString(span(""), out, sizeof out));
  CHECK_STR(out, "");
}

TEST(json_decode_refuses_what_c_strings_cannot_hold) {
  char out[8];
  CHECK(!jsonDecodeString(span("\\u0000"), out, sizeof out));   // would cut the string
  CHECK(!jsonDecodeString(span("\\ud83d"), out, sizeof out));   // lone high surrogate
  CHECK(!jsonDecodeString(span("\\ude00"), out, sizeof out));   // lone low surrogate
  CHECK(!jsonDecodeString(span("\\ud83d\\u0041"), out, sizeof out));
  CHECK(!jsonDecodeString(span("\\q"), out, sizeof out));
  CHECK(!jsonDecodeString(span("1234567"), out, 7));            // needs 8 with the NUL
  CHECK(jsonDecodeString(span("1234567"), out, 8));
  CHECK(!jsonDecodeString(span("123456\\u00e9"), out, 8));      // two-byte char does not fit
}

TEST(json_key_comparison_decodes_escapes) {
  CHECK(jsonKeyEquals(span("id"), "id"));
  CHECK(jsonKeyEquals(span("\\u0069d"), "id"));
  CHECK(!jsonKeyEquals(span("ID"), "id"));
  CHECK(!jsonKeyEquals(span("idx"), "id"));
  CHECK(!jsonKeyEquals(span("i"), "id"));
}

TEST(json_uint32_conversion) {
  uint32_t v = 7;
  CHECK(jsonToUint32(span("0"), v) && v == 0);
  CHECK(jsonToUint32(span("482144"), v) && v == 482144u);
  CHECK(jsonToUint32(span("4294967295"), v) && v == 4294967295u);
  CHECK(!jsonToUint32(span("4294967296"), v));
  CHECK(!jsonToUint32(span("99999999999999999999"), v));
  CHECK(!jsonToUint32(span("-1"), v));
  CHECK(!jsonToUint32(span("1.0"), v));
  CHECK(!jsonToUint32(span("1e3"), v));
  CHECK(!jsonToUint32(span(""), v));
}
