#include "memory/sharded_knn_memory.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace memtrain::memory {
namespace {

constexpr int64_t kRequestFields = 7;  // Request's fields in the exchanged header

// The merged top-k of one requester's queries: every shard's candidates
// ordered by score descending, then insertion id ascending.
struct Merged {
  at::Tensor scores;    // [G, q, k'] float64
  at::Tensor ids;       // [G, q, k'] int64
  at::Tensor shard;     // [G, q, k'] int64: the rank holding each winner
  at::Tensor position;  // [G, q, k'] int64: its index among that shard's candidates
};

// Merge on a GPU: every shard's candidates concatenated, stably sorted by id
// and then by score.
Merged MergeBySorting(const std::vector<at::Tensor>& candidates, int64_t k) {
  std::vector<at::Tensor> shard, position;
  for (size_t x = 0; x < candidates.size(); ++x) {
    const int64_t count = candidates[x].size(2);
    const auto options = candidates[x].options().dtype(at::kLong);
    shard.push_back(at::full({count}, static_cast<int64_t>(x), options));
    position.push_back(at::arange(count, options));
  }
  const at::Tensor all = at::cat(candidates, 2);
  const at::Tensor scores = all.select(-1, 0), ids = all.select(-1, 1).to(at::kLong);
  const at::Tensor by_id = std::get<1>(ids.sort(/*stable=*/true, -1, /*descending=*/false));
  const at::Tensor by_score =
      std::get<1>(scores.gather(-1, by_id).sort(/*stable=*/true, -1, /*descending=*/true));
  const at::Tensor order = by_id.gather(-1, by_score).narrow(-1, 0, std::min(k, all.size(2)));
  const auto expand = [&](const std::vector<at::Tensor>& parts) {
    return at::cat(parts).expand_as(ids).gather(-1, order);
  };
  return Merged{scores.gather(-1, order), ids.gather(-1, order), expand(shard), expand(position)};
}

// `candidates[x]`: shard x's [G, q, k'_x, 2] (score, id), each its own top-k'_x
// in the KnnMemory order (best first, equal scores oldest first; a shard's
// global ids grow with its own). On the CPU the lists are merged row by row,
// taking the best head each time: the same order as MergeBySorting's two
// stable sorts, at a fraction of their cost (they were half the sharded
// search's overhead at 8K entries a shard, docs/BENCHMARKS.md).
Merged Merge(const std::vector<at::Tensor>& candidates, int64_t k) {
  if (!candidates.front().is_cpu()) return MergeBySorting(candidates, k);
  const int64_t shards = static_cast<int64_t>(candidates.size());
  const int64_t groups = candidates.front().size(0), queries = candidates.front().size(1);
  const int64_t rows = groups * queries;
  std::vector<at::Tensor> lists;
  std::vector<const double*> data;
  std::vector<int64_t> counts;
  int64_t total = 0;
  for (const at::Tensor& list : candidates) {
    lists.push_back(list.to(at::kDouble).contiguous());
    data.push_back(lists.back().data_ptr<double>());
    counts.push_back(list.size(2));
    total += list.size(2);
  }
  const int64_t kept = std::min(k, total);
  const auto options = at::TensorOptions().dtype(at::kLong);
  Merged merged{
      at::empty({groups, queries, kept}, at::kDouble), at::empty({groups, queries, kept}, options),
      at::empty({groups, queries, kept}, options), at::empty({groups, queries, kept}, options)};
  double* scores = merged.scores.data_ptr<double>();
  int64_t* ids = merged.ids.data_ptr<int64_t>();
  int64_t* shard = merged.shard.data_ptr<int64_t>();
  int64_t* position = merged.position.data_ptr<int64_t>();
  at::parallel_for(0, rows, /*grain_size=*/64, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> head(static_cast<size_t>(shards));
    for (int64_t row = begin; row < end; ++row) {
      std::fill(head.begin(), head.end(), 0);
      for (int64_t out = row * kept; out < (row + 1) * kept; ++out) {
        int64_t best = -1;
        double best_score = 0, best_id = 0;
        for (int64_t x = 0; x < shards; ++x) {
          const int64_t h = head[static_cast<size_t>(x)];
          if (h == counts[static_cast<size_t>(x)]) continue;
          const double* entry = data[static_cast<size_t>(x)] + (row * counts[x] + h) * 2;
          if (best < 0 || ComesFirst(entry[0], entry[1], best_score, best_id)) {
            best = x;
            best_score = entry[0];
            best_id = entry[1];
          }
        }
        scores[out] = best_score;
        ids[out] = static_cast<int64_t>(best_id);
        shard[out] = best;
        position[out] = head[static_cast<size_t>(best)]++;
      }
    }
  });
  return merged;
}

}  // namespace

