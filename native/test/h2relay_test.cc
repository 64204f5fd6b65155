// Unit test of mx::h2::Relay on real sockets: an nghttp2 client and nghttp2 servers talk to the relay through
// AF_UNIX socketpairs, pumped by one poll loop. Exit status 0 = every case passed; failures are printed.
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../src/http2/relay.h"

using mx::h2::Headers;

static int failures = 0;
#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                   \
      std::fprintf(stderr, "\n");                                          \
      failures++;                                                          \
    }                                                                      \
  } while (0)

namespace {

nghttp2_nv Nv(const std::string& k, const std::string& v) {
  return nghttp2_nv{(uint8_t*)k.data(), (uint8_t*)v.data(), k.size(), v.size(), NGHTTP2_NV_FLAG_NONE};
}

std::string Get(const Headers& h, const std::string& k) {
  for (const auto& [n, v] : h)
    if (n == k) return v;
  return "";
}

bool Has(const Headers& h, const std::string& k) {
  for (const auto& [n, v] : h)
    if (n == k) return true;
  return false;
}

/** One endpoint of a socketpair with its pending output. */
struct End {
  int fd = -1;
  std::string out;
  bool eof = false;
  ~End() {
    if (fd >= 0) close(fd);
  }
  /** Writes what it can; returns true if any byte moved. */
  bool Flush() {
    bool moved = false;
    while (!out.empty()) {
      ssize_t n = send(fd, out.data(), out.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      out.erase(0, static_cast<size_t>(n));
      moved = true;
    }
    return moved;
  }
  /** Reads what is there into `in`; returns true if any byte moved (or EOF was seen). */
  bool Read(std::string& in) {
    char buf[16384];
    bool moved = false;
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        in.append(buf, static_cast<size_t>(n));
        moved = true;
        continue;
      }
      if (n == 0 && !eof) {
        eof = true;
        moved = true;
      }
      break;
    }
    return moved;
  }
};

void Pair(End& a, End& b) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    std::perror("socketpair");
    std::exit(2);
  }
  a.fd = sv[0];
  b.fd = sv[1];
}

struct Msg {
  Headers head, trailers;
  std::string body;
  bool done = false;
  uint32_t rst = 0;
  bool closed = false;
};

/** A test HTTP/2 peer (client or server) over nghttp2 with auto window updates unless told otherwise. */
struct Peer {
  nghttp2_session* s = nullptr;
  End end;
  bool server = false;
  std::map<int32_t, Msg> msgs;
  std::map<int32_t, std::string> to_send;  // response/request bodies to stream out
  std::map<int32_t, Headers> send_trailers;
  std::map<int32_t, bool> hold;  // streams whose body does not end yet (DATA deferred when empty)
  std::function<void(Peer&, int32_t)> on_request;  // server: request complete
  std::function<void(Peer&, int32_t)> on_headers;  // server: request headers complete
  int goaways = 0;

