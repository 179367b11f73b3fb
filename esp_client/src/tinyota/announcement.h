// The retained update announcement on <prefix>/<device>/update:
//   {"id":"…","version":"1.4.0","url":"http://…/fw/kitchen/1.4.0.bin","size":482144,
//    "md5":"<32 hex>","sha256":"<64 hex>","image":"kitchen","sig":"<88 base64>"}
//
// Two kinds of bad announcements are told apart:
//  - malformed: not one JSON object, a required key (id, version, url) missing, a wrong
//    JSON type, a duplicate known key, or an unusable id. The device cannot answer
//    (it cannot even name the announcement) and ignores it.
//  - refused: well-formed with a usable id, but a value the device will not act on
//    (bad url, non-semver version, bad digest, size or image). The device answers with a
//    "failed" status naming the reason, so the operator sees why nothing happens.
// The "sig" member is only decoded here; whether it is needed and verifies is the Agent's
// decision (a device without a public key ignores it).
#ifndef TINYOTA_ANNOUNCEMENT_H
#define TINYOTA_ANNOUNCEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "limits.h"

namespace tinyota {

struct Announcement {
  char id[kMaxAnnouncementIdLen + 1];
  char version[kMaxVersionLen + 1];  // empty when it did not fit
  char url[kMaxUrlLen + 1];          // empty when it did not fit
  char md5[kMd5HexLen + 1];          // empty when absent
  char sha256[kSha256HexLen + 1];    // empty when absent
  char image[kMaxImageLen + 1];      // empty when absent
  char sig[kSignatureBase64Len + 1];  // the raw text; empty when absent or unusable
  bool sigUnusable;                  // present but not a string that fits: refused if verified
  uint32_t size;
  bool hasSize;
};

enum AnnouncementStatus {
  kAnnouncementOk,
  // malformed: ignored
  kAnnouncementEmpty,
  kAnnouncementTooLarge,
  kAnnouncementNotJsonObject,
  kAnnouncementDuplicateKey,
  kAnnouncementMissingId,
  kAnnouncementMissingVersion,
  kAnnouncementMissingUrl,
  kAnnouncementWrongType,
  kAnnouncementBadId,
  // refused: answered with a failed status
  kAnnouncementBadVersion,
  kAnnouncementBadUrlScheme,
  kAnnouncementBadUrl,
  kAnnouncementUrlHasCredentials,
  kAnnouncementBadMd5,
  kAnnouncementBadSha256,
  kAnnouncementBadSize,
  kAnnouncementBadImage,
  // refused by the Agent's trust checks (agent.h), never by the parser
  kAnnouncementNotOurServer,
  kAnnouncementMissingSignature,
  kAnnouncementBadSignature,
  kAnnouncementSignatureUnchecked
};

// Parses len bytes (no NUL needed). `out` is always left in a defined state; its id is
// usable whenever isRefusal(status) or status == kAnnouncementOk.
AnnouncementStatus parseAnnouncement(const char* payload, size_t len, Announcement& out);

bool isRefusal(AnnouncementStatus status);

// One short English sentence, suitable for logs and the status "error" field.
const char* describeAnnouncementStatus(AnnouncementStatus status);

}  // namespace tinyota

#endif  // TINYOTA_ANNOUNCEMENT_H
