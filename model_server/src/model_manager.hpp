#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "saved_model.hpp"
#include "status.hpp"
#include "tensorflow_serving.pb.h"
#include "version_dirs.hpp"

namespace celsius::serving {

class batch_queue;

// One loaded version of the model, shared by every request that uses it: a request holds a
// shared_ptr for as long as it runs, so unloading a version never cuts a request short.
struct servable {
  std::string name;
  std::int64_t version = 0;
  std::unique_ptr<saved_model> model;
  // Batching queues of this version, by batch key (batching.hpp); created on first use.
  mutable std::mutex batch_mutex;
  mutable std::map<std::string, std::shared_ptr<batch_queue>> batch_queues;
};
using servable_handle = std::shared_ptr<const servable>;

// The versions of one model, managed like TF Serving's defaults for --model_base_path:
// FileSystemStoragePathSource with the "latest" policy (the newest numeric version folder is
// the one aspired) and AspiredVersionsManager with AvailabilityPreservingPolicy:
//   - the base path is polled every --file_system_poll_wait_seconds;
//   - a newer version is loaded while the current one keeps serving, then published, then
//     the old one is unloaded (UNLOADING until its last request finishes, then END);
//   - a version that fails to load is retried --max_num_load_retries times, every
//     --load_retry_interval_micros (LOADING meanwhile), then reported END with the error;
//     the version that was serving keeps serving;
//   - when no version folder is left, every version is unloaded.
// States and messages as ServableStateMonitor / GetModelStatus report them.
class model_manager {
 public:
  using loader = std::function<status(const std::filesystem::path& dir, std::unique_ptr<saved_model>& out)>;
  struct settings {
    std::string name;
    std::filesystem::path base_path;
    int poll_seconds = 1;  // <= 0: poll until the first version is available, then never again
    int max_retries = 5;
    std::chrono::microseconds retry_interval{60'000'000};
  };

  model_manager(settings s, loader load);
  ~model_manager();
  model_manager(const model_manager&) = delete;
  model_manager& operator=(const model_manager&) = delete;

  // Polls until a version is AVAILABLE (OK), the first version failed for good (its
  // status) or stop() was called (CANCELLED); then keeps polling on its own thread.
  status start();
  // Stops polling and releases every version (waits for requests that still hold one).
  void stop();
  // Makes start() return CANCELLED soon and the poll thread end; safe from any thread.
  void request_stop();

  // ServerCore::GetServableHandle: "Latest" or a specific version; labels are unknown here.
  status handle(const tensorflow::serving::ModelSpec& spec, servable_handle& out) const;
  // GetModelStatusImpl::GetModelStatus.
  status version_states(const tensorflow::serving::GetModelStatusRequest& request,
                        tensorflow::serving::GetModelStatusResponse& out) const;

  const std::string& name() const { return settings_.name; }

 private:
  using state = tensorflow::serving::ModelVersionStatus::State;
  struct version_state {
    state value = tensorflow::serving::ModelVersionStatus::UNKNOWN;
    status health;
  };

  void poll_once();
  void release_unloaded();
  void unload_all_but(std::optional<std::int64_t> keep);
  status load_with_retries(const version_dir& dir, std::shared_ptr<servable>& out);
  bool sleep_for(std::chrono::microseconds d);  // false once stopping
  void set_state(std::int64_t version, state value, status health = {});
  std::string id(std::int64_t version) const;

  const settings settings_;
  const loader load_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::map<std::int64_t, std::shared_ptr<servable>> serving_;     // AVAILABLE versions
  std::map<std::int64_t, version_state, std::greater<>> states_;  // every version seen
  std::vector<std::shared_ptr<servable>> unloading_;              // poll thread only
  std::optional<status> first_failure_;
  std::string last_scan_note_;
  std::thread thread_;
};

}  // namespace celsius::serving
