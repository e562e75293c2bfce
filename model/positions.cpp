#include "model/positions.h"

#include <cmath>

#include "common/enum_names.h"

namespace memtrain::model {
namespace {

const EnumNames<Positions>& Names() {
  static const auto* names =
      new EnumNames<Positions>("position encoding", {{Positions::kAuto, "auto"},
                                                     {Positions::kSinusoidal, "sinusoidal"},
                                                     {Positions::kRotary, "rotary"}});
  return *names;
}

// Angles [t, width / 2] of positions first .. first + t - 1 in `options`'
// dtype.
at::Tensor Angles(int64_t first, int64_t t, int64_t width, const at::TensorOptions& options) {
  const at::Tensor position = at::arange(first, first + t, options).unsqueeze(1);
  const at::Tensor even = at::arange(0, width, 2, options);
  return position * at::exp(even * (-std::log(10000.0) / static_cast<double>(width)));
}

}  // namespace

std::vector<std::string> PositionsNames() { return Names().names(); }
bool AbslParseFlag(absl::string_view text, Positions* value, std::string* error) {
  return Names().Parse(text, value, error);
}
std::string AbslUnparseFlag(Positions value) { return Names().Name(value); }

at::Tensor SinusoidalPositions(int64_t first, int64_t n, int64_t width,
                               const at::TensorOptions& options) {
  const at::Tensor angle = Angles(first, n, width, options);
  at::Tensor table = at::zeros({n, width}, options);
  table.slice(1, 0, width, 2) = at::sin(angle);
  table.slice(1, 1, width, 2) = at::cos(angle.slice(1, 0, width / 2));
  return table;
}

at::Tensor RotaryPositions(const at::Tensor& x, int64_t first) {
  const int64_t t = x.size(2), d = x.size(3);
  TORCH_CHECK(d % 2 == 0, "rotary positions need an even head width, got ", d);
  // In float64, so that positions in the tens of thousands keep their precision.
  const at::Tensor angle =
      Angles(first, t, d, x.options().dtype(at::kDouble)).to(x.scalar_type());  // [t, d/2]
  const at::Tensor cos = at::cos(angle), sin = at::sin(angle);
  const at::Tensor x1 = x.narrow(3, 0, d / 2), x2 = x.narrow(3, d / 2, d / 2);
  return at::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, 3);
}

}  // namespace memtrain::model
