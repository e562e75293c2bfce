#include "memory/exact_knn_memory.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/Utils.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace memtrain::memory {
namespace {

std::string Shape(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  std::string out = "[";
  for (int64_t i = 0; i < t.dim(); ++i) absl::StrAppend(&out, i ? ", " : "", t.size(i));
  return out + "]";
}

// The coarse pass ranks blocks of this many consecutive slots by the most an
// entry in them can score, and rescores only entries of the blocks that can
// still hold one of the k best.
constexpr int64_t kCoarseBlock = 32;
// Below this many entries the float32 matmul is cheap and the coarse pass
// (and its bf16 copy of the keys) is not worth it.
constexpr int64_t kCoarseMinEntries = 16384;
// Unit roundoff of bf16 (8 significand bits) and of float32.
const double kBf16Roundoff = std::ldexp(1.0, -8);
const double kFloatRoundoff = std::ldexp(1.0, -24);

// Native bf16 dot products, without which a bf16 matmul is slower than float32.
bool CpuHasNativeBf16() {
  static const bool has = [] {
    const auto capabilities = at::cpu::get_cpu_capabilities();
    for (const char* name : {"avx512_bf16", "amx_bf16"}) {
      auto found = capabilities.find(name);
      if (found != capabilities.end() && found->second.isBool() && found->second.toBool())
        return true;
    }
    return false;
  }();
  return has;
}

// Scores are computed in float32 (float64 for float64 entries).
at::ScalarType ScoreType(at::ScalarType storage) {
  return storage == at::kDouble ? at::kDouble : at::kFloat;
}

// Columns per block of BestOldestFirst's first pass.
constexpr int64_t kSelectBlock = 32;

// One row's selection (see BestOldestFirst). `block_max` holds the maxima of
// the row's whole blocks; the columns past the last whole block are read
// directly. `candidates` must hold `columns` entries (it is scratch). Returns
// false when fewer than `hits` scores qualify, which only a NaN score
// (unordered) can cause.
template <typename Score>
bool SelectRow(const Score* scores, int64_t columns, const Score* block_max, int64_t blocks,
               const int64_t* ids, int64_t id_stride, int64_t hits, std::vector<Score>& maxima,
               std::vector<std::pair<Score, int64_t>>& candidates, Score* best_out,
               int64_t* ids_out) {
  const int64_t whole = blocks * kSelectBlock;
  maxima.assign(block_max, block_max + blocks);
  if (whole < columns) maxima.push_back(*std::max_element(scores + whole, scores + columns));
  // The hits-th largest block maximum t is at most the hits-th best score:
  // each of those blocks holds a score >= t. So every score at or above the
  // hits-th best, ties included, lies in a block whose maximum reaches t.
  Score threshold = -std::numeric_limits<Score>::infinity();
  const int64_t maxima_count = static_cast<int64_t>(maxima.size());
  if (maxima_count > hits) {
    // First a cheap bound t0 <= t: the least of the maxima of `hits` disjoint
    // groups (hits blocks reach it). Only maxima >= t0 can be among the hits
    // largest, so nth_element sorts out those alone (a third of them for
    // random scores; measured 1.1 instead of 1.9 us per row of 256).
    const int64_t group = maxima_count / hits;
    Score bound = std::numeric_limits<Score>::infinity();
    for (int64_t g = 0; g < hits; ++g) {
      bound = std::min(
          bound, *std::max_element(maxima.begin() + g * group, maxima.begin() + (g + 1) * group));
    }
    int64_t kept = 0;
    for (int64_t b = 0; b < maxima_count; ++b) {
      maxima[kept] = maxima[b];
      kept += maxima[b] >= bound;
    }
    if (kept < hits) return false;
    std::nth_element(maxima.begin(), maxima.begin() + (hits - 1), maxima.begin() + kept,
                     std::greater<Score>());
    threshold = maxima[hits - 1];
  }
  // The qualifying scores of the blocks in reach, written without a branch
  // (few of a block's scores qualify, and mispredicted branches cost more).
  std::pair<Score, int64_t>* out = candidates.data();
  int64_t found = 0;
  const auto scan = [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      out[found] = {scores[j], ids[j * id_stride]};
      found += scores[j] >= threshold;
    }
  };
  for (int64_t b = 0; b < blocks; ++b) {
    if (block_max[b] >= threshold) scan(b * kSelectBlock, (b + 1) * kSelectBlock);
  }
  scan(whole, columns);
  if (found < hits) return false;
  std::partial_sort(out, out + hits, out + found, [](const auto& a, const auto& b) {
    return ComesFirst(a.first, a.second, b.first, b.second);
  });
  for (int64_t h = 0; h < hits; ++h) {
    best_out[h] = out[h].first;
    ids_out[h] = out[h].second;
  }
  return true;
}

