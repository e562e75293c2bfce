#include "parallel/local_knn_memory.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace memtrain::parallel {
namespace {

std::string Shape(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  std::string out = "[";
  for (int64_t i = 0; i < t.dim(); ++i) absl::StrAppend(&out, i ? ", " : "", t.size(i));
  return out + "]";
}

}  // namespace

LocalKnnMemory::LocalKnnMemory(const LocalKnnMemoryOptions& options) : options_(options) {
  TORCH_CHECK(options.capacity() >= 1, "LocalKnnMemory: capacity must be >= 1, got ",
              options.capacity());
}

absl::Status LocalKnnMemory::add(int64_t stream, const at::Tensor& keys, const at::Tensor& values) {
  if (!keys.defined() || !values.defined() || keys.dim() != 3 || values.dim() != 3 ||
      keys.size(0) != values.size(0) || keys.size(1) != values.size(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LocalKnnMemory::add(stream ", stream,
                     "): keys must be [G, n, dk] and values [G, n, dv], got ", Shape(keys), " and ",
                     Shape(values)));
  }
  auto found = streams_.find(stream);
  if (found != streams_.end() &&
      (found->second.keys.size(0) != keys.size(0) || found->second.keys.size(2) != keys.size(2) ||
       found->second.values.size(2) != values.size(2))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LocalKnnMemory::add(stream ", stream, "): the stream holds keys ",
        Shape(found->second.keys), " and values ", Shape(found->second.values), "; got ",
        Shape(keys), " and ", Shape(values), " (clear the stream to change the shape)"));
  }
  at::NoGradGuard no_grad;  // the memory is never part of a graph (paper §1)
  const int64_t capacity = options_.capacity();
  if (found == streams_.end()) {
    Ring ring;
    ring.keys = at::zeros({keys.size(0), capacity, keys.size(2)}, keys.options());
    ring.values = at::zeros({values.size(0), capacity, values.size(2)}, values.options());
    found = streams_.emplace(stream, std::move(ring)).first;
  }
  Ring& ring = found->second;
  // More than a whole buffer at once: only the newest `capacity` survive.
  const int64_t n = keys.size(1);
  const int64_t kept = std::min(n, capacity);
  const at::Tensor slots =
      (at::arange(kept, ring.keys.options().dtype(at::kLong)) + ring.next + (n - kept)) % capacity;
  ring.keys.index_copy_(1, slots, keys.detach().slice(1, n - kept).to(ring.keys.options()));
  ring.values.index_copy_(1, slots, values.detach().slice(1, n - kept).to(ring.values.options()));
  ring.next = (ring.next + n) % capacity;
  ring.count = std::min(capacity, ring.count + n);
  return absl::OkStatus();
}

absl::StatusOr<KnnResult> LocalKnnMemory::search(int64_t stream, const at::Tensor& queries,
                                                 int64_t k) const {
  if (k < 1 || !queries.defined() || queries.dim() != 3) {
    return absl::InvalidArgumentError(absl::StrCat("LocalKnnMemory::search(stream ", stream,
                                                   "): needs queries [G, q, dk] and k >= 1, got ",
                                                   Shape(queries), " and k = ", k));
  }
  at::NoGradGuard no_grad;
  const int64_t groups = queries.size(0), count = queries.size(1);
  auto found = streams_.find(stream);
  if (found == streams_.end() || found->second.count == 0) {
    const auto options = queries.options();
    return KnnResult{at::zeros({groups, count, 0, queries.size(2)}, options),
                     at::zeros({groups, count, 0, 0}, options),
                     at::zeros({groups, count, 0}, options)};
  }
  const Ring& ring = found->second;
  if (groups != ring.keys.size(0) || queries.size(2) != ring.keys.size(2)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LocalKnnMemory::search(stream ", stream, "): queries ", Shape(queries),
                     " do not match the stored keys ", Shape(ring.keys)));
  }
  // Until the ring wraps, the valid entries are its first `count` slots.
  const at::Tensor keys = ring.keys.slice(1, 0, ring.count);
  const at::Tensor values = ring.values.slice(1, 0, ring.count);
  const at::Tensor scores = at::matmul(queries.detach().to(keys.options()), keys.transpose(1, 2));
  auto [best, index] = scores.topk(std::min(k, ring.count), /*dim=*/-1);
  const int64_t hits = index.size(2);
  const at::Tensor flat =
      (index + at::arange(groups, index.options()).view({groups, 1, 1}) * ring.count).reshape({-1});
  return KnnResult{
      keys.reshape({groups * ring.count, -1}).index_select(0, flat).view({groups, count, hits, -1}),
      values.reshape({groups * ring.count, -1})
          .index_select(0, flat)
          .view({groups, count, hits, -1}),
      best};
}

