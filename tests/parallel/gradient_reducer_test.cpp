// GradientReducer and BroadcastModule, run under mpirun with 1, 2 and 4 ranks.
// Expected gradients come from outside the reducer: either each rank's local
// gradient computed on a hook-free clone of the model and all-gathered, or a
// closed formula of the rank (losses linear in the parameters). Tensors are
// float64 so averages agree to rounding.
#include "parallel/gradient_reducer.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "parallel/mpi_communicator.h"
#include "tests/mpi_test_support.h"

namespace memtrain::parallel {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Linear(4, hidden) - tanh - Linear(hidden, 8) - tanh - Linear(8, 3), float64,
// initialized from `seed`. Parameter names: 0.weight 0.bias 2.weight ...
torch::nn::Sequential Mlp(uint64_t seed, int64_t hidden = 8) {
  torch::manual_seed(seed);
  torch::nn::Sequential model(torch::nn::Linear(4, hidden), torch::nn::Tanh(),
                              torch::nn::Linear(hidden, 8), torch::nn::Tanh(),
                              torch::nn::Linear(8, 3));
  model->to(at::kDouble);
  return model;
}

// This rank's batch for micro-batch `step`: different on every rank and step.
at::Tensor Batch(int rank, int step, int64_t rows = 5, int64_t width = 4) {
  at::Generator generator = at::detail::createCPUGenerator(1000 * rank + step);
  return at::randn({rows, width}, generator, at::kDouble);
}

at::Tensor Loss(torch::nn::Sequential& model, const at::Tensor& batch) {
  return model->forward(batch).pow(2).mean();
}

// param.grad() of every parameter, flattened and concatenated.
at::Tensor FlatGradients(const torch::nn::Module& module) {
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : module.parameters()) grads.push_back(p.grad().reshape(-1));
  return at::cat(grads);
}

// The gradient this rank computes alone over `steps` micro-batches, on a clone
// that carries no reducer hooks.
at::Tensor LocalGradient(const torch::nn::Sequential& model, int rank, int steps) {
  torch::nn::Sequential clone(std::dynamic_pointer_cast<torch::nn::SequentialImpl>(model->clone()));
  clone->zero_grad();
  for (int step = 0; step < steps; ++step) Loss(clone, Batch(rank, step)).backward();
  return FlatGradients(*clone);
}

// Mean (or sum) over ranks of every rank's `local`, gathered by the
// communicator rather than the reducer.
at::Tensor CombineAcrossRanks(Communicator& world, const at::Tensor& local, ReduceOp op) {
  auto gathered = world.allgather(local);
  TORCH_INTERNAL_ASSERT(gathered.ok(), gathered.status().ToString());
  return op == ReduceOp::kSum ? gathered->sum(0) : gathered->mean(0);
}

void ExpectClose(const at::Tensor& got, const at::Tensor& expected) {
  ASSERT_EQ(got.sizes(), expected.sizes());
  EXPECT_TRUE(at::allclose(got, expected, /*rtol=*/1e-10, /*atol=*/1e-12))
      << "max |difference| " << (got - expected).abs().max().item<double>();
}

std::string Joined(const std::vector<std::vector<std::string>>& plan) {
  std::vector<std::string> buckets;
  for (const auto& names : plan) buckets.push_back(absl::StrJoin(names, ","));
  return absl::StrJoin(buckets, "|");
}

GradientReducerOptions OneBucketPerParameter() {
  GradientReducerOptions options;
  options.bucket_bytes = options.first_bucket_bytes = 1;
  return options;
}