  static int OnHeader(nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl, const uint8_t* v, size_t vl, uint8_t, void* ud) {
    auto* p = static_cast<Peer*>(ud);
    Msg& m = p->msgs[f->hd.stream_id];
    bool trailer = f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_HEADERS && !m.head.empty();
    (trailer ? m.trailers : m.head).emplace_back(std::string((const char*)n, nl), std::string((const char*)v, vl));
    return 0;
  }
  static int OnFrame(nghttp2_session*, const nghttp2_frame* f, void* ud) {
    auto* p = static_cast<Peer*>(ud);
    if (f->hd.type == NGHTTP2_GOAWAY) p->goaways++;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    Msg& m = p->msgs[f->hd.stream_id];
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && p->on_headers) p->on_headers(*p, f->hd.stream_id);
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
      m.done = true;
      if (p->server && p->on_request) p->on_request(*p, f->hd.stream_id);
    }
    return 0;
  }
  static int OnData(nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t n, void* ud) {
    static_cast<Peer*>(ud)->msgs[id].body.append((const char*)d, n);
    return 0;
  }
  static int OnClose(nghttp2_session*, int32_t id, uint32_t code, void* ud) {
    Msg& m = static_cast<Peer*>(ud)->msgs[id];
    m.closed = true;
    m.rst = code;
    return 0;
  }
  static ssize_t Read(nghttp2_session*, int32_t id, uint8_t* buf, size_t len, uint32_t* flags, nghttp2_data_source*, void* ud) {
    auto* p = static_cast<Peer*>(ud);
    std::string& b = p->to_send[id];
    size_t n = std::min(len, b.size());
    std::memcpy(buf, b.data(), n);
    b.erase(0, n);
    if (n == 0 && p->hold[id]) return NGHTTP2_ERR_DEFERRED;
    if (b.empty() && !p->hold[id]) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      auto t = p->send_trailers.find(id);
      if (t != p->send_trailers.end()) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> nv;
        for (auto& [k, v] : t->second) nv.push_back(Nv(k, v));
        nghttp2_submit_trailer(p->s, id, nv.data(), nv.size());
      }
    }
    return static_cast<ssize_t>(n);
  }

  Peer(bool is_server, uint32_t max_streams = 100, bool manual_window = false) : server(is_server) {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnData);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnClose);
    nghttp2_option* opt;
    nghttp2_option_new(&opt);
    if (manual_window) nghttp2_option_set_no_auto_window_update(opt, 1);
    if (server) nghttp2_session_server_new2(&s, cb, this, opt);
    else nghttp2_session_client_new2(&s, cb, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_streams}};
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, 1);
  }
  ~Peer() { nghttp2_session_del(s); }

  int32_t Request(Headers h, const std::string* body, Headers trailers = {}) {
    std::vector<nghttp2_nv> nv;
    for (auto& [k, v] : h) nv.push_back(Nv(k, v));
    nghttp2_data_provider prd{};
    prd.read_callback = Read;
    int32_t id = nghttp2_submit_request(s, nullptr, nv.data(), nv.size(), body ? &prd : nullptr, nullptr);
    if (body) to_send[id] = *body;
    if (!trailers.empty()) send_trailers[id] = trailers;
    return id;
  }
  void Respond(int32_t id, Headers h, const std::string* body, Headers trailers = {}) {
    std::vector<nghttp2_nv> nv;
    for (auto& [k, v] : h) nv.push_back(Nv(k, v));
    nghttp2_data_provider prd{};
    prd.read_callback = Read;
    if (body) to_send[id] = *body;
    if (!trailers.empty()) send_trailers[id] = trailers;
    nghttp2_submit_response(s, id, nv.data(), nv.size(), body ? &prd : nullptr);
  }
  bool Pump() {
    bool moved = false;
    const uint8_t* p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(s, &p)) > 0) end.out.append((const char*)p, (size_t)n);
    moved |= end.Flush();
    std::string in;
    moved |= end.Read(in);
    if (!in.empty()) nghttp2_session_mem_recv(s, (const uint8_t*)in.data(), in.size());
    return moved;
  }
};

/** The relay under test, its client-facing socket, and the upstream servers it is given. */
struct Harness : mx::h2::RelayHost {
  mx::h2::Relay relay;
  Peer client{false};
  End down;  // relay's end of the client pair
  struct Up {
    uint32_t id;
    End end;
    std::unique_ptr<Peer> server;
    bool closed = false;
  };
  std::vector<std::unique_ptr<Up>> ups;
  bool need = false;
  std::string fail;          // non-empty: answer need-upstream with this failure
  std::string authority;     // authority override handed with each upstream
  std::string deny;          // non-empty: every request is answered locally with 403 / PERMISSION_DENIED
  uint32_t server_streams = 100;
  std::function<void(Peer&)> setup_server;
  int responses[6] = {0, 0, 0, 0, 0, 0};
  int retries = 0;
  size_t max_buffered = 0;

  explicit Harness(mx::h2::RelayOptions o = {}, bool manual_client_window = false) : relay(*this, o), client(false, 100, manual_client_window) {
    Pair(client.end, down);
  }
  void NeedUpstream(uint32_t) override { need = true; }
  bool Admit(mx::h2::LocalAnswer* answer, std::string_view, std::string_view) override {
    if (deny.empty()) return true;
    answer->status = 403;
    answer->grpcStatus = 7;
    answer->message = deny;
    answer->counted = false;
    return false;
  }
  void CountResponse(int status) override { responses[status / 100 % 6]++; }
  void CountRetry() override { retries++; }
  std::shared_ptr<const mx::engine::PlanRetry> retry;  // the plan's retry policy (null: none)
  mx::h2::StreamLimits Limits() override { return {0, 0, 0, retry}; }