ShardedKnnMemory::ShardedKnnMemory(parallel::Communicator& group, std::unique_ptr<KnnMemory> shard,
                                   int64_t shard_capacity)
    : group_(group), shard_(std::move(shard)), shard_capacity_(shard_capacity) {
  TORCH_CHECK(shard_ != nullptr, "ShardedKnnMemory: needs a shard");
  TORCH_CHECK(shard_capacity >= 1, "ShardedKnnMemory: shard_capacity must be >= 1, got ",
              shard_capacity);
}

int64_t ShardedKnnMemory::ShardSize(int rank, int64_t total) const {
  const int64_t ranks = group_.size();
  // Insertion ids rank, rank + R, ... below `total`; the newest capacity stay.
  return std::min(shard_capacity_, total > rank ? (total - rank + ranks - 1) / ranks : 0);
}

int64_t ShardedKnnMemory::size(int64_t stream) const {
  auto found = totals_.find(stream);
  if (found == totals_.end()) return 0;
  int64_t count = 0;
  for (int rank = 0; rank < group_.size(); ++rank) count += ShardSize(rank, found->second);
  return count;
}

void ShardedKnnMemory::clear(int64_t stream) {
  shard_->clear(stream);
  totals_.erase(stream);
  shapes_.erase(stream);
  pending_clears_.push_back(stream);
}

absl::StatusOr<std::vector<ShardedKnnMemory::Request>> ShardedKnnMemory::Exchange(
    const Request& mine, const char* operation) const {
  std::vector<int64_t> header = {mine.valid,   mine.stream,    mine.groups, mine.rows,
                                 mine.key_dim, mine.value_dim, mine.k};
  header.insert(header.end(), pending_clears_.begin(), pending_clears_.end());
  auto gathered = group_.allgatherv(at::tensor(header, at::kLong));
  if (!gathered.ok()) return gathered.status();
  pending_clears_.clear();

  std::vector<Request> requests;
  for (const at::Tensor& received : *gathered) {
    const at::Tensor fields = received.to(at::kCPU).contiguous();
    const int64_t* f = fields.data_ptr<int64_t>();
    requests.push_back(Request{f[0] != 0, f[1], f[2], f[3], f[4], f[5], f[6]});
    // Clears come before this call's operation, in rank order.
    for (int64_t i = kRequestFields; i < fields.numel(); ++i) {
      shard_->clear(f[i]);
      totals_.erase(f[i]);
      shapes_.erase(f[i]);
    }
  }

  // The same verdict on every rank: all ranks see the same requests. Each
  // rank whose own request is bad is told why (kInvalidArgument); the others
  // hear of the first bad rank (kAborted).
  std::unordered_map<int64_t, StreamShape> shapes = shapes_;
  const bool adding = std::string(operation) == "add";
  std::string first_problem, my_problem;
  for (size_t r = 0; r < requests.size(); ++r) {
    const Request& request = requests[r];
    std::string problem;
    if (!request.valid) {
      problem = adding ? "keys must be [G, n, dk] and values [G, n, dv]"
                       : "needs queries [G, q, dk] and k >= 1";
    } else {
      const StreamShape shape = {request.groups, request.key_dim, adding ? request.value_dim : -1};
      auto known = shapes.find(request.stream);
      if (known != shapes.end() && (known->second[0] != shape[0] || known->second[1] != shape[1] ||
                                    (adding && known->second[2] != shape[2]))) {
        problem = absl::StrCat("G = ", shape[0], ", dk = ", shape[1],
                               adding ? absl::StrCat(", dv = ", shape[2]) : "",
                               " do not match the stream's G = ", known->second[0],
                               ", dk = ", known->second[1], ", dv = ", known->second[2]);
      } else if (adding) {
        shapes.emplace(request.stream, shape);
      }
    }
    if (problem.empty()) continue;
    const std::string what =
        absl::StrCat("ShardedKnnMemory::", operation, "(stream ", request.stream, ") on rank ", r,
                     " of group '", group_.name(), "': ", problem, "; nothing changed");
    if (first_problem.empty()) first_problem = what;
    if (static_cast<int>(r) == group_.rank()) my_problem = what;
  }
  if (!my_problem.empty()) return absl::InvalidArgumentError(my_problem);
  if (!first_problem.empty()) return absl::AbortedError(first_problem);
  return requests;
}