// BestOldestFirst on a GPU, where topk is fast: one more than k shows whether
// a tie straddles the k-th place (topk's order among equal scores is
// unspecified, and an equal score just outside its k may be older than one
// inside: duplicated keys, the same token after the same prefix); only then
// are the candidates every column scoring at least the k-th best. The
// candidates are then ordered by id, then stably by score.
std::pair<at::Tensor, at::Tensor> BestOldestFirstByTopk(const at::Tensor& scores,
                                                        const at::Tensor& ids, int64_t hits) {
  const int64_t probe = std::min(hits + 1, scores.size(-1));
  auto [best, index] = scores.topk(probe, /*dim=*/-1);
  if (probe > hits && best.select(-1, hits).eq(best.select(-1, hits - 1)).any().item<bool>()) {
    const int64_t candidates =
        (scores >= best.narrow(-1, hits - 1, 1)).sum(-1).max().item<int64_t>();
    std::tie(best, index) = scores.topk(candidates, /*dim=*/-1);
  }
  const at::Tensor candidate_ids = ids.expand(scores.sizes()).gather(-1, index);
  const at::Tensor by_id =
      std::get<1>(candidate_ids.sort(/*stable=*/true, -1, /*descending=*/false));
  const at::Tensor by_score =
      std::get<1>(best.gather(-1, by_id).sort(/*stable=*/true, -1, /*descending=*/true));
  const at::Tensor order = by_id.gather(-1, by_score).narrow(-1, 0, hits);
  return {best.gather(-1, order), candidate_ids.gather(-1, order)};
}

// The best `hits` columns of `scores` [G, q, m] per query with their ids
// (`ids`: the insertion id of each column, [G, q, m] or broadcast to it),
// best first and equal scores oldest (lowest id) first, as an exhaustive
// sort would order them. On the CPU, instead of topk, whose per-row cost
// dominated the knn layer's step (docs/BENCHMARKS.md), a vectorized block
// maximum first (ATen's amax) and then, per row, only the few blocks that
// can hold a hit are read; that fails for NaN scores (unordered).
absl::StatusOr<std::pair<at::Tensor, at::Tensor>> BestOldestFirst(const at::Tensor& scores,
                                                                  const at::Tensor& ids,
                                                                  int64_t hits) {
  if (!scores.is_cpu()) return BestOldestFirstByTopk(scores, ids, hits);
  const int64_t columns = scores.size(-1), rows = scores.numel() / columns;
  const at::Tensor flat = scores.contiguous().view({rows, columns});
  const at::Tensor flat_ids = ids.expand(scores.sizes()).reshape({rows, columns});
  const int64_t blocks = columns / kSelectBlock;
  const at::Tensor block_max = flat.narrow(1, 0, blocks * kSelectBlock)
                                   .view({rows, blocks, kSelectBlock})
                                   .amax(-1)
                                   .contiguous();
  std::vector<int64_t> out_sizes = scores.sizes().vec();
  out_sizes.back() = hits;
  at::Tensor best = at::empty(out_sizes, flat.options());
  at::Tensor best_ids = at::empty(out_sizes, flat_ids.options());
  std::atomic<bool> ordered{true};
  AT_DISPATCH_FLOATING_TYPES(flat.scalar_type(), "BestOldestFirst", [&] {
    const scalar_t* score_data = flat.data_ptr<scalar_t>();
    const int64_t* id_data = flat_ids.data_ptr<int64_t>();
    const scalar_t* max_data = block_max.data_ptr<scalar_t>();
    scalar_t* best_data = best.data_ptr<scalar_t>();
    int64_t* best_id_data = best_ids.data_ptr<int64_t>();
    at::parallel_for(0, rows, /*grain_size=*/8, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> maxima;
      std::vector<std::pair<scalar_t, int64_t>> candidates(static_cast<size_t>(columns));
      for (int64_t r = begin; r < end; ++r) {
        if (!SelectRow(score_data + r * columns, columns, max_data + r * blocks, blocks,
                       id_data + r * flat_ids.stride(0), flat_ids.stride(1), hits, maxima,
                       candidates, best_data + r * hits, best_id_data + r * hits)) {
          ordered = false;
        }
      }
    });
  });
  if (!ordered) {
    return absl::InvalidArgumentError(
        "the search scores hold NaN: the queries or the stored keys are not finite");
  }
  return std::make_pair(best, best_ids);
}

}  // namespace