  bool Step() {
    bool moved = client.Pump();
    std::string in;
    moved |= down.Read(in);
    if (!in.empty()) relay.RecvClient((const uint8_t*)in.data(), in.size());
    if (need) {
      need = false;
      moved = true;
      if (!fail.empty()) {
        relay.UpstreamUnavailable(fail);
      } else {
        auto u = std::make_unique<Up>();
        u->server = std::make_unique<Peer>(true, server_streams);
        Pair(u->end, u->server->end);
        if (setup_server) setup_server(*u->server);
        u->id = relay.AttachUpstream(authority, "http");
        ups.push_back(std::move(u));
      }
    }
    for (auto& u : ups) {
      if (u->closed) continue;
      moved |= u->server->Pump();
      std::string uin;
      moved |= u->end.Read(uin);
      if (!uin.empty()) relay.RecvUpstream(u->id, (const uint8_t*)uin.data(), uin.size());
      if (u->end.eof) {
        relay.UpstreamLost(u->id, "upstream closed the connection");
        u->closed = true;
        moved = true;
      }
    }
    relay.SendClient(down.out, 1 << 20);
    moved |= down.Flush();
    for (auto& u : ups) {
      if (u->closed) continue;
      relay.SendUpstream(u->id, u->end.out, 1 << 20);
      moved |= u->end.Flush();
      if (!relay.UpstreamAlive(u->id) && u->end.out.empty()) {
        relay.UpstreamLost(u->id, "done");
        u->closed = true;
        close(u->end.fd);
        u->end.fd = -1;
        moved = true;
      }
    }
    max_buffered = std::max(max_buffered, relay.BufferedBytes());
    return moved;
  }
  /** Whether the client has seen every stream in `ids` close. */
  bool AllClosed(const std::vector<int32_t>& ids) {
    for (int32_t id : ids)
      if (!client.msgs[id].closed) return false;
    return true;
  }
  /** Pumps until `done()` or nothing moves for `idle_ms`; returns done(). */
  bool Run(const std::function<bool()>& done, int idle_ms = 2000) {
    while (!done()) {
      if (Step()) continue;
      std::vector<pollfd> fds{{client.end.fd, POLLIN, 0}, {down.fd, POLLIN, 0}};
      for (auto& u : ups)
        if (!u->closed) {
          fds.push_back({u->end.fd, POLLIN, 0});
          fds.push_back({u->server->end.fd, POLLIN, 0});
        }
      if (poll(fds.data(), fds.size(), idle_ms) == 0) return done();
    }
    return true;
  }
};

Headers Req(const std::string& method, const std::string& path, const std::string& authority = "svc.mesh.local") {
  return {{":method", method}, {":scheme", "http"}, {":authority", authority}, {":path", path}};
}

void TestEchoWithTrailersAndAuthority() {
  Harness h;
  h.authority = "api.example.com";
  Headers seen;
  h.setup_server = [&](Peer& srv) {
    srv.on_request = [&](Peer& p, int32_t id) {
      seen = p.msgs[id].head;
      std::string body = p.msgs[id].body;
      std::string sum = std::to_string(body.size());
      p.Respond(id, {{":status", "201"}, {"x-up", "1"}}, &body, {{"x-checksum", sum}, {"x-req-trailer", Get(p.msgs[id].trailers, "x-client-sum")}});
    };
  };
  std::string body(200000, '\7');
  Headers rq = Req("POST", "/upload", "files.extsvc.mesh.local");
  rq.emplace_back("te", "trailers");
  rq.emplace_back("x-custom", "v");
  rq.emplace_back("host", "files.extsvc.mesh.local");
  int32_t id = h.client.Request(rq, &body, {{"x-client-sum", "200000"}});
  CHECK(h.Run([&] { return h.client.msgs[id].closed; }), "stream did not finish");
  Msg& m = h.client.msgs[id];
  CHECK(Get(m.head, ":status") == "201", "status %s", Get(m.head, ":status").c_str());
  CHECK(Get(m.head, "x-up") == "1", "x-up missing");
  CHECK(m.body.size() == body.size(), "body %zu", m.body.size());
  CHECK(Get(m.trailers, "x-checksum") == "200000", "trailer '%s'", Get(m.trailers, "x-checksum").c_str());
  CHECK(Get(m.trailers, "x-req-trailer") == "200000", "request trailer not relayed");
  CHECK(m.rst == NGHTTP2_NO_ERROR, "rst %u", m.rst);
  CHECK(Get(seen, ":authority") == "api.example.com", "authority %s", Get(seen, ":authority").c_str());
  CHECK(Get(seen, "te") == "trailers" && Get(seen, "x-custom") == "v", "headers not passed");
  CHECK(!Has(seen, "host"), "host forwarded next to :authority");
  CHECK(h.responses[2] == 1, "2xx count %d", h.responses[2]);
  CHECK(h.ups.size() == 1, "upstreams %zu", h.ups.size());
}

