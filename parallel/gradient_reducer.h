// File: parallel/gradient_reducer.h
//
// Data-parallel training over any Communicator, with PyTorch DDP's semantics:
//
//   - `BroadcastModule`: checks that every rank holds the same model structure
//     and copies rank 0's parameters and buffers to every rank.
//   - `GradientReducer`: averages (or sums) gradients across ranks during
//     backward, bucket by bucket, on a communication thread, so that
//     communication overlaps the rest of backward.
//
//   MEMTRAIN_ASSIGN_OR_RETURN(ModuleFingerprint start, BroadcastModule(*world, *model));
//   MEMTRAIN_ASSIGN_OR_RETURN(auto reducer, GradientReducer::Create(*world, *model, {}));
//   for (...) {
//     {
//       GradientReducer::NoSync no_sync(*reducer);   // accumulate k-1 micro-batches locally
//       for (int i = 0; i + 1 < k; ++i) Loss(micro_batch[i]).backward();
//     }
//     Loss(micro_batch[k - 1]).backward();           // buckets are reduced during this backward
//     MEMTRAIN_RETURN_IF_ERROR(reducer->FinishBackward());   // param.grad() = average over ranks
//     optimizer.step();
//     optimizer.zero_grad();
//   }
//
// Contract:
//   - Collective: `BroadcastModule`, `GradientReducer::Create` and every
//     synchronized backward + `FinishBackward` must be run by every rank of
//     the communicator, in the same order, with the same model structure.
//     Differences in structure or in the bucket plan are detected (checksums
//     all-gathered) and reported as kFailedPrecondition on every rank.
//   - Threads: the caller's thread (the trainer) constructs the reducer, runs
//     backward and calls FinishBackward; it keeps using `world` for its own
//     collectives. The autograd hooks run on whatever thread the autograd
//     engine uses (the caller's, for CPU tensors). The reducer's own thread
//     issues every gradient collective, on a communicator split from `world`
//     at construction, because a Communicator admits one calling thread at a
//     time. Buckets are all-reduced strictly in bucket-index order on every
//     rank, whatever order their gradients became ready in.
//   - Bucket plan: trainable parameters in reversed registration order
//     (gradients become ready roughly in reverse), one dtype and device per
//     bucket, each bucket up to `bucket_bytes`; the bucket holding the
//     first-registered parameters is capped at `first_bucket_bytes` because it
//     is reduced last, after backward, where its all-reduce cannot be hidden.
//     The plan is fixed at construction and identical on every rank (checked);
//     unlike DDP it is never rebuilt from the observed gradient order, so a
//     resumed run reduces in exactly the same messages (see docs/PARALLEL.md).
//   - Gradients: a parameter is "used" in a step if its gradient was
//     accumulated (its hook fired) during the synchronized backward or during
//     any backward under NoSync since the previous FinishBackward. A parameter
//     used on some ranks but not on this one contributes zeros here, so every
//     rank ends with the same average. A parameter used on no rank is an error
//     (UnusedParameters::kError: kFailedPrecondition naming the parameters,
//     gradients left untouched) or gets a zero gradient (kZeroFill). The
//     decision comes from an all-reduce of per-parameter "used" flags, so
//     every rank decides the same way.
//   - Errors: a gradient accumulated twice in one synchronized backward
//     (two backward passes before FinishBackward, outside NoSync) and a failed
//     collective are reported by FinishBackward, after it has still issued the
//     step's collectives, so the other ranks do not hang. Collective timeouts
//     abort the job (parallel/collective_watchdog.h).
//   - Devices: CPU tensors over MPI or Gloo (tested with 1, 2 and 4 ranks);
//     CUDA tensors over NCCL (parallel/world.h). On a GPU the communication
//     thread issues every collective on a communication stream of its own:
//     when a bucket is complete, the thread that filled it records an event on
//     its current (compute) stream, and the communication stream waits on
//     that event before the all-reduce, so backward's later kernels never
//     queue behind the network. FinishBackward makes the caller's current
//     stream wait for the communication stream before it writes param.grad().
//     ReducerStats then come from CUDA events (device time, not host
//     enqueue). The CUDA path has not been run here (no GPU); its test is
//     GradientReducerTest.*_CUDA, run by scripts/gpu-check.
#ifndef MEMTRAIN_PARALLEL_GRADIENT_REDUCER_H_
#define MEMTRAIN_PARALLEL_GRADIENT_REDUCER_H_

