#include "announcement.h"

#include <string.h>

#include "json_reader.h"
#include "semver.h"
#include "text.h"

namespace tinyota {

namespace {

enum Field { kId, kVersion, kUrl, kSize, kMd5, kSha256, kImage, kSig, kFieldCount };
const char* const kFieldNames[kFieldCount] = {"id", "version", "url", "size", "md5", "sha256", "image", "sig"};

int fieldIndex(JsonSpan key) {
  for (int i = 0; i < kFieldCount; ++i) {
    if (jsonKeyEquals(key, kFieldNames[i])) return i;
  }
  return -1;
}

bool isVisibleAscii(const char* s) {
  for (; *s != '\0'; ++s) {
    if (*s < 0x21 || *s > 0x7E) return false;
  }
  return true;
}

bool isHexOfLength(const char* s, size_t n) {
  if (strlen(s) != n) return false;
  for (size_t i = 0; i < n; ++i) {
    const char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  }
  return true;
}

AnnouncementStatus checkUrl(const char* url) {
  // Lower-case schemes only: the cores' HTTPClient::begin() compares the scheme literally.
  size_t schemeLen;
  if (startsWith(url, "http://")) {
    schemeLen = 7;
  } else if (startsWith(url, "https://")) {
    schemeLen = 8;
  } else {
    return kAnnouncementBadUrlScheme;
  }
  if (!isVisibleAscii(url)) return kAnnouncementBadUrl;  // spaces, controls, raw UTF-8
  const char* authority = url + schemeLen;
  const size_t authorityLen = strcspn(authority, "/?#");
  if (authorityLen == 0 || authority[0] == ':') return kAnnouncementBadUrl;
  // A retained message is readable by every subscriber: devices authenticate with their
  // own credentials, never with a user:password@ inside the announced URL.
  if (memchr(authority, '@', authorityLen) != 0) return kAnnouncementUrlHasCredentials;
  return kAnnouncementOk;
}

bool isOptional(const JsonMember* member, bool seen) { return !seen || member->type == kJsonNull; }

// Decodes an optional hex digest; an absent or null value leaves out empty.
bool readDigest(const JsonMember& member, bool seen, char* out, size_t cap, size_t hexLen) {
  if (isOptional(&member, seen)) return true;
  if (!jsonDecodeString(member.value, out, cap) || !isHexOfLength(out, hexLen)) {
    out[0] = '\0';
    return false;
  }
  return true;
}

void keepFirst(AnnouncementStatus& status, AnnouncementStatus candidate) {
  if (status == kAnnouncementOk) status = candidate;
}

}  // namespace

AnnouncementStatus parseAnnouncement(const char* payload, size_t len, Announcement& out) {
  memset(&out, 0, sizeof out);
  if (len == 0) return kAnnouncementEmpty;
  if (len > kMaxPayloadLen) return kAnnouncementTooLarge;

  JsonObjectReader reader(payload, len);
  JsonMember fields[kFieldCount] = {};
  bool seen[kFieldCount] = {false, false, false, false, false, false, false, false};
  JsonMember member;
  while (reader.next(member)) {
    const int f = fieldIndex(member.key);
    if (f < 0) continue;  // unknown keys are ignored: the server may add some later
    if (seen[f]) return kAnnouncementDuplicateKey;  // which one would the server mean?
    seen[f] = true;
    fields[f] = member;
  }
  if (!reader.complete()) return kAnnouncementNotJsonObject;
  if (!seen[kId]) return kAnnouncementMissingId;
  if (!seen[kVersion]) return kAnnouncementMissingVersion;
  if (!seen[kUrl]) return kAnnouncementMissingUrl;

  const bool typesOk =
      fields[kId].type == kJsonString && fields[kVersion].type == kJsonString &&
      fields[kUrl].type == kJsonString &&
      (isOptional(&fields[kSize], seen[kSize]) || fields[kSize].type == kJsonNumber) &&
      (isOptional(&fields[kMd5], seen[kMd5]) || fields[kMd5].type == kJsonString) &&
      (isOptional(&fields[kSha256], seen[kSha256]) || fields[kSha256].type == kJsonString) &&
      (isOptional(&fields[kImage], seen[kImage]) || fields[kImage].type == kJsonString);
  if (!typesOk) return kAnnouncementWrongType;

  if (!jsonDecodeString(fields[kId].value, out.id, sizeof out.id) || out.id[0] == '\0' ||
      !isVisibleAscii(out.id)) {
    out.id[0] = '\0';
    return kAnnouncementBadId;
  }

  // From here on the id is usable: value problems are refusals. Report the first one,
  // but keep decoding so the log can show the version.
  AnnouncementStatus status = kAnnouncementOk;
  if (!jsonDecodeString(fields[kVersion].value, out.version, sizeof out.version)) {
    out.version[0] = '\0';
    keepFirst(status, kAnnouncementBadVersion);
  } else if (!isSemver(out.version)) {
    keepFirst(status, kAnnouncementBadVersion);
  }

  if (!jsonDecodeString(fields[kUrl].value, out.url, sizeof out.url)) {
    out.url[0] = '\0';
    keepFirst(status, kAnnouncementBadUrl);
  } else {
    const AnnouncementStatus urlStatus = checkUrl(out.url);
    if (urlStatus != kAnnouncementOk) keepFirst(status, urlStatus);
  }

  if (!isOptional(&fields[kSize], seen[kSize])) {
    out.hasSize = jsonToUint32(fields[kSize].value, out.size);
    if (!out.hasSize) keepFirst(status, kAnnouncementBadSize);
  }
  if (!readDigest(fields[kMd5], seen[kMd5], out.md5, sizeof out.md5, kMd5HexLen)) {
    keepFirst(status, kAnnouncementBadMd5);
  }
  if (!readDigest(fields[kSha256], seen[kSha256], out.sha256, sizeof out.sha256, kSha256HexLen)) {
    keepFirst(status, kAnnouncementBadSha256);
  }
  if (!isOptional(&fields[kImage], seen[kImage]) &&
      (!jsonDecodeString(fields[kImage].value, out.image, sizeof out.image) || out.image[0] == '\0' ||
       !isVisibleAscii(out.image))) {
    out.image[0] = '\0';
    keepFirst(status, kAnnouncementBadImage);
  }
  // Any JSON type is accepted for "sig" here: a device without a public key must not start
  // refusing announcements because of a field it does not use.
  if (!isOptional(&fields[kSig], seen[kSig]) &&
      (fields[kSig].type != kJsonString || !jsonDecodeString(fields[kSig].value, out.sig, sizeof out.sig))) {
    out.sig[0] = '\0';
    out.sigUnusable = true;
  }
  return status;
}

bool isRefusal(AnnouncementStatus status) { return status >= kAnnouncementBadVersion; }

const char* describeAnnouncementStatus(AnnouncementStatus status) {
  switch (status) {
    case kAnnouncementOk: return "ok";
    case kAnnouncementEmpty: return "empty payload (announcement cleared)";
    case kAnnouncementTooLarge: return "payload too large";
    case kAnnouncementNotJsonObject: return "not a single JSON object";
    case kAnnouncementDuplicateKey: return "duplicate key";
    case kAnnouncementMissingId: return "missing \"id\"";
    case kAnnouncementMissingVersion: return "missing \"version\"";
    case kAnnouncementMissingUrl: return "missing \"url\"";
    case kAnnouncementWrongType: return "a key has the wrong JSON type";
    case kAnnouncementBadId: return "\"id\" must be 1-64 visible ASCII characters";
    case kAnnouncementBadVersion: return "refused: \"version\" is not a semantic version (max 32 chars)";
    case kAnnouncementBadUrlScheme: return "refused: \"url\" must start with http:// or https://";
    case kAnnouncementBadUrl: return "refused: \"url\" is not a usable URL (max 384 visible ASCII chars)";
    case kAnnouncementUrlHasCredentials: return "refused: \"url\" carries credentials; devices use their own";
    case kAnnouncementBadMd5: return "refused: \"md5\" must be 32 hex digits";
    case kAnnouncementBadSha256: return "refused: \"sha256\" must be 64 hex digits";
    case kAnnouncementBadSize: return "refused: \"size\" must be an integer from 0 to 4294967295";
    case kAnnouncementBadImage: return "refused: \"image\" must be 1-64 visible ASCII characters";
    case kAnnouncementNotOurServer:
      return "refused: \"url\" is not under the server this device was built for; nothing was requested";
    case kAnnouncementMissingSignature: return "refused: no \"sig\"; this device only acts on signed announcements";
    case kAnnouncementBadSignature: return "refused: \"sig\" does not verify with this device's public key";
    case kAnnouncementSignatureUnchecked:
      return "refused for now: too little free heap to check \"sig\"; announce again to retry";
  }
  return "unknown";
}

}  // namespace tinyota
