#include "memory/faiss_knn_memory.h"

#include <ATen/ATen.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/MetaIndexes.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace memtrain::memory {

FaissKnnMemory::FaissKnnMemory(const FaissKnnMemoryOptions& options)
    : options_(options),
      entries_(
          ExactKnnMemoryOptions(options.capacity()).storage_dtype(at::kFloat).coarse_pass(false)) {}

FaissKnnMemory::~FaissKnnMemory() = default;

std::unique_ptr<faiss::Index> FaissKnnMemory::NewIndex(int64_t dim) const {
  faiss::Index* inner = nullptr;
  if (options_.kind() == FaissIndexKind::kFlat) {
    inner = new faiss::IndexFlatIP(static_cast<int>(dim));
  } else {
    auto* hnsw = new faiss::IndexHNSWFlat(static_cast<int>(dim), options_.hnsw_neighbors(),
                                          faiss::METRIC_INNER_PRODUCT);
    hnsw->hnsw.efConstruction = options_.hnsw_ef_construction();
    inner = hnsw;
  }
  // Labels are insertion ids; the map owns the inner index.
  auto map = std::make_unique<faiss::IndexIDMap>(inner);
  map->own_fields = true;
  return map;
}

absl::Status FaissKnnMemory::add(int64_t stream, const at::Tensor& keys, const at::Tensor& values) {
  // Stored on the CPU, where FAISS searches.
  return entries_.add(stream, keys.defined() ? keys.to(at::kCPU) : keys,
                      values.defined() ? values.to(at::kCPU) : values);
}

void FaissKnnMemory::clear(int64_t stream) {
  entries_.clear(stream);
  indexes_.erase(stream);
}

void FaissKnnMemory::Update(int64_t stream, StreamIndex& index) const {
  const int64_t added = entries_.added(stream), first = added - entries_.size(stream);
  if (index.first_id < first || index.groups.empty()) {  // evicted entries: rebuild
    index.groups.clear();
    index.first_id = index.next_id = first;
  }
  if (index.next_id == added) return;
  const int64_t count = added - index.next_id;
  const at::Tensor ids = at::arange(index.next_id, added, at::kLong);
  const int64_t groups = entries_.KeyShape(stream).first;
  const at::Tensor keys =
      entries_.EntriesById(stream, ids.view({1, 1, count}).expand({groups, 1, count})).first;
  for (int64_t g = 0; g < groups; ++g) {
    if (static_cast<size_t>(g) == index.groups.size())
      index.groups.push_back(NewIndex(keys.size(3)));
    const at::Tensor group = keys[g][0].contiguous();
    index.groups[static_cast<size_t>(g)]->add_with_ids(count, group.data_ptr<float>(),
                                                       ids.data_ptr<int64_t>());
  }
  index.next_id = added;
}

absl::StatusOr<KnnResult> FaissKnnMemory::search(int64_t stream, const at::Tensor& queries,
                                                 int64_t k) const {
  if (entries_.size(stream) == 0 || k < 1 || !queries.defined() || queries.dim() != 3) {
    return entries_.search(stream, queries, k);  // the empty answer or the argument error
  }
  at::NoGradGuard no_grad;
  if (entries_.KeyShape(stream) != std::make_pair(queries.size(0), queries.size(2))) {
    return entries_.search(stream, queries, k);  // the shape error
  }
  StreamIndex& index = indexes_[stream];
  Update(stream, index);
  const int64_t groups = queries.size(0), count = queries.size(1);
  const int64_t hits = std::min(k, entries_.size(stream));
  const at::Tensor q = queries.detach().to(at::kCPU, at::kFloat).contiguous();
  at::Tensor scores = at::empty({groups, count, hits}, at::kFloat);
  at::Tensor ids = at::empty({groups, count, hits}, at::kLong);
  for (int64_t g = 0; g < groups; ++g) {
    faiss::Index& group = *index.groups[static_cast<size_t>(g)];
    if (auto* map = dynamic_cast<faiss::IndexIDMap*>(&group)) {
      if (auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(map->index)) {
        hnsw->hnsw.efSearch = std::max<int>(options_.hnsw_ef_search(), static_cast<int>(hits));
      }
    }
    group.search(count, q[g].data_ptr<float>(), hits, scores[g].data_ptr<float>(),
                 reinterpret_cast<faiss::Index::idx_t*>(ids[g].data_ptr<int64_t>()));
  }
  if (ids.lt(0).any().item<bool>()) {
    return absl::InternalError(absl::StrCat("FaissKnnMemory::search(stream ", stream,
                                            "): the index found fewer than ", hits,
                                            " neighbours; raise hnsw_ef_search"));
  }
  // Ties oldest first, as every KnnMemory.
  const at::Tensor by_id = std::get<1>(ids.sort(/*stable=*/true, -1, /*descending=*/false));
  const at::Tensor order = by_id.gather(
      -1, std::get<1>(scores.gather(-1, by_id).sort(/*stable=*/true, -1, /*descending=*/true)));
  scores = scores.gather(-1, order);
  ids = ids.gather(-1, order);
  auto [keys, values] = entries_.EntriesById(stream, ids);
  return KnnResult{keys, values, scores, ids};
}

absl::StatusOr<std::map<std::string, at::Tensor>> FaissKnnMemory::SaveState() const {
  return entries_.SaveState();
}

absl::Status FaissKnnMemory::LoadState(const std::map<std::string, at::Tensor>& state) {
  MEMTRAIN_RETURN_IF_ERROR(entries_.LoadState(state));
  indexes_.clear();
  return absl::OkStatus();
}

}  // namespace memtrain::memory
