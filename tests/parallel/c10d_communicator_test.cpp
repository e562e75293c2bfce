// C10dCommunicator and the hybrid world under real mpirun (1, 2 and 4 ranks).
// On every machine over PyTorch's Gloo: each collective gives what
// MpiCommunicator gives for the same input (the independent baseline, run in
// the same test), splits keep their backend and device, and bad arguments are
// refused without breaking the group. The *_CUDA tests run the same checks
// over ProcessGroupNCCL and skip, saying so, without a GPU (scripts/gpu-check
// runs them where there is one).
#include "parallel/c10d_communicator.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "parallel/world.h"
#include "tests/mpi_test_support.h"

namespace memtrain::parallel {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<C10dCommunicator> NewC10d(const std::string& backend, c10::Device device) {
  auto group = testing::NewWorld();
  auto made = C10dCommunicator::Create(std::move(group), backend, device);
  EXPECT_TRUE(made.ok()) << made.status();
  return made.ok() ? std::move(*made) : nullptr;
}

// Rank-dependent values in every supported dtype, so that a wrong reduction,
// a missing division or a wrong root shows.
at::Tensor RankValues(int rank, c10::ScalarType dtype, const c10::Device& device) {
  return (at::arange(6, at::kDouble) * (rank + 1) + rank).to(dtype).to(device);
}

// Runs every collective on `c10d` and on an MpiCommunicator with the same
// inputs and expects equal results.
void ExpectSameAsMpi(Communicator& c10d, const c10::Device& device) {
  auto mpi = testing::NewWorld();
  const int rank = mpi->rank();
  for (c10::ScalarType dtype :
       {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf, at::kInt, at::kLong, at::kByte}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
      at::Tensor expected = RankValues(rank, dtype, c10::kCPU);
      ASSERT_TRUE(mpi->allreduce(expected, op).ok());
      at::Tensor got = RankValues(rank, dtype, device);
      ASSERT_TRUE(c10d.allreduce(got, op).ok()) << DtypeName(dtype) << " " << ReduceOpName(op);
      EXPECT_TRUE(at::equal(got.cpu(), expected)) << DtypeName(dtype) << " " << ReduceOpName(op)
                                                  << ": " << got.cpu() << " vs MPI's " << expected;
    }
  }
  const int root = mpi->size() - 1;
  at::Tensor broadcast = RankValues(rank, at::kFloat, device);
  ASSERT_TRUE(c10d.broadcast(broadcast, root).ok());
  EXPECT_TRUE(at::equal(broadcast.cpu(), RankValues(root, at::kFloat, c10::kCPU)));

  auto gathered = c10d.allgather(RankValues(rank, at::kLong, device).view({2, 3}));
  ASSERT_TRUE(gathered.ok()) << gathered.status();
  auto expected_gathered = mpi->allgather(RankValues(rank, at::kLong, c10::kCPU).view({2, 3}));
  ASSERT_TRUE(expected_gathered.ok());
  EXPECT_TRUE(at::equal(gathered->cpu(), *expected_gathered));

  // Rank r contributes r rows (rank 0 none) of width 3.
  at::Tensor rows = at::full({rank, 3}, rank, at::kFloat).to(device);
  auto pieces = c10d.allgatherv(rows);
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  ASSERT_EQ(static_cast<int>(pieces->size()), mpi->size());
  for (int r = 0; r < mpi->size(); ++r) {
    EXPECT_TRUE(at::equal((*pieces)[r].cpu(), at::full({r, 3}, r, at::kFloat)))
        << "rank " << r << "'s rows";
  }
  ASSERT_TRUE(c10d.barrier().ok());
}

TEST(C10dCommunicatorTest, GlooCollectivesEqualMpis) {
  auto gloo = NewC10d("gloo", c10::kCPU);
  ASSERT_NE(gloo, nullptr);
  EXPECT_EQ(gloo->backend_name(), "gloo");
  ExpectSameAsMpi(*gloo, c10::kCPU);
  EXPECT_GT(gloo->sequence_number(), 0u);
}