bool ExactKnnMemory::CoarsePassAvailable() { return CpuHasNativeBf16(); }

ExactKnnMemory::ExactKnnMemory(const ExactKnnMemoryOptions& options) : options_(options) {
  TORCH_CHECK(options.capacity() >= 1, "ExactKnnMemory: capacity must be >= 1, got ",
              options.capacity());
}

absl::Status ExactKnnMemory::add(int64_t stream, const at::Tensor& keys, const at::Tensor& values) {
  if (!keys.defined() || !values.defined() || keys.dim() != 3 || values.dim() != 3 ||
      keys.size(0) != values.size(0) || keys.size(1) != values.size(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("ExactKnnMemory::add(stream ", stream,
                     "): keys must be [G, n, dk] and values [G, n, dv], got ", Shape(keys), " and ",
                     Shape(values)));
  }
  auto found = streams_.find(stream);
  if (found != streams_.end() &&
      (found->second.keys.size(0) != keys.size(0) || found->second.keys.size(2) != keys.size(2) ||
       found->second.values.size(2) != values.size(2))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ExactKnnMemory::add(stream ", stream, "): the stream holds keys ",
        Shape(found->second.keys), " and values ", Shape(found->second.values), "; got ",
        Shape(keys), " and ", Shape(values), " (clear the stream to change the shape)"));
  }
  at::NoGradGuard no_grad;  // the memory is never part of a graph (paper §1)
  const int64_t capacity = options_.capacity();
  if (found == streams_.end()) {
    Ring ring;
    ring.keys =
        at::zeros({keys.size(0), capacity, keys.size(2)},
                  keys.options().dtype(options_.storage_dtype().value_or(keys.scalar_type())));
    ring.values =
        at::zeros({values.size(0), capacity, values.size(2)},
                  values.options().dtype(options_.storage_dtype().value_or(values.scalar_type())));
    // The coarse pass needs bf16 keys: bf16 storage is its own copy.
    const at::ScalarType stored = ring.keys.scalar_type();
    if (options_.coarse_pass() && ring.keys.is_cpu() && CpuHasNativeBf16() &&
        capacity >= kCoarseMinEntries && (stored == at::kFloat || stored == at::kBFloat16)) {
      ring.coarse_keys =
          stored == at::kBFloat16 ? ring.keys : at::zeros_like(ring.keys, at::kBFloat16);
      ring.key_norms = at::zeros({keys.size(0), capacity}, ring.keys.options().dtype(at::kFloat));
    }
    found = streams_.emplace(stream, std::move(ring)).first;
  }
  Ring& ring = found->second;
  // More than a whole buffer at once: only the newest `capacity` survive.
  const int64_t n = keys.size(1);
  const int64_t kept = std::min(n, capacity);
  const at::Tensor slots =
      (at::arange(kept, ring.keys.options().dtype(at::kLong)) + ring.next + (n - kept)) % capacity;
  const at::Tensor stored_keys = keys.detach().slice(1, n - kept).to(ring.keys.options());
  ring.keys.index_copy_(1, slots, stored_keys);
  ring.values.index_copy_(1, slots, values.detach().slice(1, n - kept).to(ring.values.options()));
  if (ring.coarse_keys.defined() && kept > 0) {
    if (!ring.coarse_keys.is_same(ring.keys))
      ring.coarse_keys.index_copy_(1, slots, stored_keys.to(at::kBFloat16));
    ring.key_norms.index_copy_(1, slots, stored_keys.to(at::kFloat).norm(2, -1));
  }
  ring.next = (ring.next + n) % capacity;
  ring.count = std::min(capacity, ring.count + n);
  ring.added += n;
  return absl::OkStatus();
}