TEST(BroadcastModuleTest, EveryRankEndsWithRankZerosParametersAndBuffers) {
  auto world = testing::NewWorld();
  const int rank = world->rank();
  torch::nn::Sequential model = Mlp(/*seed=*/100 + rank);
  model->push_back(torch::nn::BatchNorm1d(3));
  model->to(at::kDouble);
  // Buffers differ by rank too; rank 0's running_mean is 0.
  for (auto& buffer : model->named_buffers()) {
    if (buffer.key() == "5.running_mean") buffer.value().fill_(rank);
  }

  auto fingerprint = BroadcastModule(*world, *model);
  ASSERT_TRUE(fingerprint.ok()) << fingerprint.status();

  torch::nn::Sequential rank_zero = Mlp(/*seed=*/100);
  const auto expected = rank_zero->named_parameters();
  for (const auto& p : model->named_parameters()) {
    if (!expected.contains(p.key())) continue;  // the batch norm's, identical at construction
    EXPECT_TRUE(at::equal(p.value(), expected[p.key()])) << p.key();
  }
  EXPECT_TRUE(at::equal(model->named_buffers()["5.running_mean"], at::zeros({3}, at::kDouble)));
  EXPECT_FALSE(model->named_parameters()["0.weight"].grad().defined());
  EXPECT_TRUE(model->named_parameters()["0.weight"].requires_grad());

  at::Tensor mine = at::empty({2}, at::kLong);
  mine[0] = static_cast<int64_t>(fingerprint->structure);
  mine[1] = static_cast<int64_t>(fingerprint->values);
  auto all = world->allgather(mine);
  ASSERT_TRUE(all.ok());
  for (int r = 0; r < world->size(); ++r) EXPECT_TRUE(at::equal((*all)[r], mine)) << "rank " << r;
}

TEST(BroadcastModuleTest, StructureMismatchNamesTheRankAndTheParameter) {
  auto world = testing::NewWorld();
  if (world->size() == 1) GTEST_SKIP() << "needs 2+ ranks for a mismatch";
  const int odd_rank = world->size() - 1;
  torch::nn::Sequential model = Mlp(/*seed=*/1, /*hidden=*/world->rank() == odd_rank ? 9 : 8);
  const at::Tensor before = model->named_parameters()["4.weight"].clone();

  auto fingerprint = BroadcastModule(*world, *model);
  ASSERT_FALSE(fingerprint.ok());
  EXPECT_EQ(fingerprint.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(fingerprint.status().message(),
              HasSubstr("rank " + std::to_string(odd_rank) +
                        " has '0.weight float64[9, 4]' where rank 0 has '0.weight float64[8, 4]'"));
  if (world->size() > 2) {
    EXPECT_THAT(fingerprint.status().message(), Not(HasSubstr("rank 1 ")));
  }
  // Nothing was broadcast.
  EXPECT_TRUE(at::equal(model->named_parameters()["4.weight"], before));
}

struct StepResult {
  at::Tensor gradient;
  std::vector<std::vector<std::string>> plan;
  ReducerStats stats;
};

// Two synchronized steps of the Mlp on rank-specific data; checks each step's
// gradient against the all-gathered local gradients and returns the last.
StepResult TrainTwoSteps(GradientReducerOptions options) {
  auto world = testing::NewWorld();
  torch::nn::Sequential model = Mlp(/*seed=*/7);
  auto reducer = GradientReducer::Create(*world, *model, options);
  TORCH_INTERNAL_ASSERT(reducer.ok(), reducer.status().ToString());
  StepResult result;
  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    model->zero_grad();
    const at::Tensor local = LocalGradient(model, world->rank(), 1);
    const at::Tensor expected = CombineAcrossRanks(*world, local, options.op);
    Loss(model, Batch(world->rank(), 0)).backward();
    const absl::Status status = (*reducer)->FinishBackward();
    EXPECT_TRUE(status.ok()) << status;
    result.gradient = FlatGradients(*model);
    ExpectClose(result.gradient, expected);
    // The reducer did something: ranks' data differ, so their local gradients do.
    if (world->size() > 1) {
      EXPECT_FALSE(at::allclose(result.gradient, local));
    }
    // The next step trains on moved parameters.
    torch::NoGradGuard no_grad;
    for (at::Tensor& p : model->parameters()) p.sub_(0.1 * p.grad());
  }
  result.plan = (*reducer)->bucket_plan();
  result.stats = (*reducer)->stats();
  return result;
}

TEST(GradientReducerTest, ReducedGradientIsTheAverageOfLocalGradients) {
  const StepResult one_bucket = TrainTwoSteps({});
  EXPECT_EQ(one_bucket.plan.size(), 1u);
}

TEST(GradientReducerTest, SumOpGivesTheSumOfLocalGradients) {
  GradientReducerOptions options;
  options.op = ReduceOp::kSum;
  TrainTwoSteps(options);
}

TEST(GradientReducerTest, ManyBucketsGiveTheSameGradientsAsOne) {
  const StepResult one_bucket = TrainTwoSteps({});
  const StepResult many_buckets = TrainTwoSteps(OneBucketPerParameter());
  EXPECT_EQ(many_buckets.plan.size(), 6u);  // one per parameter
  EXPECT_EQ(many_buckets.stats.buckets, 6);
  ExpectClose(many_buckets.gradient, one_bucket.gradient);
}