TEST(C10dCommunicatorTest, SplitKeepsBackendAndDeviceAndReducesWithinItsGroup) {
  auto gloo = NewC10d("gloo", c10::kCPU);
  ASSERT_NE(gloo, nullptr);
  const int rank = gloo->rank();
  auto half = gloo->split(rank % 2);
  ASSERT_TRUE(half.ok()) << half.status();
  auto* child = dynamic_cast<C10dCommunicator*>(half->get());
  ASSERT_NE(child, nullptr);
  EXPECT_EQ(child->backend_name(), "gloo");
  EXPECT_EQ(child->device(), gloo->device());
  at::Tensor ranks = at::full({1}, rank, at::kLong);
  ASSERT_TRUE(child->allreduce(ranks, ReduceOp::kSum).ok());
  int64_t expected = 0;
  for (int r = rank % 2; r < gloo->size(); r += 2) expected += r;
  EXPECT_EQ(ranks.item<int64_t>(), expected);
  // The parent is still usable after the split.
  at::Tensor one = at::ones({1});
  ASSERT_TRUE(gloo->allreduce(one, ReduceOp::kSum).ok());
  EXPECT_EQ(one.item<float>(), gloo->size());
}

TEST(C10dCommunicatorTest, BadArgumentsAreRefusedAndTheGroupStaysUsable) {
  auto unknown = C10dCommunicator::Create(testing::NewWorld(), "carrier-pigeon", c10::kCPU);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("known: gloo"));
  auto gloo_on_gpu =
      C10dCommunicator::Create(testing::NewWorld(), "gloo", c10::Device(c10::kCUDA, 0));
  EXPECT_EQ(gloo_on_gpu.status().code(), absl::StatusCode::kInvalidArgument);

  auto gloo = NewC10d("gloo", c10::kCPU);
  ASSERT_NE(gloo, nullptr);
  at::Tensor strided = at::ones({4, 4}).t();
  EXPECT_EQ(gloo->allreduce(strided, ReduceOp::kSum).code(), absl::StatusCode::kInvalidArgument);
  at::Tensor flags = at::ones({2}, at::kBool);
  EXPECT_THAT(std::string(gloo->allreduce(flags, ReduceOp::kMax).message()),
              HasSubstr("not supported"));
  at::Tensor tensor = at::ones({3});
  EXPECT_EQ(gloo->broadcast(tensor, gloo->size()).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(gloo->allreduce(tensor, ReduceOp::kSum).ok());
  EXPECT_EQ(tensor[0].item<float>(), gloo->size());
}