absl::StatusOr<KnnResult> ExactKnnMemory::search(int64_t stream, const at::Tensor& queries,
                                                 int64_t k) const {
  if (k < 1 || !queries.defined() || queries.dim() != 3) {
    return absl::InvalidArgumentError(absl::StrCat("ExactKnnMemory::search(stream ", stream,
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
        absl::StrCat("ExactKnnMemory::search(stream ", stream, "): queries ", Shape(queries),
                     " do not match the stored keys ", Shape(ring.keys)));
  }
  const int64_t hits = std::min(k, ring.count);
  const at::Tensor query =
      queries.detach().to(ring.keys.device(), ScoreType(ring.keys.scalar_type()));
  if (ring.coarse_keys.defined() && ring.count >= kCoarseMinEntries &&
      query.scalar_type() == at::kFloat && 4 * hits * kCoarseBlock <= ring.count) {
    if (std::optional<KnnResult> found_fast = CoarseThenExactSearch(stream, ring, query, hits)) {
      ++counts_.coarse;
      return *found_fast;
    }
    ++counts_.coarse_fallbacks;
  }
  ++counts_.full;
  // Until the ring wraps, the valid entries are its first `count` slots.
  const at::Tensor keys = ring.keys.slice(1, 0, ring.count).to(query.scalar_type());
  const at::Tensor scores = at::matmul(query, keys.transpose(1, 2));
  MEMTRAIN_ASSIGN_OR_RETURN(auto hits_found,
                            BestOldestFirst(scores, ring.SlotIds(options_.capacity()), hits));
  const auto& [best, ids] = hits_found;
  auto [hit_keys, hit_values] = EntriesById(stream, ids);
  return KnnResult{hit_keys, hit_values, best, ids};
}

std::optional<KnnResult> ExactKnnMemory::CoarseThenExactSearch(int64_t stream, const Ring& ring,
                                                               const at::Tensor& query,
                                                               int64_t hits) const {
  const int64_t groups = query.size(0), rows = query.size(1), capacity = options_.capacity();
  const at::TensorOptions long_options = query.options().dtype(at::kLong);
  // Coarse scores: bf16 queries and keys, float32 accumulation, bf16 result
  // (bmm: at::matmul takes a slower path for one group here).
  const at::Tensor coarse =
      at::bmm(query.to(at::kBFloat16), ring.coarse_keys.slice(1, 0, ring.count).transpose(1, 2));
  // |coarse - exact| <= bound_j = relative_bound |q| |k_j| for every entry j:
  // rounding the query (u) and, unless stored in bf16, the key (u + u^2) to
  // bf16, float32 accumulation over dk products (dk 2^-24), rounding the
  // result to bf16 (u (1 + 3u)); a quarter more, for margin.
  const bool keys_rounded = !ring.coarse_keys.is_same(ring.keys);
  const double u = kBf16Roundoff;
  const double relative_bound = 1.25 * ((keys_rounded ? 2.0 * u + u * u : u) + u * (1.0 + 3.0 * u) +
                                        static_cast<double>(query.size(2)) * kFloatRoundoff);
  const at::Tensor query_bound =
      (query.norm(2, -1) * relative_bound).unsqueeze(-1);  // [G, rows, 1]
  // Blocks of consecutive slots: their best coarse score, and their ceiling,
  // the most any entry in them can score exactly.
  const int64_t whole = ring.count / kCoarseBlock * kCoarseBlock, blocks = whole / kCoarseBlock;
  const at::Tensor block_norm = ring.key_norms.narrow(1, 0, whole)
                                    .view({groups, 1, blocks, kCoarseBlock})
                                    .amax(-1);  // [G, 1, blocks]
  // (amax is not vectorized for bf16: converting first is 5x faster.)
  const at::Tensor block_best = coarse.narrow(-1, 0, whole)
                                    .to(at::kFloat)
                                    .view({groups, rows, blocks, kCoarseBlock})
                                    .amax(-1);
  const at::Tensor block_ceiling = block_best + query_bound * block_norm;
  // The k best blocks hold k entries scoring at least t (the k-th best block
  // maximum) coarsely, so at least t - B exactly (B: their largest bound); so
  // the exact k-th best T >= t - B, and an entry scoring at least T has
  // coarse + bound >= t - B: the threshold no candidate may be below.
  const auto [top_block_best, top_blocks] = block_best.topk(hits, /*dim=*/-1);
  const at::Tensor threshold = top_block_best.select(-1, hits - 1).unsqueeze(-1) -
                               query_bound * block_norm.expand({groups, rows, blocks})
                                                 .gather(-1, top_blocks)
                                                 .amax(-1, /*keepdim=*/true);
  // The blocks whose ceiling reaches it (the same number for every row), and
  // the slots past the last whole block.
  const int64_t kept_blocks = block_ceiling.ge(threshold).sum(-1).max().item<int64_t>();
  if (kept_blocks * kCoarseBlock * 4 > ring.count) return std::nullopt;  // not worth a second pass
  at::Tensor columns =
      (std::get<1>(block_ceiling.topk(kept_blocks, /*dim=*/-1)).unsqueeze(-1) * kCoarseBlock +
       at::arange(kCoarseBlock, long_options))
          .flatten(-2);
  if (whole < ring.count) {
    columns = at::cat(
        {columns,
         at::arange(whole, ring.count, long_options).expand({groups, rows, ring.count - whole})},
        -1);
  }
  // Of those, the entries whose own ceiling reaches the threshold are
  // rescored in float32.
  const at::Tensor candidate_ceiling =
      coarse.gather(-1, columns).to(at::kFloat) +
      query_bound *
          ring.key_norms.unsqueeze(1).expand({groups, rows, capacity}).gather(-1, columns);
  const int64_t rescored = candidate_ceiling.ge(threshold).sum(-1).max().item<int64_t>();
  const at::Tensor slots =
      columns.gather(-1, std::get<1>(candidate_ceiling.topk(rescored, /*dim=*/-1)));
  const at::Tensor flat_slots =
      (slots + at::arange(groups, long_options).view({groups, 1, 1}) * capacity).reshape({-1});
  const at::Tensor candidate_keys = ring.keys.reshape({groups * capacity, -1})
                                        .index_select(0, flat_slots)
                                        .view({groups, rows, rescored, -1})
                                        .to(at::kFloat);
  const at::Tensor exact = at::matmul(candidate_keys, query.unsqueeze(-1)).squeeze(-1);
  const at::Tensor candidate_ids =
      ring.SlotIds(capacity).index_select(0, slots.reshape({-1})).view_as(slots);
  absl::StatusOr<std::pair<at::Tensor, at::Tensor>> hits_found =
      BestOldestFirst(exact, candidate_ids, hits);
  if (!hits_found.ok()) return std::nullopt;  // NaN: the full search reports it
  const auto& [best, ids] = *hits_found;
  auto [hit_keys, hit_values] = EntriesById(stream, ids);
  return KnnResult{hit_keys, hit_values, best, ids};
}

std::pair<at::Tensor, at::Tensor> ExactKnnMemory::EntriesById(int64_t stream,
                                                              const at::Tensor& ids) const {
  const Ring& ring = streams_.at(stream);
  const int64_t groups = ring.keys.size(0), capacity = options_.capacity();
  // Entry id j sits in slot j mod capacity (add writes it there).
  const at::Tensor flat =
      (ids.remainder(capacity) + at::arange(groups, ids.options()).view({groups, 1, 1}) * capacity)
          .reshape({-1});
  const auto gather = [&](const at::Tensor& buffer) {
    return buffer.reshape({groups * capacity, -1})
        .index_select(0, flat)
        .view({ids.size(0), ids.size(1), ids.size(2), -1});
  };
  return {gather(ring.keys), gather(ring.values)};
}

std::pair<int64_t, int64_t> ExactKnnMemory::KeyShape(int64_t stream) const {
  auto found = streams_.find(stream);
  if (found == streams_.end()) return {0, 0};
  return {found->second.keys.size(0), found->second.keys.size(2)};
}

int64_t ExactKnnMemory::added(int64_t stream) const {
  auto found = streams_.find(stream);
  return found == streams_.end() ? 0 : found->second.added;
}

at::Tensor ExactKnnMemory::Ring::SlotIds(int64_t capacity) const {
  const at::Tensor slots = at::arange(count, keys.options().dtype(at::kLong));
  // Not wrapped: slot s holds entry s. Full: the oldest (id added - capacity)
  // sits at `next`.
  if (count < capacity) return slots;
  return (slots - next).remainder(capacity) + (added - capacity);
}

void ExactKnnMemory::clear(int64_t stream) { streams_.erase(stream); }

int64_t ExactKnnMemory::size(int64_t stream) const {
  auto found = streams_.find(stream);
  return found == streams_.end() ? 0 : found->second.count;
}

std::pair<at::Tensor, at::Tensor> ExactKnnMemory::Contents(int64_t stream) const {
  auto found = streams_.find(stream);
  if (found == streams_.end() || found->second.count == 0) return {};
  const Ring& ring = found->second;
  if (ring.count < options_.capacity()) {
    return {ring.keys.slice(1, 0, ring.count), ring.values.slice(1, 0, ring.count)};
  }
  // Full: the oldest entry sits at `next`.
  return {at::roll(ring.keys, -ring.next, 1), at::roll(ring.values, -ring.next, 1)};
}

absl::StatusOr<std::map<std::string, at::Tensor>> ExactKnnMemory::SaveState() const {
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

absl::Status ExactKnnMemory::LoadState(const std::map<std::string, at::Tensor>& state) {
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
      return absl::InvalidArgumentError(
          absl::StrCat("ExactKnnMemory::LoadState: unexpected entry '", name, "'"));
    }
    Saved& entry = saved[stream];
    (field == "keys" ? entry.keys : field == "values" ? entry.values : entry.added) = tensor;
  }
  // Built aside and swapped in at the end: a state that does not fit leaves
  // this memory unchanged.
  ExactKnnMemory staging(options_);
  for (const auto& [stream, entry] : saved) {
    if (!entry.keys.defined() || !entry.values.defined() || !entry.added.defined() ||
        entry.keys.dim() != 3 || entry.values.dim() != 3 ||
        entry.keys.size(1) != entry.values.size(1) || entry.added.numel() != 1 ||
        entry.added.item<int64_t>() < entry.keys.size(1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ExactKnnMemory::LoadState(stream ", stream, "): keys ", Shape(entry.keys), ", values ",
          Shape(entry.values), " and the added count do not form a saved stream"));
    }
    // An empty ring positioned so that the entries land where insertion
    // continuing from the saved ids puts them (slot = id mod capacity).
    MEMTRAIN_RETURN_IF_ERROR(
        staging.add(stream, entry.keys.narrow(1, 0, 0), entry.values.narrow(1, 0, 0)));
    Ring& ring = staging.streams_.at(stream);
    ring.added = entry.added.item<int64_t>() - entry.keys.size(1);
    ring.next = ring.added % options_.capacity();
    MEMTRAIN_RETURN_IF_ERROR(staging.add(stream, entry.keys, entry.values));
  }
  streams_ = std::move(staging.streams_);
  return absl::OkStatus();
}

}  // namespace memtrain::memory