void TestClientAuthorityKeptForIpEndpoints() {
  Harness h;
  Headers seen;
  h.setup_server = [&](Peer& srv) {
    srv.on_request = [&](Peer& p, int32_t id) {
      seen = p.msgs[id].head;
      p.Respond(id, {{":status", "204"}}, nullptr);
    };
  };
  int32_t id = h.client.Request(Req("GET", "/", "files.extsvc.mesh.local"), nullptr);
  CHECK(h.Run([&] { return h.client.msgs[id].closed; }), "stream did not finish");
  CHECK(Get(seen, ":authority") == "files.extsvc.mesh.local", "authority %s", Get(seen, ":authority").c_str());
  CHECK(Get(h.client.msgs[id].head, ":status") == "204", "status");
}

void TestMultiplexAndConcurrencyLimit() {
  Harness h;
  h.server_streams = 3;
  std::vector<Peer*> servers;
  h.setup_server = [&](Peer& srv) {
    servers.push_back(&srv);
    srv.on_request = [](Peer& p, int32_t id) {
      std::string b = "ok";
      p.Respond(id, {{":status", "200"}}, &b);
    };
  };
  // One request first, so the relay has seen the upstream's SETTINGS (later connections are assumed to
  // announce the same limit until their own SETTINGS arrive).
  int32_t first = h.client.Request(Req("GET", "/first"), nullptr);
  CHECK(h.Run([&] { return h.client.msgs[first].closed; }), "first request did not finish");
  std::vector<int32_t> ids;
  for (int i = 0; i < 10; i++) ids.push_back(h.client.Request(Req("GET", "/" + std::to_string(i)), nullptr));
  CHECK(h.Run([&] { return h.AllClosed(ids); }), "not all streams finished");
  for (int32_t id : ids) CHECK(h.client.msgs[id].body == "ok", "stream %d body '%s'", id, h.client.msgs[id].body.c_str());
  // 10 concurrent requests with a limit of 3 per connection: exactly 4 connections, none refused.
  CHECK(h.ups.size() == 4, "upstreams %zu", h.ups.size());
  CHECK(h.retries == 0, "retries %d", h.retries);
  // A second wave reuses the connections.
  size_t before = h.ups.size();
  int32_t again = h.client.Request(Req("GET", "/again"), nullptr);
  CHECK(h.Run([&] { return h.client.msgs[again].closed; }), "reuse request did not finish");
  CHECK(h.ups.size() == before, "a new connection was opened for a request that fits");
}

/** A retry policy on 5xx with `n` retries, as a plan carries it. */
std::shared_ptr<const mx::engine::PlanRetry> RetryOn5xx(uint32_t n) {
  auto r = std::make_shared<mx::engine::PlanRetry>();
  r->numRetries = n;
  r->on = mx::engine::PlanRetry::k5xx;
  // What src/snapshot/plan.ts retryFor lists for a policy naming no method or header.
  r->methods = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
  return r;
}

void TestRetryResendsHeldBody() {
  // A PUT within the retry buffer: the first attempt gets 503, the retry sends the whole body again and its 200
  // is what the client sees; the 503 never reaches it.
  Harness h;
  h.retry = RetryOn5xx(2);
  std::vector<size_t> seen;
  h.setup_server = [&](Peer& srv) {
    srv.on_request = [&](Peer& p, int32_t id) {
      seen.push_back(p.msgs[id].body.size());
      std::string b = seen.size() == 1 ? "busy" : "done";
      p.Respond(id, {{":status", seen.size() == 1 ? "503" : "200"}}, &b);
    };
  };
  std::string body(40000, 'p');
  int32_t id = h.client.Request(Req("PUT", "/x"), &body);
  CHECK(h.Run([&] { return h.client.msgs[id].closed; }), "stream did not finish");
  CHECK(Get(h.client.msgs[id].head, ":status") == "200", "status %s", Get(h.client.msgs[id].head, ":status").c_str());
  CHECK(h.client.msgs[id].body == "done", "body '%s'", h.client.msgs[id].body.c_str());
  CHECK(seen.size() == 2 && seen[0] == body.size() && seen[1] == body.size(), "attempts %zu", seen.size());
  CHECK(h.retries == 1, "retries %d", h.retries);
  CHECK(h.responses[5] == 0 && h.responses[2] == 1, "counted 5xx %d 2xx %d", h.responses[5], h.responses[2]);
}

void TestRetryNeverResendsStreamedBody() {
  // Past the buffer the body streams and the request is not sent again: the 503 goes to the client.
  Harness h;
  h.retry = RetryOn5xx(2);
  int attempts = 0;
  h.setup_server = [&](Peer& srv) {
    srv.on_request = [&](Peer& p, int32_t id) {
      attempts++;
      p.Respond(id, {{":status", "503"}}, nullptr);
    };
  };
  std::string body(mx::engine::PlanRetry::kBufferBytes + 1000, 'q');
  int32_t id = h.client.Request(Req("PUT", "/big"), &body);
  CHECK(h.Run([&] { return h.client.msgs[id].closed; }), "stream did not finish");
  CHECK(Get(h.client.msgs[id].head, ":status") == "503", "status %s", Get(h.client.msgs[id].head, ":status").c_str());
  CHECK(attempts == 1 && h.retries == 0, "attempts %d retries %d", attempts, h.retries);
}

