#include "parallel/gradient_reducer.h"

#include <ATen/ATen.h>
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <glog/logging.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <tuple>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/enum_names.h"
#include "common/status_macros.h"

namespace memtrain::parallel {
namespace {

constexpr uint64_t kFnvOffsetBasis = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

// FNV-1a: stable across processes and builds, unlike absl::Hash, which is
// seeded per process.
uint64_t Fnv1a(const void* data, size_t size, uint64_t hash = kFnvOffsetBasis) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * kFnvPrime;
  return hash;
}

// The device of the reducer's own metadata tensors: the communicator only
// accepts tensors on its device, and the model's tensors are there.
at::Device MetadataDevice(const NamedTensors& tensors) {
  return tensors.empty() ? at::Device(at::kCPU) : tensors.front().second.device();
}

// "name float32[4, 8]". The device is left out: ranks hold the same model on
// different GPUs.
std::string DescribeEntry(const std::string& name, const at::Tensor& tensor) {
  return absl::StrCat(name, " ", DescribeTensor(tensor));
}

absl::Status WithContext(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

// Collective. Returns the checksum of `lines`, the same on every rank, or
// kFailedPrecondition naming each rank whose lines differ from rank 0's and
// its first differing line. The lines themselves are exchanged only on a
// mismatch.
absl::StatusOr<uint64_t> VerifySameOnEveryRank(Communicator& comm,
                                               const std::vector<std::string>& lines,
                                               absl::string_view what, at::Device device) {
  const std::string text = absl::StrJoin(lines, "\n");
  const uint64_t checksum = Fnv1a(text.data(), text.size());
  at::Tensor local = at::empty({1}, at::kLong);
  std::memcpy(local.data_ptr<int64_t>(), &checksum, sizeof(checksum));
  MEMTRAIN_ASSIGN_OR_RETURN(at::Tensor gathered, comm.allgather(local.to(device)));
  gathered = gathered.cpu();
  const int64_t* checksums = gathered.data_ptr<int64_t>();
  if (std::all_of(checksums, checksums + comm.size(),
                  [&](int64_t c) { return c == checksums[0]; })) {
    return checksum;
  }

  at::Tensor bytes = at::empty({static_cast<int64_t>(text.size())}, at::kByte);
  std::memcpy(bytes.data_ptr<uint8_t>(), text.data(), text.size());
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<at::Tensor> texts, comm.allgatherv(bytes.to(device)));
  auto lines_of = [&](int rank) -> std::vector<std::string> {
    const at::Tensor t = texts[rank].cpu();
    const std::string s(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()), t.numel());
    return absl::StrSplit(s, '\n');
  };
  const std::vector<std::string> reference = lines_of(0);
  std::vector<std::string> differences;
  for (int rank = 1; rank < comm.size(); ++rank) {
    if (checksums[rank] == checksums[0]) continue;
    const std::vector<std::string> theirs = lines_of(rank);
    const auto [mine_it, theirs_it] =
        std::mismatch(reference.begin(), reference.end(), theirs.begin(), theirs.end());
    const auto describe = [](const auto& it, const auto& end) {
      return it == end ? std::string("nothing") : absl::StrCat("'", *it, "'");
    };
    differences.push_back(absl::StrCat("rank ", rank, " has ", describe(theirs_it, theirs.end()),
                                       " where rank 0 has ", describe(mine_it, reference.end()),
                                       " (entry ", mine_it - reference.begin(), ")"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("[reducer] ", what, " differs across ranks: ", absl::StrJoin(differences, "; "),
                   ". Every rank must build the same model (same configuration and code) before "
                   "data-parallel training."));
}

absl::Status ValidateParameters(const NamedTensors& parameters) {
  if (parameters.empty()) {
    return absl::InvalidArgumentError("[reducer] no trainable parameters to reduce");
  }
  std::map<const c10::TensorImpl*, std::string> seen;
  for (const auto& [name, tensor] : parameters) {
    if (!tensor.defined() || !tensor.requires_grad() || !tensor.is_leaf()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "[reducer] parameter '", name,
          "' must be a defined leaf tensor with requires_grad; pass only trainable parameters"));
    }
    if (tensor.is_sparse()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "[reducer] parameter '", name, "' is sparse; sparse gradients are not supported"));
    }
    const auto [it, inserted] = seen.emplace(tensor.unsafeGetTensorImpl(), name);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          "[reducer] parameters '", it->second, "' and '", name,
          "' are the same tensor (shared weights); pass it once so its gradient is reduced once"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOptions(const GradientReducerOptions& options) {
  if (options.bucket_bytes <= 0 || options.first_bucket_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("[reducer] bucket_bytes (", options.bucket_bytes, ") and first_bucket_bytes (",
                     options.first_bucket_bytes, ") must be positive"));
  }
  if (options.op != ReduceOp::kAvg && options.op != ReduceOp::kSum) {
    return absl::InvalidArgumentError(
        absl::StrCat("[reducer] op must be avg or sum, not ", ReduceOpName(options.op)));
  }
  return absl::OkStatus();
}

