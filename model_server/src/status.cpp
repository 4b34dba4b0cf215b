#include "status.hpp"

namespace celsius::serving {

std::string_view code_name(code c) {
  const std::string& name = tensorflow::error::Code_Name(c);
  return name.empty() ? std::string_view("UNKNOWN") : std::string_view(name);
}

unsigned http_status_of(code c) {
  switch (c) {
    case code::OK:
      return 200;
    case code::CANCELLED:
      return 499;
    case code::INVALID_ARGUMENT:
    case code::FAILED_PRECONDITION:
    case code::OUT_OF_RANGE:
      return 400;
    case code::DEADLINE_EXCEEDED:
      return 504;
    case code::NOT_FOUND:
      return 404;
    case code::ALREADY_EXISTS:
    case code::ABORTED:
      return 409;
    case code::PERMISSION_DENIED:
      return 403;
    case code::UNAUTHENTICATED:
      return 401;
    case code::RESOURCE_EXHAUSTED:
      return 429;
    case code::UNIMPLEMENTED:
      return 501;
    case code::UNAVAILABLE:
      return 503;
    default:
      return 500;  // UNKNOWN, INTERNAL, DATA_LOSS
  }
}

}  // namespace celsius::serving