TEST(GradientReducerTest, BucketPlanIsReversedCappedAndTheSameOnEveryRank) {
  auto world = testing::NewWorld();
  torch::nn::Sequential model = Mlp(/*seed=*/world->rank());
  // float64 bytes: 0.weight 256, 0.bias 64, 2.weight 512, 2.bias 64,
  // 4.weight 192, 4.bias 24. In registration order the first bucket closes at
  // 320 >= 300, the next at 768 >= 600; then everything is reversed.
  GradientReducerOptions options;
  options.first_bucket_bytes = 300;
  options.bucket_bytes = 600;
  auto reducer = GradientReducer::Create(*world, *model, options);
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  const auto& plan = (*reducer)->bucket_plan();
  EXPECT_THAT(plan,
              ElementsAre(ElementsAre("4.bias"), ElementsAre("4.weight", "2.bias", "2.weight"),
                          ElementsAre("0.bias", "0.weight")));

  const std::string mine = Joined(plan);
  at::Tensor bytes =
      at::from_blob(const_cast<char*>(mine.data()), {static_cast<int64_t>(mine.size())}, at::kByte)
          .clone();
  auto all = world->allgatherv(bytes);
  ASSERT_TRUE(all.ok());
  for (int r = 0; r < world->size(); ++r) EXPECT_TRUE(at::equal((*all)[r], bytes)) << "rank " << r;
}

TEST(GradientReducerTest, BucketsHoldOneDtypeEach) {
  auto world = testing::NewWorld();
  auto param = [](c10::ScalarType dtype) { return at::zeros({2}, dtype).requires_grad_(); };
  NamedTensors parameters = {{"a", param(at::kFloat)},
                             {"b", param(at::kDouble)},
                             {"c", param(at::kFloat)},
                             {"d", param(at::kDouble)}};
  auto reducer = GradientReducer::Create(*world, parameters, {});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  EXPECT_THAT((*reducer)->bucket_plan(), ElementsAre(ElementsAre("d", "b"), ElementsAre("c", "a")));
}

TEST(GradientReducerTest, DifferentPlansAcrossRanksAreRefused) {
  auto world = testing::NewWorld();
  if (world->size() == 1) GTEST_SKIP() << "needs 2+ ranks for a mismatch";
  torch::nn::Sequential model = Mlp(/*seed=*/1);
  const GradientReducerOptions options =
      world->rank() == 1 ? OneBucketPerParameter() : GradientReducerOptions{};
  auto reducer = GradientReducer::Create(*world, *model, options);
  ASSERT_FALSE(reducer.ok());
  EXPECT_EQ(reducer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(reducer.status().message(), HasSubstr("gradient bucket plan differs"));
  EXPECT_THAT(reducer.status().message(), HasSubstr("rank 1 has 'bucket 1: 4.weight"));
}

TEST(GradientReducerTest, NoSyncAccumulatesLocallyThenReducesTheSum) {
  auto world = testing::NewWorld();
  torch::nn::Sequential model = Mlp(/*seed=*/3);
  auto reducer = GradientReducer::Create(*world, *model, {});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  const at::Tensor local_first = LocalGradient(model, world->rank(), 1);
  const at::Tensor local_sum = LocalGradient(model, world->rank(), 2);
  {
    GradientReducer::NoSync no_sync(**reducer);
    Loss(model, Batch(world->rank(), 0)).backward();
    ASSERT_TRUE((*reducer)->FinishBackward().ok());  // a no-op under NoSync
  }
  // Nothing was communicated: the gradient is still this rank's own.
  ExpectClose(FlatGradients(*model), local_first);
  Loss(model, Batch(world->rank(), 1)).backward();
  const absl::Status status = (*reducer)->FinishBackward();
  ASSERT_TRUE(status.ok()) << status;
  ExpectClose(FlatGradients(*model), CombineAcrossRanks(*world, local_sum, ReduceOp::kAvg));
}

// Parameters whose losses are linear, so expected gradients are formulas of
// the rank: loss = sum(w * (rank + 1)) (+ terms per test).
struct LinearParameters {
  at::Tensor w = at::zeros({3}, at::kDouble).requires_grad_();
  at::Tensor v = at::zeros({2}, at::kDouble).requires_grad_();
  NamedTensors named() const { return {{"w", w}, {"v", v}}; }
  at::Tensor WLoss(int rank) const { return (w * (rank + 1.0)).sum(); }
};

// Average over ranks of rank + 1.
double MeanRankPlusOne(int size) { return (size + 1) / 2.0; }

TEST(GradientReducerTest, ParameterUnusedEverywhereIsAnErrorNamingIt) {
  auto world = testing::NewWorld();
  LinearParameters params;
  auto reducer = GradientReducer::Create(*world, params.named(), {});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  params.WLoss(world->rank()).backward();
  const absl::Status status = (*reducer)->FinishBackward();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(),
              HasSubstr("no rank computed a gradient for these parameters in this step: v."));
  EXPECT_FALSE(params.v.grad().defined());

  // The failed step left no state behind: a step using both succeeds.
  params.w.mutable_grad().reset();
  (params.WLoss(world->rank()) + params.v.sum()).backward();
  EXPECT_TRUE((*reducer)->FinishBackward().ok());
}

