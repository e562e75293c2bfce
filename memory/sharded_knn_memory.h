// File: memory/sharded_knn_memory.h
//
// `ShardedKnnMemory`: a sharded KnnMemory (memory/knn_memory.h): its entries
// are partitioned across the ranks of a Communicator group, each rank's shard
// a memory of any backend, so its capacity grows linearly with the ranks
// (docs/KNN_MEMORY.md). The one part of memory/ that needs MPI: its own
// library, memtrain_memory_sharded, which model/ does not link.
//
//   ShardedKnnMemory memory(*group, std::make_unique<ExactKnnMemory>(
//                                       ExactKnnMemoryOptions(capacity_per_rank)),
//                           capacity_per_rank);
//   MEMTRAIN_RETURN_IF_ERROR(memory.add(stream, keys, values));        // collective
//   MEMTRAIN_ASSIGN_OR_RETURN(KnnResult hits, memory.search(stream, queries, 32));
//
// Collective: every rank of the group calls add and search in the same
// order. Each rank names its own stream and passes its own entries or
// queries (their counts may differ; G, dk and dv may not): a call is one
// operation per rank on the one memory that all ranks share. So with every
// rank naming stream 0 the group holds one shared memory (a knowledge base);
// with rank r naming its own streams each stream is a per-document memory
// spread over the group.
//
// Partition: an add all-gathers the entries; within a call the union of a
// stream's new entries is ordered by rank, then by position, and the stream's
// j-th entry since it was cleared (its insertion id, KnnResult::ids) lives on
// rank j mod R, in that rank's shard (a ring of `shard_capacity`). Round-robin
// rather than "each rank keeps what it adds": the shards fill evenly whatever
// each rank adds, and the newest `shard_capacity` entries of each residue are
// exactly the newest R x shard_capacity of the stream, so the memory holds,
// evicts and finds exactly what one ExactKnnMemory of capacity
// R x shard_capacity fed the same entries in that order would.
//
// Search: the queries are all-gathered, every rank searches its shard for
// every rank's queries, the (score, id) candidates are all-gathered and
// merged by score descending then id ascending (on every rank, so all agree
// on the winners), and each shard sends the keys and values of its winners.
// Four collectives; the entries themselves cross the network only as winners.
//
// clear(stream) is local and lazy: it takes effect on this rank at once and
// on the others with the next collective call (clears are applied before
// that call's adds and searches).
//
// Transport and results are float32 (entries, queries) whatever the shard
// stores. Bad arguments on any rank fail the call on every rank, leaving the
// memory unchanged: each rank whose own arguments were bad gets
// kInvalidArgument, the others kAborted naming the first bad rank.
#ifndef MEMTRAIN_MEMORY_SHARDED_KNN_MEMORY_H_
#define MEMTRAIN_MEMORY_SHARDED_KNN_MEMORY_H_

#include <array>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "memory/knn_memory.h"
#include "parallel/communicator.h"

namespace memtrain::memory {

class ShardedKnnMemory final : public KnnMemory {
 public:
  /// `group` must outlive the memory. `shard` holds this rank's entries: an
  /// empty KnnMemory whose capacity per stream is `shard_capacity` (an
  /// ExactKnnMemory, or a FAISS one for approximate search).
  ShardedKnnMemory(parallel::Communicator& group, std::unique_ptr<KnnMemory> shard,
                   int64_t shard_capacity);

  absl::Status add(int64_t stream, const at::Tensor& keys, const at::Tensor& values) override;
  absl::StatusOr<KnnResult> search(int64_t stream, const at::Tensor& queries,
                                   int64_t k) const override;
  void clear(int64_t stream) override;
  /// Entries of `stream` over all ranks, as of this rank's last collective
  /// call (and its own clears since).
  int64_t size(int64_t stream) const override;
  /// This rank's shard plus the stream counters every rank shares; each rank
  /// writes its own file (e.g. memory.rank3.pt). LoadState refuses a state
  /// written by another rank, group size or shard capacity. Not collective.
  absl::StatusOr<std::map<std::string, at::Tensor>> SaveState() const override;
  absl::Status LoadState(const std::map<std::string, at::Tensor>& state) override;

  /// Total capacity per stream: shard_capacity x ranks.
  int64_t capacity() const { return shard_capacity_ * group_.size(); }

 private:
  // What one rank asks for in one collective call.
  struct Request {
    bool valid = true;
    int64_t stream = 0, groups = 0, rows = 0, key_dim = 0, value_dim = 0, k = 0;
  };
  // The fixed shape of a stream: groups, key_dim, value_dim.
  using StreamShape = std::array<int64_t, 3>;

  // Exchanges every rank's request and pending clears, applies the clears,
  // and checks every request against the streams' shapes (the same verdict
  // on every rank). Returns the requests in rank order.
  absl::StatusOr<std::vector<Request>> Exchange(const Request& mine, const char* operation) const;
  // Entries of a stream that holds `total` on `rank`'s shard.
  int64_t ShardSize(int rank, int64_t total) const;

  parallel::Communicator& group_;
  // mutable: search is a collective call that also delivers other ranks'
  // clears, which must be applied before it searches.
  mutable std::unique_ptr<KnnMemory> shard_;
  const int64_t shard_capacity_;
  mutable std::unordered_map<int64_t, int64_t> totals_;  // entries added since clear, all ranks
  mutable std::unordered_map<int64_t, StreamShape> shapes_;
  mutable std::vector<int64_t> pending_clears_;  // this rank's, not yet sent
};

}  // namespace memtrain::memory

#endif  // MEMTRAIN_MEMORY_SHARDED_KNN_MEMORY_H_
