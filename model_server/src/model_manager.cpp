#include "model_manager.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace celsius::serving {

using tensorflow::serving::ModelVersionStatus;

model_manager::model_manager(settings s, loader load) : settings_(std::move(s)), load_(std::move(load)) {}

model_manager::~model_manager() { stop(); }

std::string model_manager::id(std::int64_t version) const {
  return fmt::format("{{name: {} version: {}}}", settings_.name, version);
}

void model_manager::set_state(std::int64_t version, state value, status health) {
  std::lock_guard lock(mutex_);
  states_[version] = {value, std::move(health)};
}

bool model_manager::sleep_for(std::chrono::microseconds d) {
  std::unique_lock lock(mutex_);
  return !wake_.wait_for(lock, d, [this] { return stopping_; });
}

status model_manager::start() {
  spdlog::info("Building single TensorFlow model file config:  model_name: {} model_base_path: {}", settings_.name,
               settings_.base_path.string());
  const auto period = std::chrono::seconds(std::max(settings_.poll_seconds, 1));
  for (;;) {
    poll_once();
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return {code::CANCELLED, "stopped before a version was available"};
      if (!serving_.empty()) break;
      if (first_failure_) return *first_failure_;
    }
    if (!sleep_for(period)) return {code::CANCELLED, "stopped before a version was available"};
  }
  thread_ = std::thread([this, period] {
    for (;;) {
      if (!sleep_for(period)) return;
      if (settings_.poll_seconds > 0) {
        poll_once();
      } else {
        release_unloaded();
      }
    }
  });
  return {};
}

void model_manager::request_stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
}

void model_manager::stop() {
  request_stop();
  if (thread_.joinable()) thread_.join();
  std::map<std::int64_t, std::shared_ptr<servable>> serving;
  {
    std::lock_guard lock(mutex_);
    serving.swap(serving_);
  }
  serving.clear();
  unloading_.clear();
}

void model_manager::release_unloaded() {
  for (auto it = unloading_.begin(); it != unloading_.end();) {
    if (it->use_count() == 1) {
      const std::int64_t version = (*it)->version;
      it = unloading_.erase(it);  // the session is closed here, on the poll thread
      set_state(version, ModelVersionStatus::END);
      spdlog::info("Done unloading servable version {}", id(version));
    } else {
      ++it;
    }
  }
}

void model_manager::unload_all_but(std::optional<std::int64_t> keep) {
  std::vector<std::shared_ptr<servable>> removed;
  {
    std::lock_guard lock(mutex_);
    for (auto it = serving_.begin(); it != serving_.end();) {
      if (keep && it->first == *keep) {
        ++it;
        continue;
      }
      states_[it->first] = {ModelVersionStatus::UNLOADING, {}};
      removed.push_back(std::move(it->second));
      it = serving_.erase(it);
    }
  }
  for (auto& s : removed) {
    spdlog::info("Unloading servable version {}", id(s->version));
    unloading_.push_back(std::move(s));
  }
  release_unloaded();
}

status model_manager::load_with_retries(const version_dir& dir, std::shared_ptr<servable>& out) {
  const auto period = std::chrono::seconds(std::max(settings_.poll_seconds, 1));
  status result;
  for (int attempt = 0;; ++attempt) {
    spdlog::info("Loading servable version {}", id(dir.version));
    std::unique_ptr<saved_model> model;
    result = load_(dir.path, model);
    if (result.ok()) {
      auto s = std::make_shared<servable>();
      s->name = settings_.name;
      s->version = dir.version;
      s->model = std::move(model);
      out = std::move(s);
      return result;
    }
    spdlog::error("Loading servable: {} failed: {}: {}", id(dir.version), code_name(result.error_code()),
                  result.message());
    if (attempt >= settings_.max_retries) return result;
    spdlog::info("Retrying of Loading servable: {} retry: {}", id(dir.version), attempt + 1);
    // Wait for the retry interval, but give up when a newer version appears (it is the
    // one aspired now) or the server stops.
    auto remaining = settings_.retry_interval;
    while (remaining.count() > 0) {
      const auto slice = std::min<std::chrono::microseconds>(remaining, period);
      if (!sleep_for(slice)) return {code::CANCELLED, "Loading cancelled: the server is stopping"};
      remaining -= slice;
      const version_scan scan = scan_versions(settings_.base_path);
      if (scan.versions.empty() || scan.versions.back().version != dir.version) return result;
    }
  }
}

