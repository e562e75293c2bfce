// main() for tests that run under mpirun: initializes MPI once (through
// MpiRuntime, as the binaries do), runs the tests on every rank, and makes the
// process exit non-zero if any test failed on this rank (mpirun then exits
// non-zero too). Ranks other than 0 print only failures.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/process.h"
#include "glog/logging.h"
#include "tests/mpi_test_support.h"

namespace memtrain::testing {
namespace {
parallel::MpiRuntime* g_runtime = nullptr;
}  // namespace

parallel::MpiRuntime& Runtime() {
  TORCH_INTERNAL_ASSERT(g_runtime != nullptr, "MPI tests must link tests/mpi_test_main.cpp");
  return *g_runtime;
}

parallel::CommunicatorOptions TestCommunicatorOptions() {
  parallel::CommunicatorOptions options;
  options.timeouts = {absl::Seconds(60), absl::Seconds(60), absl::Seconds(60), absl::Seconds(60)};
  options.verify_collectives = true;
  return options;
}

std::unique_ptr<parallel::MpiCommunicator> NewWorld(parallel::CommunicatorOptions options) {
  auto world = Runtime().CreateWorld(options);
  TORCH_INTERNAL_ASSERT(world.ok(), world.status().ToString());
  return *std::move(world);
}

std::string NoGpuPerRankReason() {
  const int local_size = NewWorld()->local_size();
  if (!torch::cuda::is_available()) return "no CUDA device visible: the GPU path not run";
  const int devices = static_cast<int>(torch::cuda::device_count());
  if (devices < local_size) {
    return absl::StrCat(local_size, " ranks on this host but ", devices,
                        " GPU(s): NCCL needs one GPU per rank");
  }
  return "";
}

std::unique_ptr<parallel::Communicator> NewGpuWorld(c10::Device* device) {
  auto mpi = NewWorld();
  parallel::WorldOptions options;
  options.communicator = TestCommunicatorOptions();
  options.device = c10::Device(
      c10::kCUDA, static_cast<c10::DeviceIndex>(mpi->local_rank() % torch::cuda::device_count()));
  auto world = parallel::CreateWorld(Runtime(), options);
  TORCH_INTERNAL_ASSERT(world.ok(), world.status().ToString());
  *device = options.device;
  return *std::move(world);
}

std::string BroadcastString(parallel::Communicator& world, const std::string& value) {
  at::Tensor length = at::tensor({static_cast<int64_t>(value.size())}, at::kLong);
  EXPECT_TRUE(world.broadcast(length, 0).ok());
  at::Tensor bytes = at::zeros({length.item<int64_t>()}, at::kByte);
  if (world.rank() == 0) std::memcpy(bytes.data_ptr(), value.data(), value.size());
  const absl::Status sent = world.broadcast(bytes, 0);
  EXPECT_TRUE(sent.ok()) << sent;
  if (!sent.ok()) return "";
  return std::string(static_cast<const char*>(bytes.data_ptr()),
                     static_cast<size_t>(bytes.numel()));
}

}  // namespace memtrain::testing

int main(int argc, char** argv) {
  memtrain::ConfigureProcess();
  google::InitGoogleLogging(argv[0]);
  auto runtime = memtrain::parallel::MpiRuntime::Initialize(&argc, &argv, {});
  if (!runtime.ok()) {
    LOG(ERROR) << runtime.status();
    return 1;
  }
  memtrain::testing::g_runtime = runtime->get();
  // Read by InitGoogleTest when it picks the result printer.
  if ((*runtime)->world_rank() != 0) GTEST_FLAG_SET(brief, true);
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  memtrain::testing::g_runtime = nullptr;
  runtime->reset();
  return result;
}