// Parameter indices per bucket, in reduction order. Walking in registration
// order, each (dtype, device) fills its own bucket until it reaches the cap;
// the first bucket of each group uses the smaller cap. Buckets are then
// ordered by their first parameter and everything is reversed, as in DDP, so
// the last-registered parameters (whose gradients come first) are reduced
// first and the small bucket last.
std::vector<std::vector<int>> AssignBuckets(const NamedTensors& parameters,
                                            const GradientReducerOptions& options) {
  struct Open {
    std::vector<int> parameters;
    int64_t bytes = 0;
    bool first = true;
  };
  std::map<std::tuple<c10::ScalarType, c10::DeviceType, c10::DeviceIndex>, Open> open;
  std::vector<std::vector<int>> closed;
  for (int i = 0; i < static_cast<int>(parameters.size()); ++i) {
    const at::Tensor& tensor = parameters[i].second;
    Open& bucket = open[{tensor.scalar_type(), tensor.device().type(), tensor.device().index()}];
    bucket.parameters.push_back(i);
    bucket.bytes += tensor.numel() * tensor.element_size();
    if (bucket.bytes >= (bucket.first ? options.first_bucket_bytes : options.bucket_bytes)) {
      closed.push_back(std::move(bucket.parameters));
      bucket = Open{{}, 0, false};
    }
  }
  for (auto& [key, bucket] : open) {
    if (!bucket.parameters.empty()) closed.push_back(std::move(bucket.parameters));
  }
  std::sort(closed.begin(), closed.end(),
            [](const auto& a, const auto& b) { return a.front() < b.front(); });
  std::reverse(closed.begin(), closed.end());
  for (auto& bucket : closed) std::reverse(bucket.begin(), bucket.end());
  return closed;
}

std::vector<std::string> DescribePlan(const std::vector<std::vector<int>>& assignment,
                                      const NamedTensors& parameters) {
  std::vector<std::string> lines;
  for (size_t b = 0; b < assignment.size(); ++b) {
    for (int i : assignment[b]) {
      lines.push_back(absl::StrCat("bucket ", b, ": ",
                                   DescribeEntry(parameters[i].first, parameters[i].second)));
    }
  }
  return lines;
}

}  // namespace

namespace {
const EnumNames<UnusedParameters>& UnusedParametersTable() {
  static const auto* names = new EnumNames<UnusedParameters>(
      "policy for unused parameters",
      {{UnusedParameters::kError, "error"}, {UnusedParameters::kZeroFill, "zero"}});
  return *names;
}
}  // namespace

std::vector<std::string> UnusedParametersNames() { return UnusedParametersTable().names(); }

bool AbslParseFlag(absl::string_view text, UnusedParameters* value, std::string* error) {
  return UnusedParametersTable().Parse(text, value, error);
}

std::string AbslUnparseFlag(UnusedParameters value) { return UnusedParametersTable().Name(value); }