TEST(GradientReducerTest, ParameterUnusedEverywhereIsZeroFilledOnRequest) {
  auto world = testing::NewWorld();
  LinearParameters params;
  params.v.mutable_grad() = at::full({2}, 5.0, at::kDouble);  // stale, from an earlier step
  GradientReducerOptions options = OneBucketPerParameter();
  options.unused_parameters = UnusedParameters::kZeroFill;
  auto reducer = GradientReducer::Create(*world, params.named(), options);
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  // v's bucket gets no hook, so it is reduced only in FinishBackward, and w's
  // bucket, though complete during backward, has to wait for it.
  ASSERT_THAT((*reducer)->bucket_plan(), ElementsAre(ElementsAre("v"), ElementsAre("w")));
  params.WLoss(world->rank()).backward();
  const absl::Status status = (*reducer)->FinishBackward();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(at::equal(params.v.grad(), at::zeros({2}, at::kDouble)));
  ExpectClose(params.w.grad(), at::full({3}, MeanRankPlusOne(world->size()), at::kDouble));
}

TEST(GradientReducerTest, ParameterUsedOnlyOnRankZeroIsAveragedEverywhere) {
  auto world = testing::NewWorld();
  LinearParameters params;
  auto reducer = GradientReducer::Create(*world, params.named(), OneBucketPerParameter());
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  at::Tensor loss = params.WLoss(world->rank());
  if (world->rank() == 0) loss = loss + (params.v * 10.0).sum();
  loss.backward();
  const absl::Status status = (*reducer)->FinishBackward();
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_TRUE(params.v.grad().defined());
  ExpectClose(params.v.grad(), at::full({2}, 10.0 / world->size(), at::kDouble));
  ExpectClose(params.w.grad(), at::full({3}, MeanRankPlusOne(world->size()), at::kDouble));
}

TEST(GradientReducerTest, ParameterUsedOnlyUnderNoSyncIsStillReduced) {
  auto world = testing::NewWorld();
  LinearParameters params;
  auto reducer = GradientReducer::Create(*world, params.named(), {});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  {
    GradientReducer::NoSync no_sync(**reducer);
    (params.WLoss(world->rank()) + (params.v * (world->rank() + 1.0)).sum()).backward();
  }
  params.WLoss(world->rank()).backward();  // v's hook does not fire in the synchronized pass
  const absl::Status status = (*reducer)->FinishBackward();
  ASSERT_TRUE(status.ok()) << status;
  ExpectClose(params.v.grad(), at::full({2}, MeanRankPlusOne(world->size()), at::kDouble));
  ExpectClose(params.w.grad(), at::full({3}, 2 * MeanRankPlusOne(world->size()), at::kDouble));
}

TEST(GradientReducerTest, TwoBackwardPassesWithoutFinishAreRefused) {
  auto world = testing::NewWorld();
  LinearParameters params;
  auto reducer = GradientReducer::Create(*world, params.named(), {});
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  (params.WLoss(world->rank()) + params.v.sum()).backward();
  params.WLoss(world->rank()).backward();
  const absl::Status status = (*reducer)->FinishBackward();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(status.message(), HasSubstr("the gradient of 'w' was accumulated twice"));
}

