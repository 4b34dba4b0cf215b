// celsius-server: wires config, logging, metrics, the app and the event loops together,
// then waits for SIGTERM/SIGINT and shuts down gracefully.
#include <pthread.h>
#include <signal.h>

#include <fmt/format.h>
#include <boost/system/system_error.hpp>
#include <iostream>

#include "app.hpp"
#include "config.hpp"
#include "json_write.hpp"
#include "logging.hpp"
#include "metrics.hpp"
#include "request_id.hpp"
#include "server.hpp"
#include "version.hpp"

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
  log_info("stopped", fmt::format(R"("drained":{})", drained));
  shutdown_logging();
  return 0;
}