void TestRetryNotForPost() {
  Harness h;
  h.retry = RetryOn5xx(2);
  int attempts = 0;
  h.setup_server = [&](Peer& srv) {
    srv.on_request = [&](Peer& p, int32_t id) {
      attempts++;
      p.Respond(id, {{":status", "502"}}, nullptr);
    };
  };
  std::string body = "order";
  int32_t id = h.client.Request(Req("POST", "/order"), &body);
  CHECK(h.Run([&] { return h.client.msgs[id].closed; }), "stream did not finish");
  CHECK(Get(h.client.msgs[id].head, ":status") == "502", "status %s", Get(h.client.msgs[id].head, ":status").c_str());
  CHECK(attempts == 1 && h.retries == 0, "attempts %d retries %d", attempts, h.retries);
}

void TestGoawayOpensNewConnection() {
  Harness h;
  h.setup_server = [&](Peer& srv) {
    srv.on_request = [](Peer& p, int32_t id) {
      std::string b = "ok";
      p.Respond(id, {{":status", "200"}}, &b);
      nghttp2_submit_goaway(p.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, nullptr, 0);
    };
  };
  for (int i = 0; i < 3; i++) {
    int32_t id = h.client.Request(Req("GET", "/" + std::to_string(i)), nullptr);
    CHECK(h.Run([&] { return h.client.msgs[id].closed; }), "request %d did not finish", i);
    CHECK(h.client.msgs[id].body == "ok", "request %d body", i);
    // Let the GOAWAY arrive before the next request.
    h.Run([&] { return h.ups.back()->server->end.out.empty() && h.relay.UpstreamIds().empty(); }, 200);
  }
  CHECK(h.ups.size() == 3, "upstreams %zu", h.ups.size());
}

void TestRefusedStreamsAreReplayed() {
  // The first connection answers stream 1 and refuses everything above it with GOAWAY(last=1).
  Harness h;
  int conns = 0;
  h.setup_server = [&](Peer& srv) {
    int n = ++conns;
    srv.on_headers = [n](Peer& p, int32_t id) {
      if (n == 1 && id == 1) nghttp2_submit_goaway(p.s, NGHTTP2_FLAG_NONE, 1, NGHTTP2_NO_ERROR, nullptr, 0);
    };
    srv.on_request = [](Peer& p, int32_t id) {
      std::string b = "ok";
      p.Respond(id, {{":status", "200"}}, &b);
    };
  };
  std::vector<int32_t> ids;
  for (int i = 0; i < 4; i++) ids.push_back(h.client.Request(Req("GET", "/" + std::to_string(i)), nullptr));
  CHECK(h.Run([&] { return h.AllClosed(ids); }), "not all finished");
  for (int32_t id : ids) CHECK(Get(h.client.msgs[id].head, ":status") == "200", "stream %d status '%s'", id, Get(h.client.msgs[id].head, ":status").c_str());
  CHECK(h.retries == 3, "retries %d", h.retries);
  CHECK(conns == 2, "connections %d", conns);
}

void TestUnavailable(bool grpc) {
  mx::h2::RelayOptions o;
  o.grpc = grpc;
  Harness h(o);
  h.fail = "connect to 127.0.0.1:1 failed: ECONNREFUSED";
  int32_t id = h.client.Request(Req("POST", "/meshext.test.Echo/Unary"), nullptr);
  CHECK(h.Run([&] { return h.client.msgs[id].closed; }), "no reply");
  Msg& m = h.client.msgs[id];
  if (grpc) {
    CHECK(Get(m.head, ":status") == "200", "status %s", Get(m.head, ":status").c_str());
    CHECK(Get(m.head, "grpc-status") == "14", "grpc-status '%s'", Get(m.head, "grpc-status").c_str());
    CHECK(Get(m.head, "grpc-message") == "upstream unavailable: connect to 127.0.0.1:1 failed: ECONNREFUSED", "grpc-message '%s'", Get(m.head, "grpc-message").c_str());
  } else {
    CHECK(Get(m.head, ":status") == "503", "status %s", Get(m.head, ":status").c_str());
    CHECK(m.body == "upstream unavailable: connect to 127.0.0.1:1 failed: ECONNREFUSED\n", "body '%s'", m.body.c_str());
  }
  CHECK(h.responses[5] == 1, "5xx count %d", h.responses[5]);
  // The next request asks for an upstream again and gets one.
  h.fail.clear();
  h.setup_server = [](Peer& srv) { srv.on_request = [](Peer& p, int32_t sid) { p.Respond(sid, {{":status", "200"}}, nullptr); }; };
  int32_t id2 = h.client.Request(Req("GET", "/"), nullptr);
  CHECK(h.Run([&] { return h.client.msgs[id2].closed; }), "second request did not finish");
  CHECK(Get(h.client.msgs[id2].head, ":status") == "200", "second status");
}