TEST(GradientReducerTest, StatsDescribeTheLastStep) {
  auto world = testing::NewWorld();
  // About 3 MiB of float64 gradients in 1 MiB buckets.
  torch::manual_seed(11);
  torch::nn::Sequential model;
  for (int i = 0; i < 6; ++i) model->push_back(torch::nn::Linear(256, 256));
  model->to(at::kDouble);
  GradientReducerOptions options;
  options.bucket_bytes = 1 << 20;
  auto reducer = GradientReducer::Create(*world, *model, options);
  ASSERT_TRUE(reducer.ok()) << reducer.status();
  int64_t gradient_bytes = 0;
  for (const at::Tensor& p : model->parameters()) gradient_bytes += p.nbytes();

  for (int step = 0; step < 3; ++step) {
    model->zero_grad();
    Loss(model, Batch(world->rank(), step, /*rows=*/512, /*width=*/256)).backward();
    const absl::Status status = (*reducer)->FinishBackward();
    ASSERT_TRUE(status.ok()) << status;
  }
  const ReducerStats& stats = (*reducer)->stats();
  EXPECT_EQ(stats.buckets, static_cast<int>((*reducer)->bucket_plan().size()));
  EXPECT_GT(stats.buckets, 1);
  // Every bucket once, plus one int32 "used" flag per parameter.
  EXPECT_EQ(stats.bytes, gradient_bytes + 4 * static_cast<int64_t>(model->parameters().size()));
  EXPECT_GT(stats.allreduce, absl::ZeroDuration());
  EXPECT_GT(stats.backward, absl::ZeroDuration());
  EXPECT_GE(stats.exposed, absl::ZeroDuration());
  EXPECT_GE(stats.overlap_fraction, 0.0);
  EXPECT_LE(stats.overlap_fraction, 1.0);
  if (world->rank() == 0) {
    std::cout << "[reducer stats] ranks=" << world->size() << " buckets=" << stats.buckets
              << " bytes=" << stats.bytes << " backward=" << stats.backward
              << " allreduce=" << stats.allreduce << " exposed=" << stats.exposed
              << " overlap=" << stats.overlap_fraction << std::endl;
  }
}

// On a GPU over the NCCL world: the reduced gradients equal the CPU MPI
// reducer's for the same model and data (float64), over several buckets
// issued on the reducer's communication stream, and the device-timed stats
// are sane. Skips without a GPU (scripts/gpu-check runs it).
TEST(GradientReducerTest, CudaGradientsOverNcclEqualCpuGradientsOverMpi_CUDA) {
  if (const std::string reason = testing::NoGpuPerRankReason(); !reason.empty())
    GTEST_SKIP() << reason;
  auto mpi = testing::NewWorld();
  c10::Device gpu = c10::kCUDA;
  auto world = testing::NewGpuWorld(&gpu);
  torch::nn::Sequential on_cpu = Mlp(/*seed=*/7, /*hidden=*/256), on_gpu = Mlp(7, 256);
  on_gpu->to(gpu);
  auto cpu_reducer = GradientReducer::Create(*mpi, *on_cpu, OneBucketPerParameter());
  auto gpu_reducer = GradientReducer::Create(*world, *on_gpu, OneBucketPerParameter());
  ASSERT_TRUE(cpu_reducer.ok() && gpu_reducer.ok());
  for (int step = 0; step < 3; ++step) {
    on_cpu->zero_grad();
    on_gpu->zero_grad();
    const at::Tensor batch = Batch(mpi->rank(), step, /*rows=*/64);
    Loss(on_cpu, batch).backward();
    ASSERT_TRUE((*cpu_reducer)->FinishBackward().ok());
    Loss(on_gpu, batch.to(gpu)).backward();
    ASSERT_TRUE((*gpu_reducer)->FinishBackward().ok());
    ExpectClose(FlatGradients(*on_gpu).cpu(), FlatGradients(*on_cpu));
  }
  const ReducerStats& stats = (*gpu_reducer)->stats();
  EXPECT_GT(stats.allreduce, absl::ZeroDuration());
  EXPECT_GE(stats.overlap_fraction, 0.0);
  EXPECT_LE(stats.overlap_fraction, 1.0);
  if (mpi->rank() == 0) {
    std::cout << "[reducer stats CUDA] ranks=" << mpi->size() << " buckets=" << stats.buckets
              << " allreduce(device)=" << stats.allreduce << " exposed(device)=" << stats.exposed
              << " overlap=" << stats.overlap_fraction << std::endl;
  }
}

}  // namespace
}  // namespace memtrain::parallel
