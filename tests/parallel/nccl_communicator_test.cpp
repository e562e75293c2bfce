// NcclCommunicator on real GPUs. Every test is named *_CUDA and skips, saying
// why, when this rank has no GPU of its own (the development machines and CI
// have none; the CPU twin of each check is in communicator_test.cpp).
#include "parallel/nccl_communicator.h"

#include <ATen/ATen.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include "tests/mpi_test_support.h"

namespace memtrain::parallel {
namespace {

class NcclCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess) devices = 0;
    auto world = testing::NewWorld();
    if (devices < world->local_size()) {
      GTEST_SKIP() << devices << " CUDA device(s) for " << world->local_size()
                   << " rank(s) on this host: NCCL tests need one GPU per rank";
    }
    auto nccl = NcclCommunicator::Create(std::move(world));
    ASSERT_TRUE(nccl.ok()) << nccl.status();
    nccl_ = *std::move(nccl);
  }
  at::TensorOptions cuda(c10::ScalarType dtype) const {
    return at::TensorOptions().dtype(dtype).device(at::kCUDA, nccl_->device());
  }
  std::unique_ptr<NcclCommunicator> nccl_;
};

TEST_F(NcclCommunicatorTest, AllreduceEveryOpAndDtype_CUDA) {
  const int n = nccl_->size();
  for (c10::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf, at::kLong}) {
    at::Tensor t = at::full({1000}, nccl_->rank() + 1, cuda(dtype));
    ASSERT_TRUE(nccl_->allreduce(t, ReduceOp::kSum).ok());
    EXPECT_EQ(t.cpu().to(at::kDouble)[7].item<double>(), n * (n + 1) / 2.0);
    at::Tensor m = at::full({1000}, nccl_->rank() + 1, cuda(dtype));
    ASSERT_TRUE(nccl_->allreduce(m, ReduceOp::kMax).ok());
    EXPECT_EQ(m.cpu().to(at::kDouble)[3].item<double>(), n);
    ASSERT_TRUE(nccl_->allreduce(m, ReduceOp::kMin).ok());
    EXPECT_EQ(m.cpu().to(at::kDouble)[3].item<double>(), n);
  }
  at::Tensor avg = at::full({8}, 2.0 * (nccl_->rank() + 1), cuda(at::kFloat));
  ASSERT_TRUE(nccl_->allreduce(avg, ReduceOp::kAvg).ok());
  EXPECT_FLOAT_EQ(avg.cpu()[0].item<float>(), static_cast<float>(n + 1));
}

TEST_F(NcclCommunicatorTest, BroadcastAllgatherAllgathervBarrier_CUDA) {
  at::Tensor b = at::arange(5, cuda(at::kFloat)) + 10.0 * nccl_->rank();
  ASSERT_TRUE(nccl_->broadcast(b, 0).ok());
  EXPECT_TRUE(at::equal(b.cpu(), at::arange(5, at::kFloat)));

  auto gathered = nccl_->allgather(at::full({2}, nccl_->rank(), cuda(at::kLong)));
  ASSERT_TRUE(gathered.ok());
  for (int r = 0; r < nccl_->size(); ++r) EXPECT_EQ((*gathered)[r][1].item<int64_t>(), r);

  auto pieces = nccl_->allgatherv(at::full({nccl_->rank() + 1, 2}, nccl_->rank(), cuda(at::kFloat)));
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  for (int r = 0; r < nccl_->size(); ++r) {
    EXPECT_EQ((*pieces)[r].size(0), r + 1);
    EXPECT_EQ((*pieces)[r].cpu().sum().item<float>(), 2.0f * (r + 1) * r);
  }
  EXPECT_TRUE(nccl_->barrier().ok());
}

TEST_F(NcclCommunicatorTest, SplitGetsItsOwnNcclCommunicator_CUDA) {
  auto group = nccl_->split(nccl_->rank() % 2);
  ASSERT_TRUE(group.ok()) << group.status();
  at::Tensor t = at::ones({4}, cuda(at::kFloat));
  ASSERT_TRUE((*group)->allreduce(t, ReduceOp::kSum).ok());
  EXPECT_EQ(t.cpu()[0].item<float>(), static_cast<float>((*group)->size()));
}

TEST_F(NcclCommunicatorTest, CpuTensorIsRejected_CUDA) {
  at::Tensor cpu = at::ones({4});
  EXPECT_EQ(nccl_->allreduce(cpu, ReduceOp::kSum).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memtrain::parallel