absl::StatusOr<ModuleFingerprint> BroadcastModule(Communicator& comm, torch::nn::Module& module) {
  NamedTensors tensors;
  for (const auto& item : module.named_parameters()) tensors.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers()) tensors.emplace_back(item.key(), item.value());
  std::vector<std::string> structure;
  for (const auto& [name, tensor] : tensors) structure.push_back(DescribeEntry(name, tensor));

  ModuleFingerprint fingerprint;
  MEMTRAIN_ASSIGN_OR_RETURN(
      fingerprint.structure,
      VerifySameOnEveryRank(comm, structure, "model structure (parameters and buffers)",
                            MetadataDevice(tensors)));
  at::NoGradGuard no_grad;
  uint64_t values = kFnvOffsetBasis;
  for (auto& [name, tensor] : tensors) {
    // One collective per tensor: this runs once per job, and parameters are
    // few compared with the bytes they hold.
    at::Tensor contiguous = tensor.contiguous();
    absl::Status status = comm.broadcast(contiguous, /*root=*/0);
    if (!status.ok()) {
      return WithContext(status, absl::StrCat("[reducer] broadcasting '", name, "'"));
    }
    if (!contiguous.is_same(tensor)) tensor.copy_(contiguous);
    const at::Tensor host = contiguous.cpu();
    values = Fnv1a(host.data_ptr(), host.nbytes(), values);
  }
  fingerprint.values = values;
  return fingerprint;
}

// Note [Which autograd hook]
// A tensor hook (param.register_hook) runs with the incoming gradient before
// it is added to param.grad(), so under NoSync the reducer would see only the
// last micro-batch and would have to redo the accumulation itself. The
// tensor's post-accumulate-grad slot (impl::set_post_acc_grad_hooks) holds a
// single hook reserved for Python's register_post_accumulate_grad_hook. A post
// hook on the parameter's AccumulateGrad node runs after param.grad() holds
// the accumulated sum, coexists with other hooks, and is what c10d's Reducer
// uses; its removal key lets the destructor take it off again.
class GradientReducer::GradientReadyHook final : public torch::autograd::FunctionPostHook {
 public:
  GradientReadyHook(GradientReducer* reducer, int index) : reducer_(reducer), index_(index) {}

  torch::autograd::variable_list operator()(
      const torch::autograd::variable_list& outputs,
      const torch::autograd::variable_list& /*inputs*/) override {
    reducer_->OnGradientAccumulated(index_);
    return outputs;
  }

 private:
  GradientReducer* const reducer_;
  const int index_;
};

absl::StatusOr<std::unique_ptr<GradientReducer>> GradientReducer::Create(
    Communicator& world, const torch::nn::Module& module, GradientReducerOptions options) {
  NamedTensors parameters;
  for (const auto& item : module.named_parameters()) {
    if (item.value().requires_grad()) parameters.emplace_back(item.key(), item.value());
  }
  return Create(world, std::move(parameters), options);
}

absl::StatusOr<std::unique_ptr<GradientReducer>> GradientReducer::Create(
    Communicator& world, NamedTensors parameters, GradientReducerOptions options) {
  MEMTRAIN_RETURN_IF_ERROR(ValidateOptions(options));
  MEMTRAIN_RETURN_IF_ERROR(ValidateParameters(parameters));
  const std::vector<std::vector<int>> assignment = AssignBuckets(parameters, options);
  MEMTRAIN_RETURN_IF_ERROR(VerifySameOnEveryRank(world, DescribePlan(assignment, parameters),
                                                 "gradient bucket plan", MetadataDevice(parameters))
                               .status());
  std::vector<Bucket> buckets;
  for (const std::vector<int>& members : assignment) {
    Bucket bucket;
    int64_t numel = 0;
    for (int i : members) {
      bucket.parameters.push_back(i);
      bucket.offsets.push_back(numel);
      numel += parameters[i].second.numel();
    }
    bucket.contents =
        at::empty({numel}, parameters[members.front()].second.options().requires_grad(false));
    buckets.push_back(std::move(bucket));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<Communicator> comm, world.split(/*color=*/0));
  LOG_IF(INFO, world.rank() == 0) << "[reducer] rank 0: " << parameters.size() << " parameters in "
                                  << buckets.size() << " buckets, reduced on group '"
                                  << comm->name() << "'";
  return absl::WrapUnique(
      new GradientReducer(std::move(parameters), options, std::move(buckets), std::move(comm)));
}

// ---- GPU ordering ------------------------------------------------------------
// Device-generic c10 streams and events, so this compiles (and is a no-op:
// device_ordering_ is null) in CPU-only builds too.

