#include "state_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/tinyota/text.h"

namespace hostdev {

bool makeDirectories(const std::string& path) {
  for (size_t at = 1; at <= path.size(); ++at) {
    if (at != path.size() && path[at] != '/') continue;
    const std::string prefix = path.substr(0, at);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) return false;
  }
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool readWholeFile(const std::string& path, std::vector<uint8_t>& out) {
  out.clear();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  uint8_t chunk[65536];
  for (;;) {
    const ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return n == 0;
    }
    out.insert(out.end(), chunk, chunk + n);
  }
}

bool writeFileAtomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  const bool ok = fsync(fd) == 0;
  close(fd);
  return ok && rename(tmp.c_str(), path.c_str()) == 0;
}

bool FileAttemptStore::load(char* id, size_t cap) {
  id[0] = '\0';
  std::vector<uint8_t> bytes;
  if (!readWholeFile(path_, bytes)) return errno == ENOENT;  // nothing stored yet
  std::string text(bytes.begin(), bytes.end());
  while (!text.empty() && (text[text.size() - 1] == '\n' || text[text.size() - 1] == '\r')) {
    text.erase(text.size() - 1);
  }
  return tinyota::copyText(id, cap, text.c_str());
}

bool FileAttemptStore::save(const char* id) { return writeFileAtomically(path_, std::string(id) + "\n"); }

}  // namespace hostdev
