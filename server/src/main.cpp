// celsius-server: wires config, logging, metrics, the app and the event loops together,
// then waits for SIGTERM/SIGINT and shuts down gracefully.
#include <pthread.h>
#include <signal.h>

#include <fmt/format.h>
#include <boost/system/system_error.hpp>
#include <iostream>

#include "app.hpp"
#include "config.hpp"
#include "grpc_model_client.hpp"
#include "json_write.hpp"
#include "logging.hpp"
#include "metrics.hpp"
#include "model_gateway.hpp"
#include "request_id.hpp"
#include "rest_model_client.hpp"
#include "server.hpp"
#include "version.hpp"

namespace {

std::unique_ptr<celsius::model_gateway> make_gateway(const celsius::config& cfg) {
  using namespace celsius;
  std::string error;
  const model_server_address address = *parse_model_server(cfg.model_server, error);  // validated by parse_config
  const std::chrono::milliseconds timeout(cfg.model_timeout_ms);
  std::unique_ptr<model_client> client;
  if (address.scheme == model_server_address::protocol::grpc) {
    grpc_model_options options;
    // gRPC's DNS resolver: every address of the name gets a connection (round_robin), so a
    // Kubernetes headless Service name spreads calls over its model-server pods.
    options.target = "dns:///" + host_port(address.host, address.port);
    options.model_name = cfg.model_name;
    options.model_version = cfg.model_version;
    options.timeout = timeout;
    client = make_grpc_model_client(options);
  } else {
    rest_model_options options;
    options.host = address.host;
    options.port = address.port;
    options.model_name = cfg.model_name;
    options.model_version = cfg.model_version;
    options.timeout = timeout;
    client = make_rest_model_client(options);
  }
  model_gateway_options options;
  options.name = cfg.model_name;
  options.version = cfg.model_version;
  options.timeout = timeout;
  options.coalescing.max_values = cfg.model_batch_max_values;
  options.coalescing.timeout = std::chrono::microseconds(cfg.model_batch_timeout_us);
  options.coalescing.max_inflight = cfg.model_batch_max_inflight;
  std::string fields = R"("model_server":)";
  append_json_string(fields, cfg.model_server);
  fields += R"(,"model":)";
  append_json_string(fields, cfg.model_name);
  fields += fmt::format(R"(,"timeout_ms":{},"batch_max_values":{},"batch_timeout_us":{},"batch_max_inflight":{})",
                        cfg.model_timeout_ms, cfg.model_batch_max_values, cfg.model_batch_timeout_us,
                        cfg.model_batch_max_inflight);
  log_info("model server configured", fields);
  return std::make_unique<model_gateway>(std::move(client), std::move(options));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace celsius;
  const config_result parsed = parse_config(argc, argv, std::cout, std::cerr);
  if (!parsed.cfg) return parsed.exit_code;
  const config& cfg = *parsed.cfg;

  // Block the stop signals in every thread (threads inherit the mask) so that only the
  // sigwait below sees them; ignore SIGPIPE from a closed stdout.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  init_logging(cfg.log_level);
  const std::string app_id = make_app_id();
  metrics_registry metrics(cfg.threads);
  app application(cfg, app_id, metrics);

  // Outlives the event loops' work: it is destroyed (after waiting for every call in flight)
  // only once the server has stopped, so no model callback can post to a dead loop.
  std::unique_ptr<model_gateway> gateway;
  if (!cfg.model_server.empty()) {
    gateway = make_gateway(cfg);
    application.set_model(gateway.get());  // its state shows in /readyz and /metrics, never gating readiness
    gateway->start();
  }
  server srv(application, metrics);

  std::uint16_t port = 0;
  try {
    port = srv.listen();
  } catch (const boost::system::system_error& e) {
    std::string fields = fmt::format(R"("host":)");
    append_json_string(fields, cfg.host);
    fields += fmt::format(R"(,"port":{},"error":)", cfg.port);
    append_json_string(fields, e.what());
    log_error("cannot listen", fields);
    shutdown_logging();
    return 1;
  }
  srv.start();
  {
    std::string fields = R"("host":)";
    append_json_string(fields, cfg.host);
    fields +=
        fmt::format(R"(,"port":{},"threads":{},"version":"{}","app_id":"{}")", port, cfg.threads, version, app_id);
    log_info("listening", fields);
    flush_logs();
  }

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  log_info("shutting down", fmt::format(R"("signal":"{}","grace_ms":{})",
                                        signal_number == SIGTERM ? "SIGTERM" : "SIGINT", cfg.shutdown_grace_ms));
  const bool drained = srv.stop(std::chrono::milliseconds(cfg.shutdown_grace_ms));
  // Every model callback has returned (so none can post to a loop), and the status poller
  // has stopped before logging shuts down. The loops are stopped: nothing calls the app.
  application.set_model(nullptr);
  gateway.reset();
  log_info("stopped", fmt::format(R"("drained":{})", drained));
  shutdown_logging();
  return 0;
}