class GradientReducer::DeviceOrdering {
 public:
  DeviceOrdering(c10::Device device, int jobs)
      : device_(device),
        impl_(device.type()),
        comm_stream_(impl_.getStreamFromGlobalPool(device)),
        backward_end_(device.type(), c10::EventFlag::BACKEND_DEFAULT),
        comm_start_(device.type(), c10::EventFlag::BACKEND_DEFAULT),
        comm_end_(device.type(), c10::EventFlag::BACKEND_DEFAULT) {
    for (int i = 0; i < jobs; ++i) ready_.emplace_back(device.type());
  }

  // The thread that completed job `slot`'s inputs (autograd's or the
  // trainer's), on its current stream.
  void MarkReady(int slot) { ready_[slot].record(impl_.getStream(device_)); }
  void MarkBackwardEnd() { backward_end_.record(impl_.getStream(device_)); }
  // Communication thread, around one collective.
  c10::Stream BeforeCollective(int slot) {
    ready_[slot].block(comm_stream_);
    if (!comm_started_) comm_start_.record(comm_stream_);
    comm_started_ = true;
    return comm_stream_;
  }
  void AfterCollective() { comm_end_.record(comm_stream_); }
  // The caller's stream waits for the communication; fills the device times.
  // After every job of the step was issued.
  void FinishStep(ReducerStats& stats) {
    comm_end_.block(impl_.getStream(device_));
    if (!comm_started_) return;
    comm_started_ = false;
    comm_end_.synchronize();  // the step's gradients are needed next anyway
    const double span_ms = comm_start_.elapsedTime(comm_end_);
    const double exposed_ms = std::max(0.0, backward_end_.elapsedTime(comm_end_));
    stats.allreduce = absl::Milliseconds(span_ms);
    stats.exposed = absl::Milliseconds(exposed_ms);
    stats.overlap_fraction = span_ms <= 0 ? 1.0 : std::clamp(1.0 - exposed_ms / span_ms, 0.0, 1.0);
  }

 private:
  const c10::Device device_;
  const c10::impl::VirtualGuardImpl impl_;
  const c10::Stream comm_stream_;
  std::vector<c10::Event> ready_;  // per job: buckets, then the used flags
  c10::Event backward_end_, comm_start_, comm_end_;
  bool comm_started_ = false;  // communication thread during a step; FinishStep after it
};

GradientReducer::GradientReducer(NamedTensors parameters, GradientReducerOptions options,
                                 std::vector<Bucket> buckets, std::unique_ptr<Communicator> comm)
    : parameters_(std::move(parameters)),
      options_(options),
      buckets_(std::move(buckets)),
      bucket_of_(parameters_.size()),
      slot_of_(parameters_.size()),
      ready_(parameters_.size()),
      used_since_sync_(parameters_.size()),
      pending_in_bucket_(buckets_.size()),
      used_counts_(at::empty({static_cast<int64_t>(parameters_.size())},
                             at::TensorOptions(at::kInt).device(MetadataDevice(parameters_)))),
      comm_(std::move(comm)) {
  for (size_t b = 0; b < buckets_.size(); ++b) {
    std::vector<std::string>& names = bucket_plan_.emplace_back();
    for (size_t slot = 0; slot < buckets_[b].parameters.size(); ++slot) {
      const int i = buckets_[b].parameters[slot];
      bucket_of_[i] = static_cast<int>(b);
      slot_of_[i] = static_cast<int>(slot);
      names.push_back(parameters_[i].first);
    }
  }
  const c10::Device device = MetadataDevice(parameters_);
  if (device.is_cuda()) {
    device_ordering_ =
        std::make_unique<DeviceOrdering>(device, static_cast<int>(buckets_.size()) + 1);
  }
  ResetStep();
  for (size_t i = 0; i < parameters_.size(); ++i) {
    NodePointer accumulator = torch::autograd::impl::grad_accumulator(parameters_[i].second);
    hook_keys_.push_back(
        accumulator->add_post_hook(std::make_unique<GradientReadyHook>(this, static_cast<int>(i))));
    grad_accumulators_.push_back(std::move(accumulator));
  }
  comm_thread_ = std::thread([this] { CommunicationLoop(); });
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < grad_accumulators_.size(); ++i) {
    grad_accumulators_[i]->del_post_hook(hook_keys_[i]);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  comm_thread_.join();
}