void TestDenied(bool grpc) {
  mx::h2::RelayOptions o;
  o.grpc = grpc;
  // Windows no larger than the protocol's default: the denied body fits in them only if the relay gives back
  // what it discarded.
  o.stream_window = o.connection_window = 65535;
  Harness h(o);
  h.deny = "access denied by Mesh \"default\"";
  std::string big(200 * 1024, 'x');
  int32_t id = h.client.Request(Req("POST", "/meshext.test.Echo/Unary"), &big);
  CHECK(h.Run([&] { return h.client.msgs[id].closed; }), "no reply");
  Msg& m = h.client.msgs[id];
  if (grpc) {
    CHECK(Get(m.head, ":status") == "200", "status %s", Get(m.head, ":status").c_str());
    CHECK(Get(m.head, "grpc-status") == "7", "grpc-status '%s'", Get(m.head, "grpc-status").c_str());
    CHECK(Get(m.head, "grpc-message") == "access denied by Mesh \"default\"", "grpc-message '%s'", Get(m.head, "grpc-message").c_str());
  } else {
    CHECK(Get(m.head, ":status") == "403", "status %s", Get(m.head, ":status").c_str());
    CHECK(m.body == "access denied by Mesh \"default\"\n", "body '%s'", m.body.c_str());
  }
  CHECK(h.ups.empty(), "a denied request must not open an upstream connection (%zu opened)", h.ups.size());
  CHECK(h.responses[4] == 0, "a denial is not an upstream response (4xx count %d)", h.responses[4]);
  // The body the client sent anyway was acknowledged: the connection can carry the next stream.
  int32_t id2 = h.client.Request(Req("GET", "/"), nullptr);
  CHECK(h.Run([&] { return h.client.msgs[id2].closed; }), "second denied request did not finish");
  CHECK(Get(h.client.msgs[id2].head, ":status") == (grpc ? "200" : "403"), "second denied status '%s'", Get(h.client.msgs[id2].head, ":status").c_str());
  // Allowed again, a body larger than the connection window goes through: every discarded byte was given back.
  h.deny.clear();
  h.setup_server = [](Peer& srv) {
    srv.on_request = [](Peer& p, int32_t sid) {
      std::string body = p.msgs[sid].body;
      p.Respond(sid, {{":status", "200"}}, &body);
    };
  };
  std::string next(100 * 1024, 'y');
  int32_t id3 = h.client.Request(Req("POST", "/meshext.test.Echo/Unary"), &next);
  CHECK(h.Run([&] { return h.client.msgs[id3].closed; }), "allowed request after the denials did not finish");
  CHECK(Get(h.client.msgs[id3].head, ":status") == "200", "allowed status '%s'", Get(h.client.msgs[id3].head, ":status").c_str());
  CHECK(h.client.msgs[id3].body.size() == next.size(), "echoed %zu of %zu bytes", h.client.msgs[id3].body.size(), next.size());
}