TEST(WorldTest, GlooWorldRoutesCpuTensorsThroughGlooAndAgreesWithMpi) {
  WorldOptions options;
  options.communicator = testing::TestCommunicatorOptions();
  options.collectives = "gloo";
  auto world = CreateWorld(testing::Runtime(), options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto* hybrid = dynamic_cast<HybridCommunicator*>(world->get());
  ASSERT_NE(hybrid, nullptr);
  EXPECT_EQ(&hybrid->ChannelFor(c10::kCPU), &hybrid->device_channel());
  EXPECT_EQ(&hybrid->ChannelFor(c10::Device(c10::kCUDA, 0)), &hybrid->host_channel());
  const uint64_t host_calls = hybrid->host_channel().sequence_number();
  ExpectSameAsMpi(**world, c10::kCPU);
  EXPECT_GT(hybrid->device_channel().sequence_number(), 0u);
  // Of the hybrid host channel, only barrier() is used here (allgatherv counts
  // rows over the device channel's own MPI group).
  EXPECT_EQ(hybrid->host_channel().sequence_number(), host_calls + 1)
      << "only barrier() uses the host channel";

  auto child = (*world)->split(0);
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_NE(dynamic_cast<HybridCommunicator*>(child->get()), nullptr);
  at::Tensor one = at::ones({1});
  ASSERT_TRUE((*child)->allreduce(one, ReduceOp::kSum).ok());
  EXPECT_EQ(one.item<float>(), (*world)->size());
}

TEST(WorldTest, ImpossibleCombinationsAreRefusedBeforeAnyCommunication) {
  WorldOptions options;
  options.collectives = "infiniband";
  auto unknown = CreateWorld(testing::Runtime(), options);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("known: auto, mpi, gloo"));
  options.collectives = "mpi";
  options.device = c10::Device(c10::kCUDA, 0);
  auto mpi_on_gpu = CreateWorld(testing::Runtime(), options);
  EXPECT_EQ(mpi_on_gpu.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NcclDescriptionTest, SaysWhetherNcclIsBuilt) {
#ifdef MEMTRAIN_WITH_CUDA
  EXPECT_THAT(NcclDescription(), ::testing::StartsWith("NCCL 2."));
#else
  EXPECT_THAT(NcclDescription(), HasSubstr("not built"));
#endif
}

// ---- NCCL: only where a GPU is ----------------------------------------------

c10::Device ThisRanksGpu(const Communicator& group) {
  const int devices = static_cast<int>(torch::cuda::device_count());
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(group.local_rank() % devices));
}

#define SKIP_WITHOUT_GPU_PER_RANK()                           \
  do {                                                        \
    const std::string reason = testing::NoGpuPerRankReason(); \
    if (!reason.empty()) GTEST_SKIP() << reason;              \
  } while (0)

TEST(C10dCommunicatorTest, NcclCollectivesEqualMpis_CUDA) {
  SKIP_WITHOUT_GPU_PER_RANK();
  auto world = testing::NewWorld();
  auto nccl = NewC10d("nccl", ThisRanksGpu(*world));
  ASSERT_NE(nccl, nullptr);
  ExpectSameAsMpi(*nccl, nccl->device());
}

TEST(C10dCommunicatorTest, NcclSplitKeepsTheParentsDevice_CUDA) {
  SKIP_WITHOUT_GPU_PER_RANK();
  auto world = testing::NewWorld();
  auto nccl = NewC10d("nccl", ThisRanksGpu(*world));
  ASSERT_NE(nccl, nullptr);
  auto child = nccl->split(nccl->rank() % 2);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(dynamic_cast<C10dCommunicator&>(**child).device(), nccl->device());
  at::Tensor one = at::ones({1}, at::TensorOptions().device(nccl->device()));
  ASSERT_TRUE((*child)->allreduce(one, ReduceOp::kSum).ok());
  EXPECT_EQ(one.cpu().item<float>(), (nccl->size() + 1 - nccl->rank() % 2) / 2);
}

TEST(WorldTest, NcclWorldSendsCudaTensorsToNcclAndCpuTensorsToMpi_CUDA) {
  SKIP_WITHOUT_GPU_PER_RANK();
  c10::Device gpu = c10::kCUDA;
  auto world = testing::NewGpuWorld(&gpu);  // --collectives=auto: nccl on a GPU
  auto& hybrid = dynamic_cast<HybridCommunicator&>(*world);
  const uint64_t host_before = hybrid.host_channel().sequence_number();
  at::Tensor on_gpu = at::ones({8}, at::TensorOptions().device(gpu));
  ASSERT_TRUE(hybrid.allreduce(on_gpu, ReduceOp::kSum).ok());
  EXPECT_EQ(hybrid.host_channel().sequence_number(), host_before);
  at::Tensor on_cpu = at::ones({8});
  ASSERT_TRUE(hybrid.allreduce(on_cpu, ReduceOp::kSum).ok());
  EXPECT_EQ(hybrid.host_channel().sequence_number(), host_before + 1);
  EXPECT_TRUE(at::equal(on_gpu.cpu(), on_cpu));
}

}  // namespace
}  // namespace memtrain::parallel
