#include "parallel/local_knn_memory.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

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
    ring.keys = at::zeros({keys.size(0), capacity, keys.size(2)},
                          keys.options().dtype(options_.storage_dtype().value_or(keys.scalar_type())));
    ring.values =
        at::zeros({values.size(0), capacity, values.size(2)},
                  values.options().dtype(options_.storage_dtype().value_or(values.scalar_type())));
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
  ring.added += n;
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
                     at::zeros({groups, count, 0}, options),
                     at::zeros({groups, count, 0}, options.dtype(at::kLong))};
  }
  const Ring& ring = found->second;
  if (groups != ring.keys.size(0) || queries.size(2) != ring.keys.size(2)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LocalKnnMemory::search(stream ", stream, "): queries ", Shape(queries),
                     " do not match the stored keys ", Shape(ring.keys)));
  }
  // Until the ring wraps, the valid entries are its first `count` slots.
  const at::Tensor keys = ring.keys.slice(1, 0, ring.count);
  const at::Tensor scores = at::matmul(queries.detach().to(keys.options()), keys.transpose(1, 2));
  const at::Tensor slot_ids = ring.SlotIds(options_.capacity());
  const int64_t hits = std::min(k, ring.count);
  // Ties (equal scores) come oldest first. topk's order among equal scores is
  // unspecified, and an equal score just outside its k may be older than one
  // inside (e.g. duplicated keys: the same token after the same prefix). One
  // more than k shows whether a tie straddles the k-th place; only then are
  // the candidates every entry scoring at least the k-th best (a full pass
  // over the scores, as costly as the matmul). The candidates are then
  // ordered by id, then stably by score.
  const int64_t probe = std::min(hits + 1, ring.count);
  auto [best, index] = scores.topk(probe, /*dim=*/-1);
  if (probe > hits && best.select(-1, hits).eq(best.select(-1, hits - 1)).any().item<bool>()) {
    const int64_t candidates = (scores >= best.narrow(-1, hits - 1, 1)).sum(-1).max().item<int64_t>();
    std::tie(best, index) = scores.topk(candidates, /*dim=*/-1);
  }
  const at::Tensor candidate_ids = slot_ids.index_select(0, index.reshape({-1})).view_as(index);
  const at::Tensor by_id = std::get<1>(candidate_ids.sort(/*stable=*/true, -1, /*descending=*/false));
  const at::Tensor by_score =
      std::get<1>(best.gather(-1, by_id).sort(/*stable=*/true, -1, /*descending=*/true));
  const at::Tensor order = by_id.gather(-1, by_score).narrow(-1, 0, hits);
  best = best.gather(-1, order);
  index = index.gather(-1, order);
  const at::Tensor ids = slot_ids.index_select(0, index.reshape({-1})).view_as(index);
  auto [hit_keys, hit_values] = EntriesById(stream, ids);
  return KnnResult{hit_keys, hit_values, best, ids};
}

std::pair<at::Tensor, at::Tensor> LocalKnnMemory::EntriesById(int64_t stream,
                                                              const at::Tensor& ids) const {
  const Ring& ring = streams_.at(stream);
  const int64_t groups = ring.keys.size(0), capacity = options_.capacity();
  // Entry id j sits in slot j mod capacity (add writes it there).
  const at::Tensor flat =
      (ids.remainder(capacity) + at::arange(groups, ids.options()).view({groups, 1, 1}) * capacity)
          .reshape({-1});
  const auto gather = [&](const at::Tensor& buffer) {
    return buffer.reshape({groups * capacity, -1}).index_select(0, flat).view(
        {ids.size(0), ids.size(1), ids.size(2), -1});
  };
  return {gather(ring.keys), gather(ring.values)};
}

std::pair<int64_t, int64_t> LocalKnnMemory::KeyShape(int64_t stream) const {
  auto found = streams_.find(stream);
  if (found == streams_.end()) return {0, 0};
  return {found->second.keys.size(0), found->second.keys.size(2)};
}

int64_t LocalKnnMemory::added(int64_t stream) const {
  auto found = streams_.find(stream);
  return found == streams_.end() ? 0 : found->second.added;
}

at::Tensor LocalKnnMemory::Ring::SlotIds(int64_t capacity) const {
  const at::Tensor slots = at::arange(count, keys.options().dtype(at::kLong));
  // Not wrapped: slot s holds entry s. Full: the oldest (id added - capacity)
  // sits at `next`.
  if (count < capacity) return slots;
  return (slots - next).remainder(capacity) + (added - capacity);
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
    if (ring.count == 0) continue;
    const std::string prefix = absl::StrCat(stream, ".");
    const auto [keys, values] = Contents(stream);
    state[prefix + "keys"] = keys.cpu().contiguous();
    state[prefix + "values"] = values.cpu().contiguous();
    state[prefix + "added"] = at::scalar_tensor(ring.added, at::kLong);
  }
  return state;
}

absl::Status LocalKnnMemory::LoadState(const std::map<std::string, at::Tensor>& state) {
  struct Saved {
    at::Tensor keys, values, added;
  };
  std::map<int64_t, Saved> saved;
  for (const auto& [name, tensor] : state) {
    const size_t dot = name.find('.');
    int64_t stream = 0;
    const std::string field = dot == std::string::npos ? "" : name.substr(dot + 1);
    if (dot == std::string::npos || !absl::SimpleAtoi(name.substr(0, dot), &stream) ||
        (field != "keys" && field != "values" && field != "added")) {
      return absl::InvalidArgumentError(absl::StrCat("LocalKnnMemory::LoadState: unexpected entry '", name, "'"));
    }
    Saved& entry = saved[stream];
    (field == "keys" ? entry.keys : field == "values" ? entry.values : entry.added) = tensor;
  }
  // Built aside and swapped in at the end: a state that does not fit leaves
  // this memory unchanged.
  LocalKnnMemory staging(options_);
  for (const auto& [stream, entry] : saved) {
    if (!entry.keys.defined() || !entry.values.defined() || !entry.added.defined() || entry.keys.dim() != 3 ||
        entry.values.dim() != 3 || entry.keys.size(1) != entry.values.size(1) || entry.added.numel() != 1 ||
        entry.added.item<int64_t>() < entry.keys.size(1)) {
      return absl::InvalidArgumentError(absl::StrCat("LocalKnnMemory::LoadState(stream ", stream, "): keys ",
                                                     Shape(entry.keys), ", values ", Shape(entry.values),
                                                     " and the added count do not form a saved stream"));
    }
    // An empty ring positioned so that the entries land where insertion
    // continuing from the saved ids puts them (slot = id mod capacity).
    MEMTRAIN_RETURN_IF_ERROR(staging.add(stream, entry.keys.narrow(1, 0, 0), entry.values.narrow(1, 0, 0)));
    Ring& ring = staging.streams_.at(stream);
    ring.added = entry.added.item<int64_t>() - entry.keys.size(1);
    ring.next = ring.added % options_.capacity();
    MEMTRAIN_RETURN_IF_ERROR(staging.add(stream, entry.keys, entry.values));
  }
  streams_ = std::move(staging.streams_);
  return absl::OkStatus();
}

}  // namespace memtrain::parallel