void TestResetsBothWays() {
  Harness h;
  Peer* srv_ptr = nullptr;
  h.setup_server = [&](Peer& srv) {
    srv_ptr = &srv;
    srv.on_headers = [](Peer& p, int32_t id) {
      const std::string path = Get(p.msgs[id].head, ":path");
      if (path == "/rst-before") nghttp2_submit_rst_stream(p.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
      if (path == "/rst-after") {
        // A body that never ends: the stream is reset instead.
        p.hold[id] = true;
        std::string first = "partial";
        p.Respond(id, {{":status", "200"}}, &first);
      }
    };
  };
  // Upstream resets before answering: the client gets a local 503.
  int32_t a = h.client.Request(Req("GET", "/rst-before"), nullptr);
  CHECK(h.Run([&] { return h.client.msgs[a].closed; }), "a not closed");
  CHECK(Get(h.client.msgs[a].head, ":status") == "503", "a status '%s'", Get(h.client.msgs[a].head, ":status").c_str());
  // Client resets: the upstream sees its stream cancelled.
  std::string pending(10, 'x');
  int32_t b = h.client.Request(Req("POST", "/hold"), &pending);
  h.Run([&] { return srv_ptr && !srv_ptr->msgs.empty() && srv_ptr->msgs.rbegin()->second.head.size() > 0 && h.client.to_send[b].empty(); }, 200);
  nghttp2_submit_rst_stream(h.client.s, NGHTTP2_FLAG_NONE, b, NGHTTP2_CANCEL);
  CHECK(h.Run([&] {
    for (auto& [id, m] : srv_ptr->msgs)
      if (Get(m.head, ":path") == "/hold" && m.closed) return true;
    return false;
  }),
        "upstream stream not cancelled");
  for (auto& [id, m] : srv_ptr->msgs)
    if (Get(m.head, ":path") == "/hold") CHECK(m.rst == NGHTTP2_CANCEL, "upstream saw code %u", m.rst);
  // Upstream resets after the response started: the client's stream is reset with the same code.
  int32_t c = h.client.Request(Req("GET", "/rst-after"), nullptr);
  CHECK(h.Run([&] { return !h.client.msgs[c].head.empty(); }), "c no headers");
  for (auto& [id, m] : srv_ptr->msgs)
    if (Get(m.head, ":path") == "/rst-after" && !m.closed) nghttp2_submit_rst_stream(srv_ptr->s, NGHTTP2_FLAG_NONE, id, NGHTTP2_ENHANCE_YOUR_CALM);
  CHECK(h.Run([&] { return h.client.msgs[c].closed; }), "c not closed");
  CHECK(h.client.msgs[c].rst == NGHTTP2_ENHANCE_YOUR_CALM, "c code %u", h.client.msgs[c].rst);
  CHECK(h.relay.OpenStreams() == 0, "streams left %zu", h.relay.OpenStreams());
}

void TestEarlyResponseWhileClientStillSends() {
  // The upstream answers on the request headers; the client keeps sending a body larger than every window.
  Harness h;
  h.setup_server = [](Peer& srv) {
    srv.on_headers = [](Peer& p, int32_t id) {
      std::string b = "early";
      p.Respond(id, {{":status", "413"}}, &b);
    };
  };
  std::string body(3 * 1024 * 1024, 'u');
  int32_t id = h.client.Request(Req("POST", "/too-big"), &body);
  CHECK(h.Run([&] { return h.client.msgs[id].closed; }), "client stream stuck after an early response");
  CHECK(Get(h.client.msgs[id].head, ":status") == "413", "status");
  CHECK(h.client.msgs[id].body == "early", "body");
  CHECK(h.relay.OpenStreams() == 0, "streams left %zu", h.relay.OpenStreams());
  CHECK(h.max_buffered <= 2 * 256 * 1024, "relay buffered %zu", h.max_buffered);
}

void TestUpstreamConnectionLost() {
  // The first connection dies with three requests on it: a GET with no answer yet is replayed once on a new
  // connection, a POST with no answer gets a local 503, and a GET whose response had started is reset.
  Harness h;
  int conns = 0;
  h.setup_server = [&](Peer& srv) {
    int n = ++conns;
    srv.on_headers = [n](Peer& p, int32_t id) {
      const std::string path = Get(p.msgs[id].head, ":path");
      if (n > 1) {
        std::string b = "second try";
        p.Respond(id, {{":status", "200"}}, &b);
      } else if (path == "/started") {
        p.hold[id] = true;
        std::string b = "partial";
        p.Respond(id, {{":status", "200"}}, &b);
      }
    };
  };
  int32_t started = h.client.Request(Req("GET", "/started"), nullptr);
  CHECK(h.Run([&] { return h.client.msgs[started].body == "partial"; }), "no partial response");
  int32_t get = h.client.Request(Req("GET", "/get"), nullptr);
  std::string pbody = "x";
  int32_t post = h.client.Request(Req("POST", "/post"), &pbody);
  CHECK(h.Run([&] { return h.ups[0]->server->msgs.size() == 3; }), "requests did not reach the upstream");
  // Kill the upstream's end of the connection.
  close(h.ups[0]->server->end.fd);
  h.ups[0]->server->end.fd = -1;
  h.ups[0]->server->end.eof = true;
  CHECK(h.Run([&] { return h.client.msgs[started].closed && h.client.msgs[get].closed && h.client.msgs[post].closed; }), "streams not finished");
  CHECK(h.client.msgs[started].rst == NGHTTP2_INTERNAL_ERROR, "started stream code %u", h.client.msgs[started].rst);
  CHECK(h.client.msgs[get].body == "second try", "GET body '%s'", h.client.msgs[get].body.c_str());
  CHECK(Get(h.client.msgs[post].head, ":status") == "503", "POST status '%s'", Get(h.client.msgs[post].head, ":status").c_str());
  CHECK(h.client.msgs[post].body.rfind("upstream closed the connection", 0) == 0, "POST body '%s'", h.client.msgs[post].body.c_str());
  CHECK(h.retries == 1, "retries %d", h.retries);
  CHECK(conns == 2, "connections %d", conns);
}

void TestFlowControlBoundsBuffering() {
  // The client does not acknowledge DATA at first: the relay may hold at most what it advertised.
  mx::h2::RelayOptions o;
  Harness h(o, true);
  const size_t total = 4 * 1024 * 1024;
  h.setup_server = [&](Peer& srv) {
    srv.on_request = [total](Peer& p, int32_t id) {
      std::string big(total, 'b');
      p.Respond(id, {{":status", "200"}}, &big);
    };
  };
  int32_t id = h.client.Request(Req("GET", "/big"), nullptr);
  h.Run([] { return false; }, 300);  // until nothing moves: everyone is blocked on windows
  size_t got = h.client.msgs[id].body.size();
  CHECK(got <= 65535, "client got %zu bytes past its window", got);
  CHECK(h.max_buffered <= o.stream_window, "relay buffered %zu > window %u", h.max_buffered, o.stream_window);
  CHECK(!h.client.msgs[id].closed, "finished without window updates");
  // Now the client reads everything as it comes.
  size_t acked = 0;
  CHECK(h.Run([&] {
    size_t have = h.client.msgs[id].body.size();
    if (have > acked) {
      nghttp2_session_consume(h.client.s, id, have - acked);
      acked = have;
    }
    return h.client.msgs[id].closed;
  }),
        "big response did not finish");
  CHECK(h.client.msgs[id].body.size() == total, "got %zu", h.client.msgs[id].body.size());
  CHECK(h.max_buffered <= o.stream_window, "relay buffered %zu", h.max_buffered);
}

void TestDrain() {
  Harness h;
  Peer* srv_ptr = nullptr;
  int32_t held = 0;
  h.setup_server = [&](Peer& srv) {
    srv_ptr = &srv;
    srv.on_request = [&](Peer&, int32_t id) { held = id; };
  };
  int32_t id = h.client.Request(Req("GET", "/"), nullptr);
  CHECK(h.Run([&] { return held != 0; }), "request did not reach the upstream");
  h.relay.Drain();
  CHECK(h.Run([&] { return h.client.goaways > 0; }), "no GOAWAY");
  std::string b = "ok";
  srv_ptr->Respond(held, {{":status", "200"}}, &b);
  CHECK(h.Run([&] { return h.client.msgs[id].closed; }), "drain did not finish the stream");
  CHECK(h.client.msgs[id].body == "ok", "in-flight request cut by drain");
  h.Run([&] { return !h.relay.ClientAlive(); }, 300);
  CHECK(!h.relay.ClientAlive(), "client session still alive after GOAWAY with no streams");
}

}  // namespace

