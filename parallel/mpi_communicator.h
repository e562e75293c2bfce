// File: parallel/mpi_communicator.h
//
// `MpiCommunicator`: the Communicator for CPU tensors, over MPI. The gradient
// all-reduce of CPU training, and the bootstrap channel of NcclCommunicator.
//
//   MEMTRAIN_ASSIGN_OR_RETURN(auto runtime, MpiRuntime::Initialize(&argc, &argv));
//   MEMTRAIN_ASSIGN_OR_RETURN(auto world, runtime->CreateWorld(options));
//   MEMTRAIN_RETURN_IF_ERROR(world->allreduce(tensor, ReduceOp::kSum));
//
// Threading: MPI runs at MPI_THREAD_MULTIPLE because the collective watchdog
// thread talks to its peers on a private channel while a caller is blocked in
// a collective. The rule for callers: a given communicator is used by one
// thread at a time (checked; a concurrent second caller gets kInternal), and
// every rank issues the group's collectives in the same order. Different
// communicators may be used from different threads only if every rank orders
// those calls the same way (otherwise MPI may deadlock, as NCCL would).
//
// Collectives block the calling thread until complete; the tensor is read
// and written in place (MPI_IN_PLACE), so no extra copy is made. bfloat16 and
// float16 use MPI datatypes and reduction ops defined here (MPI has none),
// which accumulate each pairwise step in float32 and round to the tensor's
// dtype, as NCCL does.
#ifndef MEMTRAIN_PARALLEL_MPI_COMMUNICATOR_H_
#define MEMTRAIN_PARALLEL_MPI_COMMUNICATOR_H_

#include <mpi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "parallel/collective_watchdog.h"
#include "parallel/communicator.h"

namespace memtrain::parallel {

class MpiCommunicator final : public Communicator {
 public:
  /// Takes ownership of `comm` (freed by the destructor). `watchdog` must
  /// outlive the communicator. Collective over `comm`.
  static absl::StatusOr<std::unique_ptr<MpiCommunicator>> Adopt(MPI_Comm comm, std::string name,
                                                                CollectiveWatchdog* watchdog,
                                                                CommunicatorOptions options);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  int local_size() const override { return local_size_; }
  const std::string& name() const override { return name_; }
  uint64_t sequence_number() const override { return sequence_; }

  absl::Status allreduce(at::Tensor& tensor, ReduceOp op) override;
  absl::Status broadcast(at::Tensor& tensor, int root) override;
  absl::StatusOr<at::Tensor> allgather(const at::Tensor& tensor) override;
  absl::StatusOr<std::vector<at::Tensor>> allgatherv(const at::Tensor& tensor) override;
  absl::Status barrier() override;
  absl::StatusOr<std::unique_ptr<Communicator>> split(int color, int key) override;
  using Communicator::split;

  /// split() with the concrete type, for NcclCommunicator's bootstrap groups.
  absl::StatusOr<std::unique_ptr<MpiCommunicator>> SplitMpi(int color, int key);

  /// Runs `mpi_call` (which must issue exactly one collective on comm()) under
  /// this communicator's sequence numbering, thread check and watchdog. For
  /// callers that need a raw MPI collective, such as bench-allreduce's
  /// baseline and NcclCommunicator's bootstrap.
  absl::Status RunCollective(const std::string& collective, const std::string& tensors,
                             const std::function<int()>& mpi_call);

  MPI_Comm comm() const { return comm_; }
  /// World rank of each rank of this group.
  const std::vector<int>& world_ranks() const { return world_ranks_; }
  CollectiveWatchdog* watchdog() const { return watchdog_; }
  const CommunicatorOptions& options() const { return options_; }

 private:
  MpiCommunicator(MPI_Comm comm, std::string name, CollectiveWatchdog* watchdog,
                  CommunicatorOptions options);
  absl::Status Initialize();
  // With options_.verify_collectives: checks that every rank is making the
  // same call (`signature`); otherwise returns OK at no cost.
  absl::Status VerifyAgreement(const std::string& collective, const std::string& signature);

  MPI_Comm comm_;  // owned
  const std::string name_;
  CollectiveWatchdog* const watchdog_;  // [not null], not owned
  const CommunicatorOptions options_;
  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  std::vector<int> world_ranks_;
  uint64_t sequence_ = 0;            // collectives started; written by the one caller thread
  int splits_ = 0;                   // names child groups uniquely ("/split2(color=1)")
  std::atomic<bool> in_use_{false};  // enforces the one-thread-at-a-time rule
};

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_MPI_COMMUNICATOR_H_
