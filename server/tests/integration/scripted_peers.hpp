#pragma once

// Real servers in the test process that speak the model server's protocols (and DNS) and
// misbehave on purpose: TF Serving's gRPC API (this project's protos), its REST API, a
// TCP proxy that accepts late, a DNS server with answers the test sets. Each listens on
// 127.0.0.1 (or the address given) and a free port, and stops in its destructor.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace grpc {
class Server;
class Status;
}  // namespace grpc
namespace tensorflow::serving {
class PredictRequest;
class PredictResponse;
}  // namespace tensorflow::serving

namespace celsius::test {

// TF Serving's PredictionService and ModelService over gRPC (this project's protos). The
// model "f2c" version 1 is AVAILABLE; Predict runs `handler`, by default the correct
// answer written the way TF Serving writes it (double_val, shape [n], model_spec).
class scripted_grpc_model_server {
 public:
  using predict_handler =
      std::function<grpc::Status(const tensorflow::serving::PredictRequest&, tensorflow::serving::PredictResponse&)>;
  struct options {
    predict_handler predict;                          // empty: correct answers
    std::string host = "127.0.0.1";                   // an IP literal
    std::uint16_t port = 0;                           // 0: a free one
    std::chrono::milliseconds max_connection_age{0};  // grpc.max_connection_age_ms; 0: unlimited
  };
  explicit scripted_grpc_model_server(options how);
  scripted_grpc_model_server() : scripted_grpc_model_server(options{}) {}
  ~scripted_grpc_model_server();
  scripted_grpc_model_server(const scripted_grpc_model_server&) = delete;
  scripted_grpc_model_server& operator=(const scripted_grpc_model_server&) = delete;

  std::uint16_t port() const { return port_; }
  std::size_t predict_calls() const { return predict_calls_.load(); }

  // The correct reply to `request` (celsius = (f - 32) * 5 / 9 of its double_val).
  static grpc::Status correct(const tensorflow::serving::PredictRequest& request,
                              tensorflow::serving::PredictResponse& response);

 private:
  struct services;
  std::unique_ptr<services> services_;
  std::unique_ptr<grpc::Server> server_;
  std::uint16_t port_ = 0;
  std::atomic<std::size_t> predict_calls_{0};
};

// TF Serving's REST API on a thread per connection (a test peer, not a fast server):
// `GET /v1/models/f2c` (AVAILABLE, version 1) and `POST /v1/models/f2c:predict`, whose
// answer `predict` makes from the request body (default: the correct answer). Keep-alive;
// optionally closes connections that sit idle, without `Connection: close`, like servers
// with an idle timeout do.
class scripted_rest_model_server {
 public:
  struct reply {
    unsigned status = 200;
    std::string body;
  };
  struct options {
    std::function<reply(std::string_view request_body)> predict;  // empty: correct answers
    std::chrono::milliseconds idle_close{0};                      // close a connection idle this long; 0: never
    // After answering this many requests on a connection, read the next one and close the
    // connection without answering (a server closing a kept-alive connection just as a
    // request arrives); 0: never.
    std::size_t answers_per_connection = 0;
  };
  explicit scripted_rest_model_server(options how);
  scripted_rest_model_server() : scripted_rest_model_server(options{}) {}
  ~scripted_rest_model_server();
  scripted_rest_model_server(const scripted_rest_model_server&) = delete;
  scripted_rest_model_server& operator=(const scripted_rest_model_server&) = delete;

  std::uint16_t port() const { return port_; }
  std::size_t connections_accepted() const { return accepted_.load(); }
  std::size_t idle_closes() const { return idle_closes_.load(); }
  std::size_t dropped_requests() const { return dropped_.load(); }
  std::size_t predict_calls() const { return predict_calls_.load(); }

  // The correct `:predict` answer for a row-form request body, as TF Serving writes it.
  static reply correct(std::string_view request_body);

 private:
  void accept_loop();
  void serve(int fd);

  options options_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> accepted_{0};
  std::atomic<std::size_t> idle_closes_{0};
  std::atomic<std::size_t> dropped_{0};
  std::atomic<std::size_t> predict_calls_{0};
  std::mutex mutex_;
  std::vector<int> open_;  // connection sockets, shut down on stop
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// A TCP proxy to 127.0.0.1:`target` that leaves each connection in the kernel's backlog
// for `delay` before accepting it, then relays bytes both ways: a server that accepts
// slowly (a busy or starting model server).
class delayed_accept_proxy {
 public:
  delayed_accept_proxy(std::uint16_t target, std::chrono::milliseconds delay);
  ~delayed_accept_proxy();
  delayed_accept_proxy(const delayed_accept_proxy&) = delete;
  delayed_accept_proxy& operator=(const delayed_accept_proxy&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  void accept_loop();
  std::uint16_t target_;
  std::chrono::milliseconds delay_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::vector<int> open_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// A DNS server over UDP on 127.0.0.1 that answers A queries for any name with the IPv4
// addresses set by set_addresses() (TTL 0), AAAA queries with no records, anything else
// with NOTIMP. gRPC's c-ares resolver reaches it with the target `dns://127.0.0.1:PORT/NAME:PORT`.
class test_dns_server {
 public:
  explicit test_dns_server(std::vector<std::string> ipv4_addresses);
  ~test_dns_server();
  test_dns_server(const test_dns_server&) = delete;
  test_dns_server& operator=(const test_dns_server&) = delete;
  std::uint16_t port() const { return port_; }
  void set_addresses(std::vector<std::string> ipv4_addresses);
  std::size_t queries() const { return queries_.load(); }

 private:
  void loop();
  int socket_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> queries_{0};
  std::mutex mutex_;
  std::vector<std::uint32_t> addresses_;  // network byte order
  std::thread thread_;
};

}  // namespace celsius::test