#include <ATen/core/Tensor.h>
// function.h declares autograd::Node in every torch 2.11-2.13 (2.12 moved it
// to node.h, which 2.11 lacks).
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/nn/module.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parallel/communicator.h"

namespace memtrain::parallel {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// What every rank agrees on after BroadcastModule.
struct ModuleFingerprint {
  /// 64-bit FNV-1a of "name dtype shape" of every parameter and buffer, in
  /// registration order. Equal on every rank (checked).
  uint64_t structure = 0;
  /// 64-bit FNV-1a of the bytes of every parameter and buffer after the
  /// broadcast: a cheap identity of the starting point for logs and checkpoints.
  uint64_t values = 0;
};

/// Collective. Checks that every rank's module has the same parameters and
/// buffers (names, dtypes, shapes, in order), then overwrites them with rank
/// 0's values. A structural difference returns kFailedPrecondition on every
/// rank, naming each differing rank and its first differing entry; nothing is
/// broadcast then.
absl::StatusOr<ModuleFingerprint> BroadcastModule(Communicator& comm, torch::nn::Module& module);

enum class UnusedParameters {
  /// FinishBackward fails with kFailedPrecondition naming the parameters.
  kError,
  /// Their gradient is set to zeros.
  kZeroFill,
};

/// "error" and "zero", the names of kError and kZeroFill.
std::vector<std::string> UnusedParametersNames();
/// Abseil flag and option-table conversions by those names.
bool AbslParseFlag(absl::string_view text, UnusedParameters* value, std::string* error);
std::string AbslUnparseFlag(UnusedParameters value);

struct GradientReducerOptions {
  /// Cap of every bucket but the one holding the first-registered parameters
  /// (DDP's bucket_cap_mb, 25 MiB). A parameter larger than the cap gets a
  /// bucket of its own.
  int64_t bucket_bytes = 25 << 20;
  /// Cap of the bucket holding the first-registered parameters, which is
  /// reduced last (DDP's kDefaultFirstBucketBytes, 1 MiB).
  int64_t first_bucket_bytes = 1 << 20;
  UnusedParameters unused_parameters = UnusedParameters::kError;
  /// kAvg (data parallelism with per-rank mean losses) or kSum.
  ReduceOp op = ReduceOp::kAvg;
};

/// Measurements of the last synchronized step, filled by FinishBackward. On
/// the CPU host clocks; on a GPU CUDA events on the device's streams.
struct ReducerStats {
  /// From the first gradient hook to the last one: backward's gradient phase.
  absl::Duration backward = absl::ZeroDuration();
  /// CPU: time the communication thread spent inside all-reduce calls. GPU:
  /// from the first bucket's start to the last one's end on the device.
  absl::Duration allreduce = absl::ZeroDuration();
  /// Time FinishBackward waited for communication after backward had ended:
  /// the communication that was not hidden behind backward.
  absl::Duration exposed = absl::ZeroDuration();
  /// 1 - exposed / allreduce, clamped to [0, 1]; 1 when nothing was reduced.
  double overlap_fraction = 1.0;
  /// Bytes all-reduced by this rank (bucket contents and "used" flags).
  int64_t bytes = 0;
  int buckets = 0;
};

class GradientReducer {
 public:
  /// Collective over `world`. `parameters` are the trainable parameters in
  /// registration order (leaf tensors with requires_grad); their names appear
  /// in the bucket plan and in errors. Fails with kInvalidArgument on bad
  /// options or parameters and kFailedPrecondition when ranks' plans differ.
  static absl::StatusOr<std::unique_ptr<GradientReducer>> Create(Communicator& world,
                                                                 NamedTensors parameters,
                                                                 GradientReducerOptions options);
  /// The module's parameters that require grad.
  static absl::StatusOr<std::unique_ptr<GradientReducer>> Create(Communicator& world,
                                                                 const torch::nn::Module& module,
                                                                 GradientReducerOptions options);
  /// Removes the hooks and stops the communication thread. Must not run
  /// during backward or FinishBackward.
  ~GradientReducer();

  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Parameter names per bucket, in the order buckets are reduced. The same on
  /// every rank; checkpoints record it.
  const std::vector<std::vector<std::string>>& bucket_plan() const { return bucket_plan_; }

  /// While alive, backward passes only accumulate gradients locally in
  /// param.grad() (the hooks record which parameters were used and nothing
  /// else), and FinishBackward returns OK without communicating. The next
  /// synchronized backward + FinishBackward reduces the accumulated sums, so
  /// k micro-batches with NoSync on the first k-1 give the average over ranks
  /// of each rank's sum over its micro-batches. Every rank must use NoSync
  /// for the same backward passes. Not nestable.
  class NoSync {
   public:
    explicit NoSync(GradientReducer& reducer);
    ~NoSync();
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    GradientReducer& reducer_;
  };

