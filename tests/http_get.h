// A plain HTTP/1.0 GET to a loopback port, for tests of gputierd's metrics
// endpoint.
#ifndef GPUTIER_TESTS_HTTP_GET_H_
#define GPUTIER_TESTS_HTTP_GET_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace gputier::testing {

struct HttpReply {
  int code = 0;  // 0: no connection
  std::string body;
};

// A plain HTTP/1.0 GET to 127.0.0.1:port.
inline HttpReply HttpGet(int port, const std::string& target) {
  HttpReply reply;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return reply;
  }
  const std::string request = absl::StrCat("GET ", target, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  (void)!write(fd, request.data(), request.size());
  std::string raw;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) raw.append(buf, n);
  close(fd);
  const size_t split = raw.find("\r\n\r\n");
  if (split == std::string::npos || raw.size() < 12) return reply;
  reply.code = atoi(raw.c_str() + 9);  // "HTTP/1.1 200 OK"
  reply.body = raw.substr(split + 4);
  return reply;
}

}  // namespace gputier::testing

#endif  // GPUTIER_TESTS_HTTP_GET_H_