void model_manager::poll_once() {
  release_unloaded();
  const version_scan scan = scan_versions(settings_.base_path);
  std::string note;
  if (!scan.base_path_exists) {
    note = fmt::format("Could not find base path {} for servable {}", settings_.base_path.string(), settings_.name);
  } else if (scan.versions.empty()) {
    note = fmt::format(
        "No versions of servable {} found under base path {}. Did you forget to name your leaf directory as a "
        "number (eg. '/1/')?",
        settings_.name, settings_.base_path.string());
  }
  if (note != last_scan_note_ && !note.empty()) spdlog::warn("{}", note);
  last_scan_note_ = note;

  if (scan.versions.empty()) {
    unload_all_but(std::nullopt);
    return;
  }
  const version_dir& aspired = scan.versions.back();
  bool load = false;
  {
    std::lock_guard lock(mutex_);
    if (serving_.count(aspired.version) != 0) {
      load = false;
    } else {
      const auto it = states_.find(aspired.version);
      // Not seen yet, or unloaded earlier (END without error): load it. A version that
      // failed stays failed until it is no longer the newest.
      load = it == states_.end() || (it->second.value == ModelVersionStatus::END && it->second.health.ok());
    }
  }
  if (!load) {
    bool available = false;
    {
      std::lock_guard lock(mutex_);
      available = serving_.count(aspired.version) != 0;
    }
    if (available) unload_all_but(aspired.version);
    return;
  }
  set_state(aspired.version, ModelVersionStatus::LOADING);
  std::shared_ptr<servable> loaded;
  const status result = load_with_retries(aspired, loaded);
  if (!result.ok()) {
    set_state(aspired.version, ModelVersionStatus::END, result);
    std::lock_guard lock(mutex_);
    if (serving_.empty() && !first_failure_ && result.error_code() != code::CANCELLED) first_failure_ = result;
    return;
  }
  {
    std::lock_guard lock(mutex_);
    serving_[aspired.version] = loaded;
    states_[aspired.version] = {ModelVersionStatus::AVAILABLE, {}};
  }
  spdlog::info("Successfully loaded servable version {}", id(aspired.version));
  unload_all_but(aspired.version);
}

status model_manager::handle(const tensorflow::serving::ModelSpec& spec, servable_handle& out) const {
  if (spec.name().empty()) return invalid_argument("ModelSpec has no name specified.");
  if (spec.version_choice_case() == tensorflow::serving::ModelSpec::kVersionLabel) {
    // No labels are configured (they come with --model_config_file, which is refused).
    return invalid_argument("Unrecognized servable version label: " + spec.version_label());
  }
  const bool specific = spec.version_choice_case() == tensorflow::serving::ModelSpec::kVersion;
  const auto not_found = [&] {
    return not_found_error(
        specific ? fmt::format("Servable not found for request: Specific({}, {})", spec.name(), spec.version().value())
                 : fmt::format("Servable not found for request: Latest({})", spec.name()));
  };
  if (spec.name() != settings_.name) return not_found();
  std::lock_guard lock(mutex_);
  if (serving_.empty()) return not_found();
  if (!specific) {
    out = serving_.rbegin()->second;
    return {};
  }
  const auto it = serving_.find(spec.version().value());
  if (it == serving_.end()) return not_found();
  out = it->second;
  return {};
}

status model_manager::version_states(const tensorflow::serving::GetModelStatusRequest& request,
                                     tensorflow::serving::GetModelStatusResponse& out) const {
  if (!request.has_model_spec()) return invalid_argument("Missing ModelSpec");
  const auto& spec = request.model_spec();
  const auto add = [&](std::int64_t version, const version_state& s) {
    auto* v = out.add_model_version_status();
    v->set_version(version);
    v->set_state(s.value);
    v->mutable_status()->set_error_code(s.health.error_code());
    v->mutable_status()->set_error_message(s.health.message());
  };
  std::lock_guard lock(mutex_);
  const bool ours = spec.name() == settings_.name;
  if (spec.has_version()) {
    const std::int64_t version = spec.version().value();
    const auto it = ours ? states_.find(version) : states_.end();
    if (it == states_.end())
      return not_found_error(fmt::format("Could not find version {} of model {}", version, spec.name()));
    add(version, it->second);
    return {};
  }
  if (!ours || states_.empty()) return not_found_error("Could not find any versions of model " + spec.name());
  for (const auto& [version, s] : states_) add(version, s);
  return {};
}

}  // namespace celsius::serving