void LocalKnnMemory::clear(int64_t stream) { streams_.erase(stream); }

int64_t LocalKnnMemory::size(int64_t stream) const {
  auto found = streams_.find(stream);
  return found == streams_.end() ? 0 : found->second.count;
}

std::pair<at::Tensor, at::Tensor> LocalKnnMemory::Contents(int64_t stream) const {
  auto found = streams_.find(stream);
  if (found == streams_.end() || found->second.count == 0) return {};
  const Ring& ring = found->second;
  if (ring.count < options_.capacity()) {
    return {ring.keys.slice(1, 0, ring.count), ring.values.slice(1, 0, ring.count)};
  }
  // Full: the oldest entry sits at `next`.
  return {at::roll(ring.keys, -ring.next, 1), at::roll(ring.values, -ring.next, 1)};
}


absl::StatusOr<std::map<std::string, at::Tensor>> LocalKnnMemory::SaveState() const {
  std::map<std::string, at::Tensor> state;
  for (const auto& [stream, ring] : streams_) {
    const std::string prefix = absl::StrCat(stream, ".");
    state[prefix + "keys"] = ring.keys.cpu().clone();
    state[prefix + "values"] = ring.values.cpu().clone();
    state[prefix + "ring"] = at::tensor({ring.next, ring.count}, at::kLong);
  }
  return state;
}

absl::Status LocalKnnMemory::LoadState(const std::map<std::string, at::Tensor>& state) {
  std::unordered_map<int64_t, Ring> loaded;
  for (const auto& [name, tensor] : state) {
    const size_t dot = name.find('.');
    int64_t stream = 0;
    if (dot == std::string::npos || !absl::SimpleAtoi(name.substr(0, dot), &stream)) {
      return absl::InvalidArgumentError(absl::StrCat("LocalKnnMemory::LoadState: unexpected entry '", name, "'"));
    }
    const std::string field = name.substr(dot + 1);
    Ring& ring = loaded[stream];
    if (field == "keys") {
      ring.keys = tensor;
    } else if (field == "values") {
      ring.values = tensor;
    } else if (field == "ring" && tensor.numel() == 2 && tensor.scalar_type() == at::kLong) {
      ring.next = tensor[0].item<int64_t>();
      ring.count = tensor[1].item<int64_t>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("LocalKnnMemory::LoadState: unexpected entry '", name, "'"));
    }
  }
  const int64_t capacity = options_.capacity();
  for (const auto& [stream, ring] : loaded) {
    if (!ring.keys.defined() || !ring.values.defined() || ring.keys.dim() != 3 || ring.values.dim() != 3 ||
        ring.keys.size(1) != capacity || ring.values.size(1) != capacity || ring.count < 0 ||
        ring.count > capacity || ring.next < 0 || ring.next >= capacity) {
      return absl::InvalidArgumentError(absl::StrCat("LocalKnnMemory::LoadState(stream ", stream,
                                                     "): keys ", Shape(ring.keys), " and values ",
                                                     Shape(ring.values), " do not fit a memory of capacity ",
                                                     capacity, " (or the ring position is out of range)"));
    }
  }
  streams_ = std::move(loaded);
  return absl::OkStatus();
}

}  // namespace memtrain::parallel