GradientReducer::NoSync::NoSync(GradientReducer& reducer) : reducer_(reducer) {
  reducer_.sync_ = false;
}

GradientReducer::NoSync::~NoSync() { reducer_.sync_ = true; }

void GradientReducer::OnGradientAccumulated(int index) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!sync_) {
    used_since_sync_[index] = true;
    return;
  }
  const absl::Time now = absl::Now();
  if (first_hook_ == absl::InfinitePast()) first_hook_ = now;
  last_hook_ = now;
  if (ready_[index]) {
    // Its bucket may already be on the wire; the second gradient is dropped
    // and the step fails in FinishBackward, after the collectives.
    if (hook_error_.ok()) {
      hook_error_ = absl::FailedPreconditionError(absl::StrCat(
          "[reducer] the gradient of '", parameters_[index].first,
          "' was accumulated twice before FinishBackward. Call FinishBackward after every "
          "synchronized backward, or run the earlier backward passes under "
          "GradientReducer::NoSync; a parameter reached twice by one backward (reentrant "
          "backward, activation checkpointing) is not supported."));
    }
    return;
  }
  ready_[index] = true;
  CopyIntoBucket(index, /*zeros=*/false);
  --pending_in_bucket_[bucket_of_[index]];
  LaunchReadyBucketsLocked();
}

at::Tensor GradientReducer::SlotOf(int index) const {
  const Bucket& bucket = buckets_[bucket_of_[index]];
  const at::Tensor& parameter = parameters_[index].second;
  return bucket.contents.narrow(0, bucket.offsets[slot_of_[index]], parameter.numel())
      .view(parameter.sizes());
}

void GradientReducer::CopyIntoBucket(int index, bool zeros) {
  const at::Tensor& parameter = parameters_[index].second;
  at::Tensor slot = SlotOf(index);
  if (zeros || !parameter.grad().defined()) {
    slot.zero_();
  } else {
    slot.copy_(parameter.grad());
  }
}

void GradientReducer::LaunchReadyBucketsLocked() {
  const int launched_before = next_bucket_to_launch_;
  while (next_bucket_to_launch_ < static_cast<int>(buckets_.size()) &&
         pending_in_bucket_[next_bucket_to_launch_] == 0) {
    if (device_ordering_) device_ordering_->MarkReady(next_bucket_to_launch_);
    jobs_.push_back(next_bucket_to_launch_++);
  }
  if (next_bucket_to_launch_ != launched_before) cv_.notify_all();
}

void GradientReducer::CommunicationLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    const int job = jobs_.front();
    jobs_.pop_front();
    at::Tensor tensor = job == kUsedFlagsJob ? used_counts_ : buckets_[job].contents;
    const ReduceOp op = job == kUsedFlagsJob ? ReduceOp::kSum : options_.op;
    const bool skip = !comm_error_.ok();
    lock.unlock();
    absl::Status status;
    absl::Duration took;
    if (!skip) {
      const absl::Time start = absl::Now();
      // An exception must not end this thread (std::terminate); it reaches
      // the trainer as the step's status instead.
      try {
        c10::OptionalDeviceGuard device(tensor.device());
        c10::OptionalStreamGuard stream;
        if (device_ordering_) {
          stream.reset_stream(device_ordering_->BeforeCollective(
              job == kUsedFlagsJob ? static_cast<int>(buckets_.size()) : job));
        }
        status = comm_->allreduce(tensor, op);
        if (device_ordering_) device_ordering_->AfterCollective();
      } catch (const std::exception& e) {
        status = absl::InternalError(e.what());
      }
      took = absl::Now() - start;
    }
    lock.lock();
    if (!skip) {
      allreduce_time_ += took;
      bytes_reduced_ += tensor.nbytes();
      if (!status.ok()) {
        comm_error_ = WithContext(
            status, job == kUsedFlagsJob ? std::string("[reducer] all-reducing the used flags")
                                         : absl::StrCat("[reducer] all-reducing bucket ", job));
      }
    }
    ++jobs_done_;
    cv_.notify_all();
  }
}