  /// Called after loss.backward(). Reduces the buckets whose gradients did not
  /// all arrive during backward, waits for every bucket, decides about unused
  /// parameters (see the contract), and writes the reduced gradients into
  /// param.grad(). Resets the reducer for the next step either way.
  absl::Status FinishBackward();

  /// Measurements of the last synchronized FinishBackward.
  const ReducerStats& stats() const { return stats_; }

 private:
  struct Bucket {
    std::vector<int> parameters;   // indices into parameters_, in packing order
    std::vector<int64_t> offsets;  // element offset of each parameter in `contents`
    at::Tensor contents;           // flat, the parameters' dtype and device
  };
  class GradientReadyHook;

  GradientReducer(NamedTensors parameters, GradientReducerOptions options,
                  std::vector<Bucket> buckets, std::unique_ptr<Communicator> comm);

  // Runs on the autograd thread after parameter `index`'s gradient has been
  // accumulated into param.grad().
  void OnGradientAccumulated(int index);
  // Parameter `index`'s view into its bucket, shaped like the parameter.
  at::Tensor SlotOf(int index) const;
  // Copies parameter `index`'s gradient (or zeros) into its bucket slot.
  void CopyIntoBucket(int index, bool zeros);
  // Requires mu_. Hands complete buckets to the communication thread, in order.
  void LaunchReadyBucketsLocked();
  void CommunicationLoop();
  absl::Status ApplyReducedGradients();
  void ResetStep();

  const NamedTensors parameters_;
  const GradientReducerOptions options_;
  const std::vector<Bucket> buckets_;
  std::vector<std::vector<std::string>> bucket_plan_;
  std::vector<int> bucket_of_;  // bucket index of each parameter
  std::vector<int> slot_of_;    // position of each parameter within its bucket
  // The autograd graph holds only weak references to a leaf's gradient
  // accumulator; holding strong ones keeps the node carrying our hook alive
  // across iterations (as c10d's Reducer does).
  // std::shared_ptr in torch 2.11, c10::intrusive_ptr from 2.12 on.
  using NodePointer =
      decltype(torch::autograd::impl::grad_accumulator(std::declval<const at::Tensor&>()));
  std::vector<NodePointer> grad_accumulators_;
  std::vector<uintptr_t> hook_keys_;

  // Written by NoSync (trainer thread, between backward passes); read by hooks.
  std::atomic<bool> sync_{true};

  // Guards the members from here to stopping_. Contended by the autograd thread (hooks), the
  // communication thread (job queue, completion) and the trainer thread
  // (FinishBackward).
  std::mutex mu_;
  std::condition_variable cv_;
  // Per-step state, reset by FinishBackward.
  std::vector<bool> ready_;             // gradient arrived in this synchronized backward
  std::vector<bool> used_since_sync_;   // gradient accumulated under NoSync since the last step
  std::vector<int> pending_in_bucket_;  // gradients not yet arrived, per bucket
  int next_bucket_to_launch_ = 0;
  absl::Time first_hook_ = absl::InfinitePast();
  absl::Time last_hook_ = absl::InfinitePast();
  absl::Status hook_error_;  // first misuse seen by a hook this step
  // Job queue of the communication thread: bucket indices, then kUsedFlagsJob.
  static constexpr int kUsedFlagsJob = -1;
  std::deque<int> jobs_;
  int jobs_done_ = 0;
  absl::Status comm_error_;  // first failed collective this step; later jobs are skipped
  absl::Duration allreduce_time_ = absl::ZeroDuration();
  int64_t bytes_reduced_ = 0;
  bool stopping_ = false;

  // Per-parameter "used" flags of this rank, then (after the all-reduce) the
  // number of ranks that used each parameter. Written by the trainer thread
  // before the job is queued, read back after it completes.
  at::Tensor used_counts_;
  ReducerStats stats_;
  // Only the communication thread calls into it after construction.
  const std::unique_ptr<Communicator> comm_;
  // Null on the CPU. On a GPU: the stream the collectives are issued on and
  // the events that order it after the gradients and the optimizer after it.
  class DeviceOrdering;
  std::unique_ptr<DeviceOrdering> device_ordering_;
  std::thread comm_thread_;
};

}  // namespace memtrain::parallel

#endif  // MEMTRAIN_PARALLEL_GRADIENT_REDUCER_H_
