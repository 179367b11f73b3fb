#include "logger.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

namespace hostdev {

Logger::Logger() : file_(0) {}

Logger::~Logger() {
  if (file_) fclose(file_);
}

void Logger::begin(const std::string& deviceId, const std::string& logPath) {
  deviceId_ = deviceId;
  // O_CLOEXEC: the "reboot" execs this program again, which reopens the log itself.
  const int fd = open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd >= 0) {
    file_ = fdopen(fd, "a");
    if (!file_) close(fd);
  }
}

void Logger::event(const char* line) {
  struct timeval now;
  gettimeofday(&now, 0);
  struct tm utc;
  gmtime_r(&now.tv_sec, &utc);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  const int ms = static_cast<int>(now.tv_usec / 1000);
  const char* id = deviceId_.empty() ? "?" : deviceId_.c_str();
  fprintf(stderr, "%s.%03dZ tinyota-device[%s] %s\n", stamp, ms, id, line);
  fflush(stderr);
  if (file_) {
    fprintf(file_, "%s.%03dZ tinyota-device[%s] %s\n", stamp, ms, id, line);
    fflush(file_);
  }
}

void Logger::printf(const char* format, ...) {
  char line[1024];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof line, format, args);
  va_end(args);
  event(line);
}

}  // namespace hostdev