absl::Status GradientReducer::FinishBackward() {
  if (!sync_) return absl::OkStatus();
  const absl::Time backward_end = absl::Now();
  if (device_ordering_) device_ordering_->MarkBackwardEnd();
  {
    std::unique_lock<std::mutex> lock(mu_);
    at::Tensor used = at::empty({static_cast<int64_t>(parameters_.size())}, at::kInt);
    int32_t* used_flags = used.data_ptr<int32_t>();
    for (size_t i = 0; i < parameters_.size(); ++i) {
      used_flags[i] = ready_[i] || used_since_sync_[i];
      if (ready_[i]) continue;
      // Gradients accumulated under NoSync whose hook did not fire again in
      // this backward still count; a parameter unused here contributes zeros.
      CopyIntoBucket(static_cast<int>(i), /*zeros=*/!used_since_sync_[i]);
      --pending_in_bucket_[bucket_of_[i]];
    }
    used_counts_.copy_(used);
    LaunchReadyBucketsLocked();
    if (device_ordering_) device_ordering_->MarkReady(static_cast<int>(buckets_.size()));
    jobs_.push_back(kUsedFlagsJob);
    cv_.notify_all();
    const int all_jobs = static_cast<int>(buckets_.size()) + 1;
    cv_.wait(lock, [&] { return jobs_done_ == all_jobs; });
  }
  const absl::Time communication_end = absl::Now();

  stats_.backward =
      first_hook_ == absl::InfinitePast() ? absl::ZeroDuration() : last_hook_ - first_hook_;
  stats_.allreduce = allreduce_time_;
  stats_.exposed = communication_end - backward_end;
  stats_.overlap_fraction =
      allreduce_time_ <= absl::ZeroDuration()
          ? 1.0
          : std::clamp(1.0 - absl::FDivDuration(stats_.exposed, allreduce_time_), 0.0, 1.0);
  stats_.bytes = bytes_reduced_;
  stats_.buckets = static_cast<int>(buckets_.size());
  if (device_ordering_) device_ordering_->FinishStep(stats_);

  absl::Status status = comm_error_;
  if (status.ok()) status = hook_error_;
  if (status.ok()) status = ApplyReducedGradients();
  ResetStep();
  return status;
}

absl::Status GradientReducer::ApplyReducedGradients() {
  const at::Tensor counts = used_counts_.cpu();
  std::vector<std::string> unused;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (counts.data_ptr<int32_t>()[i] == 0) unused.push_back(parameters_[i].first);
  }
  if (!unused.empty() && options_.unused_parameters == UnusedParameters::kError) {
    return absl::FailedPreconditionError(absl::StrCat(
        "[reducer] no rank computed a gradient for these parameters in this step: ",
        absl::StrJoin(unused, ", "),
        ". Either the forward pass does not use them (remove them from the model, set "
        "requires_grad=false, or construct the reducer with UnusedParameters::kZeroFill), or "
        "FinishBackward was called without a backward pass."));
  }
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    at::Tensor parameter = parameters_[i].second;
    // A globally unused parameter's slot holds zeros on every rank.
    const at::Tensor reduced = SlotOf(static_cast<int>(i));
    if (parameter.grad().defined()) {
      parameter.mutable_grad().copy_(reduced);
    } else {
      parameter.mutable_grad() = reduced.clone();
    }
  }
  return absl::OkStatus();
}

void GradientReducer::ResetStep() {
  std::lock_guard<std::mutex> lock(mu_);
  std::fill(ready_.begin(), ready_.end(), false);
  std::fill(used_since_sync_.begin(), used_since_sync_.end(), false);
  for (size_t b = 0; b < buckets_.size(); ++b) {
    pending_in_bucket_[b] = static_cast<int>(buckets_[b].parameters.size());
  }
  next_bucket_to_launch_ = 0;
  first_hook_ = absl::InfinitePast();
  last_hook_ = absl::InfinitePast();
  hook_error_ = absl::OkStatus();
  jobs_done_ = 0;
  comm_error_ = absl::OkStatus();
  allreduce_time_ = absl::ZeroDuration();
  bytes_reduced_ = 0;
}

}  // namespace memtrain::parallel
