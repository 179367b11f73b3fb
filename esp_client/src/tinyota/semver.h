// Semantic Versioning 2.0.0 (https://semver.org): validation and precedence.
//
// The device acts when the announced version *differs* from the running one (string
// inequality, so a rollback is an ordinary announcement and "1.4.0+b2" replaces
// "1.4.0+b1"). Precedence is only used to tell upgrade, rollback and rebuild apart in
// the log, and to refuse announcements whose version is not a semantic version.
#ifndef TINYOTA_SEMVER_H
#define TINYOTA_SEMVER_H

namespace tinyota {

// MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], no leading zeros in numeric identifiers, no "v".
// Numbers of any length are accepted and compared exactly.
bool isSemver(const char* version);

// Sets order to -1, 0 or 1 by SemVer precedence (section 11; build metadata ignored).
// Returns false, leaving order alone, when either string is not a valid version.
bool compareSemver(const char* a, const char* b, int& order);

}  // namespace tinyota

#endif  // TINYOTA_SEMVER_H