int main() {
  struct {
    const char* name;
    std::function<void()> fn;
  } cases[] = {
      {"echo with trailers and authority override", TestEchoWithTrailersAndAuthority},
      {"client authority kept without override", TestClientAuthorityKeptForIpEndpoints},
      {"multiplexing within SETTINGS_MAX_CONCURRENT_STREAMS", TestMultiplexAndConcurrencyLimit},
      {"upstream GOAWAY opens a new connection", TestGoawayOpensNewConnection},
      {"refused streams are replayed", TestRefusedStreamsAreReplayed},
      {"retry policy: a 503 is retried with the held body sent again", TestRetryResendsHeldBody},
      {"retry policy: a body past the buffer is never resent", TestRetryNeverResendsStreamedBody},
      {"retry policy: a POST is not retried", TestRetryNotForPost},
      {"unavailable upstream: HTTP 503", [] { TestUnavailable(false); }},
      {"unavailable upstream: grpc-status 14", [] { TestUnavailable(true); }},
      {"denied: HTTP 403 without an upstream", [] { TestDenied(false); }},
      {"denied: grpc-status 7 without an upstream", [] { TestDenied(true); }},
      {"RST_STREAM both ways", TestResetsBothWays},
      {"flow control bounds buffering", TestFlowControlBoundsBuffering},
      {"early upstream response while the client still sends", TestEarlyResponseWhileClientStillSends},
      {"upstream connection lost mid-flight", TestUpstreamConnectionLost},
      {"drain sends GOAWAY and finishes in-flight", TestDrain},
  };
  for (auto& c : cases) {
    int before = failures;
    c.fn();
    std::printf("%s %s\n", failures == before ? "ok  " : "FAIL", c.name);
  }
  std::printf("%d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