absl::Status ShardedKnnMemory::add(int64_t stream, const at::Tensor& keys,
                                   const at::Tensor& values) {
  at::NoGradGuard no_grad;  // the memory is never part of a graph
  Request mine;
  mine.stream = stream;
  mine.valid = keys.defined() && values.defined() && keys.dim() == 3 && values.dim() == 3 &&
               keys.size(0) == values.size(0) && keys.size(1) == values.size(1);
  at::Tensor entries = at::zeros({0}, at::kFloat);
  if (mine.valid) {
    mine.groups = keys.size(0);
    mine.rows = keys.size(1);
    mine.key_dim = keys.size(2);
    mine.value_dim = values.size(2);
    // [n, G, dk + dv]: entry-major, so a rank's share is a row selection.
    entries = at::cat({keys.detach().to(at::kFloat), values.detach().to(at::kFloat)}, 2)
                  .transpose(0, 1)
                  .contiguous()
                  .view(-1);
  }
  auto requests = Exchange(mine, "add");
  if (!requests.ok()) return requests.status();
  auto gathered = group_.allgatherv(entries);
  if (!gathered.ok()) return gathered.status();

  const int64_t ranks = group_.size(), me = group_.rank();
  for (size_t r = 0; r < requests->size(); ++r) {
    const Request& request = (*requests)[r];
    int64_t& total = totals_[request.stream];
    shapes_[request.stream] = {request.groups, request.key_dim, request.value_dim};
    const at::Tensor ids = at::arange(total, total + request.rows, at::kLong);
    const at::Tensor kept = ids.remainder(ranks).eq(me).nonzero().view(-1);
    total += request.rows;
    if (kept.numel() == 0) continue;
    const at::Tensor share =
        (*gathered)[r]
            .view({request.rows, request.groups, request.key_dim + request.value_dim})
            .index_select(0, kept.to((*gathered)[r].device()))
            .transpose(0, 1);
    const absl::Status status = shard_->add(request.stream, share.narrow(2, 0, request.key_dim),
                                            share.narrow(2, request.key_dim, request.value_dim));
    if (!status.ok()) {
      return absl::InternalError(
          absl::StrCat("ShardedKnnMemory::add: the shard refused rank ", r,
                       "'s entries (the shards now disagree): ", status.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<KnnResult> ShardedKnnMemory::search(int64_t stream, const at::Tensor& queries,
                                                   int64_t k) const {
  at::NoGradGuard no_grad;
  Request mine;
  mine.stream = stream;
  mine.k = k;
  mine.valid = k >= 1 && queries.defined() && queries.dim() == 3;
  at::Tensor flat = at::zeros({0}, at::kFloat);
  if (mine.valid) {
    mine.groups = queries.size(0);
    mine.rows = queries.size(1);
    mine.key_dim = queries.size(2);
    flat = queries.detach().to(at::kFloat).contiguous().view(-1);
  }
  auto requests = Exchange(mine, "search");
  if (!requests.ok()) return requests.status();
  auto gathered = group_.allgatherv(flat);
  if (!gathered.ok()) return gathered.status();

  // This shard's candidates for every rank's queries: (score, global id).
  const int ranks = group_.size(), me = group_.rank();
  std::vector<KnnResult> found;
  std::vector<at::Tensor> candidates;
  for (int r = 0; r < ranks; ++r) {
    const Request& request = (*requests)[static_cast<size_t>(r)];
    auto hits = shard_->search(
        request.stream,
        (*gathered)[static_cast<size_t>(r)].view({request.groups, request.rows, request.key_dim}),
        request.k);
    if (!hits.ok()) return hits.status();
    const at::Tensor ids = hits->ids * ranks + me;  // shard-local -> stream insertion id
    candidates.push_back(
        at::stack({hits->scores.to(at::kDouble), ids.to(hits->scores.device(), at::kDouble)}, -1)
            .view(-1));
    found.push_back(*std::move(hits));
  }
  auto all_candidates = group_.allgatherv(at::cat(candidates));
  if (!all_candidates.ok()) return all_candidates.status();

  // Every rank merges for every rank, so each shard knows which of its
  // candidates won. Shard x sent, per requester, min(k, its size) candidates.
  std::vector<Merged> merged;
  std::vector<int64_t> offsets(static_cast<size_t>(ranks), 0);
  for (int r = 0; r < ranks; ++r) {
    const Request& request = (*requests)[static_cast<size_t>(r)];
    auto total = totals_.find(request.stream);
    std::vector<at::Tensor> per_shard;
    for (int x = 0; x < ranks; ++x) {
      const int64_t count =
          std::min(request.k, total == totals_.end() ? 0 : ShardSize(x, total->second));
      const int64_t numel = request.groups * request.rows * count * 2;
      per_shard.push_back((*all_candidates)[static_cast<size_t>(x)]
                              .narrow(0, offsets[static_cast<size_t>(x)], numel)
                              .view({request.groups, request.rows, count, 2}));
      offsets[static_cast<size_t>(x)] += numel;
    }
    merged.push_back(Merge(per_shard, request.k));
  }

  // This shard's winners, requester by requester, in [G, q, k'] order.
  std::vector<at::Tensor> winners;
  for (int r = 0; r < ranks; ++r) {
    const Merged& m = merged[static_cast<size_t>(r)];
    const KnnResult& hits = found[static_cast<size_t>(r)];
    const at::Tensor where = m.shard.eq(me).nonzero();  // [w, 3]: g, query, rank in merge
    const at::Tensor entries = at::cat({hits.keys.to(at::kFloat), hits.values.to(at::kFloat)}, -1);
    const at::Tensor position = m.position.masked_select(m.shard.eq(me));
    winners.push_back(
        entries.index({where.select(1, 0), where.select(1, 1), position}).reshape(-1));
  }
  auto all_winners = group_.allgatherv(at::cat(winners));
  if (!all_winners.ok()) return all_winners.status();

  // Assemble this rank's answer from every shard's winners.
  const Request& request = (*requests)[static_cast<size_t>(me)];
  const Merged& m = merged[static_cast<size_t>(me)];
  auto shape = shapes_.find(stream);
  const int64_t value_dim = shape == shapes_.end() ? 0 : shape->second[2];
  const int64_t width = request.key_dim + value_dim;
  at::Tensor out = at::zeros({request.groups, request.rows, m.ids.size(2), width}, flat.options());
  // won[r][x]: how many of requester r's results shard x holds. Counted on
  // the device for every pair at once and copied to the host once (not one
  // synchronizing .item() per pair, which on a GPU stalls the stream each time).
  const at::Tensor shard_ids = at::arange(ranks, merged.front().shard.options());
  std::vector<at::Tensor> won_by_requester;
  for (int r = 0; r <= me; ++r) {
    won_by_requester.push_back(
        merged[static_cast<size_t>(r)].shard.reshape({-1, 1}).eq(shard_ids).sum(0));
  }
  const at::Tensor won = at::stack(won_by_requester).to(at::kCPU, at::kLong);  // [me + 1, ranks]
  const auto won_at = won.accessor<int64_t, 2>();
  for (int x = 0; x < ranks; ++x) {
    int64_t skip = 0;  // entries shard x sent to requesters before this rank
    for (int r = 0; r < me; ++r) skip += won_at[r][x];
    const int64_t count = won_at[me][x];
    out.index_put_({m.shard.eq(x)}, (*all_winners)[static_cast<size_t>(x)]
                                        .narrow(0, skip * width, count * width)
                                        .view({count, width}));
  }
  return KnnResult{out.narrow(-1, 0, request.key_dim), out.narrow(-1, request.key_dim, value_dim),
                   m.scores.to(at::kFloat), m.ids};
}

// Archive layout: "rank", "ranks", "shard_capacity" (0-dim int64), "streams"
// [S, 5] int64 (stream, total, G, dk, dv), and "shard" (the shard's own).
absl::StatusOr<std::map<std::string, at::Tensor>> ShardedKnnMemory::SaveState() const {
  MEMTRAIN_ASSIGN_OR_RETURN(const auto shard, shard_->SaveState());
  std::map<std::string, at::Tensor> state;
  for (const auto& [name, tensor] : shard) state["shard." + name] = tensor;
  state["rank"] = at::scalar_tensor(static_cast<int64_t>(group_.rank()), at::kLong);
  state["ranks"] = at::scalar_tensor(static_cast<int64_t>(group_.size()), at::kLong);
  state["shard_capacity"] = at::scalar_tensor(shard_capacity_, at::kLong);
  // In stream order, so that equal memories save equal states.
  const std::map<int64_t, int64_t> totals(totals_.begin(), totals_.end());
  std::vector<int64_t> streams;
  for (const auto& [stream, total] : totals) {
    const StreamShape& shape = shapes_.at(stream);
    streams.insert(streams.end(), {stream, total, shape[0], shape[1], shape[2]});
  }
  state["streams"] = at::tensor(streams, at::kLong).view({-1, 5});
  return state;
}

absl::Status ShardedKnnMemory::LoadState(const std::map<std::string, at::Tensor>& state) {
  auto scalar = [&](const std::string& name) -> int64_t {
    auto found = state.find(name);
    return found == state.end() || found->second.numel() != 1 ? -1 : found->second.item<int64_t>();
  };
  if (scalar("rank") != group_.rank() || scalar("ranks") != group_.size() ||
      scalar("shard_capacity") != shard_capacity_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ShardedKnnMemory: the state is rank ", scalar("rank"), " of ", scalar("ranks"),
        " with shard capacity ", scalar("shard_capacity"), "; this memory is rank ", group_.rank(),
        " of ", group_.size(), " with shard capacity ", shard_capacity_));
  }
  auto streams = state.find("streams");
  if (streams == state.end() || streams->second.dim() != 2 || streams->second.size(1) != 5 ||
      streams->second.scalar_type() != at::kLong) {
    return absl::InvalidArgumentError("ShardedKnnMemory: malformed `streams` in the state");
  }
  std::map<std::string, at::Tensor> shard;
  for (const auto& [name, tensor] : state) {
    if (name.rfind("shard.", 0) == 0) shard[name.substr(6)] = tensor;
  }
  MEMTRAIN_RETURN_IF_ERROR(shard_->LoadState(shard));  // the last step that may fail
  totals_.clear();
  shapes_.clear();
  pending_clears_.clear();
  const at::Tensor rows = streams->second.contiguous();
  for (int64_t i = 0; i < rows.size(0); ++i) {
    const int64_t* row = rows[i].data_ptr<int64_t>();
    totals_[row[0]] = row[1];
    shapes_[row[0]] = {row[2], row[3], row[4]};
  }
  return absl::OkStatus();
}

}  // namespace memtrain::memory
