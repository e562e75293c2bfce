// Communicator conformance tests, run under mpirun with 1, 2 and 4 ranks.
// Expected values are computed on each rank from the formula that produced
// every rank's input (ProcessGroupMPITest style), never by the code under test,
// and inputs are small integers so every dtype represents them exactly.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "parallel/mpi_communicator.h"
#include "tests/mpi_test_support.h"

namespace memtrain::parallel {
namespace {

using ::testing::HasSubstr;

// Rank r's input element i: (r + 1) * ((i % 7) - 3), in [-12, 12] for 4 ranks.
double Input(int rank, int64_t i) { return (rank + 1) * static_cast<double>((i % 7) - 3); }

double Expected(ReduceOp op, int ranks, int64_t i, bool integral) {
  double result = Input(0, i);
  for (int r = 1; r < ranks; ++r) {
    const double v = Input(r, i);
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kAvg:
        result += v;
        break;
      case ReduceOp::kMax:
        result = std::max(result, v);
        break;
      case ReduceOp::kMin:
        result = std::min(result, v);
        break;
    }
  }
  if (op == ReduceOp::kAvg) result = integral ? std::trunc(result / ranks) : result / ranks;
  return result;
}

at::Tensor MakeInput(int rank, int64_t numel, c10::ScalarType dtype) {
  at::Tensor values = at::empty({numel}, at::kDouble);
  auto accessor = values.accessor<double, 1>();
  for (int64_t i = 0; i < numel; ++i) accessor[i] = Input(rank, i);
  return values.to(dtype);
}

struct AllreduceCase {
  c10::ScalarType dtype;
  ReduceOp op;
  int64_t numel;
};

std::string CaseName(const ::testing::TestParamInfo<AllreduceCase>& info) {
  return DtypeName(info.param.dtype) + "_" + std::string(ReduceOpName(info.param.op)) + "_" +
         std::to_string(info.param.numel);
}

class AllreduceTest : public ::testing::TestWithParam<AllreduceCase> {};

TEST_P(AllreduceTest, MatchesIndependentlyComputedValue) {
  const AllreduceCase c = GetParam();
  auto world = testing::NewWorld();
  at::Tensor tensor = MakeInput(world->rank(), c.numel, c.dtype);
  ASSERT_TRUE(world->allreduce(tensor, c.op).ok());
  EXPECT_EQ(tensor.scalar_type(), c.dtype);
  const at::Tensor got = tensor.to(at::kDouble);
  auto accessor = got.accessor<double, 1>();
  const bool integral = !at::isFloatingType(c.dtype);
  int64_t wrong = 0;
  for (int64_t i = 0; i < c.numel; ++i) {
    const double expected = Expected(c.op, world->size(), i, integral);
    if (accessor[i] != expected) {
      if (++wrong <= 3)
        ADD_FAILURE() << "element " << i << ": " << accessor[i] << " != " << expected;
    }
  }
  EXPECT_EQ(wrong, 0);
}

std::vector<AllreduceCase> AllCases() {
  std::vector<AllreduceCase> cases;
  for (c10::ScalarType dtype :
       {at::kFloat, at::kBFloat16, at::kHalf, at::kLong, at::kDouble, at::kInt}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
      cases.push_back({dtype, op, 37});
    }
  }
  // Large enough for Open MPI's segmented/ring algorithms and to call the
  // 16-bit reduction ops on many pieces.
  cases.push_back({at::kFloat, ReduceOp::kSum, (int64_t{3} << 20) + 5});
  cases.push_back({at::kBFloat16, ReduceOp::kSum, (int64_t{1} << 20) + 3});
  cases.push_back({at::kHalf, ReduceOp::kMax, (int64_t{1} << 20) + 3});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Collectives, AllreduceTest, ::testing::ValuesIn(AllCases()), CaseName);

TEST(CommunicatorTest, AvgOfOddSumRoundsFloatExactlyAndTruncatesIntegers) {
  auto world = testing::NewWorld();
  if (world->size() == 1) GTEST_SKIP() << "needs 2+ ranks for a non-trivial average";
  // Rank 0 contributes 1, the others 0: the float average is 1/size, the
  // integer one truncates to 0.
  at::Tensor f = at::full({3}, world->rank() == 0 ? 1.0 : 0.0, at::kFloat);
  at::Tensor i = at::full({3}, world->rank() == 0 ? 1 : 0, at::kLong);
  ASSERT_TRUE(world->allreduce(f, ReduceOp::kAvg).ok());
  ASSERT_TRUE(world->allreduce(i, ReduceOp::kAvg).ok());
  EXPECT_FLOAT_EQ(f[0].item<float>(), 1.0f / static_cast<float>(world->size()));
  EXPECT_EQ(i[0].item<int64_t>(), 0);
}

TEST(CommunicatorTest, BroadcastFromEveryRoot) {
  auto world = testing::NewWorld();
  for (int root = 0; root < world->size(); ++root) {
    at::Tensor tensor = at::arange(10, at::kFloat) + 100.0 * world->rank();
    ASSERT_TRUE(world->broadcast(tensor, root).ok());
    EXPECT_TRUE(at::equal(tensor, at::arange(10, at::kFloat) + 100.0 * root)) << "root " << root;
  }
}

TEST(CommunicatorTest, AllgatherEqualSizes) {
  auto world = testing::NewWorld();
  const at::Tensor pattern = at::arange(6, at::kLong).view({3, 2}) * 100;
  auto gathered = world->allgather(pattern + world->rank());
  ASSERT_TRUE(gathered.ok()) << gathered.status();
  ASSERT_EQ(gathered->sizes(), (std::vector<int64_t>{world->size(), 3, 2}));
  for (int r = 0; r < world->size(); ++r) {
    EXPECT_TRUE(at::equal((*gathered)[r], pattern + r)) << "slot " << r;
  }
}

// Rank r contributes r + 2 rows, except rank 1, which contributes none.
int64_t RowsOf(int rank) { return rank == 1 ? 0 : rank + 2; }

TEST(CommunicatorTest, AllgatherVariableSizesIncludingEmpty) {
  auto world = testing::NewWorld();
  auto rows_of_rank = [](int r) {
    return at::arange(RowsOf(r) * 3, at::kBFloat16).view({RowsOf(r), 3}) + 10.0 * r;
  };
  auto pieces = world->allgatherv(rows_of_rank(world->rank()));
  ASSERT_TRUE(pieces.ok()) << pieces.status();
  ASSERT_EQ(static_cast<int>(pieces->size()), world->size());
  for (int r = 0; r < world->size(); ++r) {
    EXPECT_EQ((*pieces)[r].sizes(), (std::vector<int64_t>{RowsOf(r), 3}));
    EXPECT_TRUE(at::equal((*pieces)[r], rows_of_rank(r))) << "piece " << r;
  }
}

TEST(CommunicatorTest, BarrierOrdersWritesBeforeReads) {
  auto world = testing::NewWorld();
  // Rank 0 picks a fresh directory and tells everyone.
  std::string dir = world->rank() == 0 ? (std::filesystem::temp_directory_path() /
                                          ("memtrain_barrier_" + std::to_string(::getpid())))
                                             .string()
                                       : std::string();
  at::Tensor name = at::zeros({256}, at::kByte);
  std::memcpy(name.data_ptr(), dir.data(), std::min<size_t>(dir.size(), 255));
  ASSERT_TRUE(world->broadcast(name, 0).ok());
  dir = std::string(static_cast<const char*>(name.data_ptr()));
  std::filesystem::create_directories(dir);
  // The last rank writes late: without a real barrier the others would look
  // before its file exists.
  if (world->rank() == world->size() - 1)
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::ofstream(dir + "/rank" + std::to_string(world->rank())) << "here";
  ASSERT_TRUE(world->barrier().ok());
  for (int r = 0; r < world->size(); ++r) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/rank" + std::to_string(r))) << "rank " << r;
  }
  ASSERT_TRUE(world->barrier().ok());
  if (world->rank() == 0) std::filesystem::remove_all(dir);
}

TEST(CommunicatorTest, SplitFormsGroupsOrderedByKey) {
  auto world = testing::NewWorld();
  const int color = world->rank() % 2;
  // key = -rank: the highest world rank becomes rank 0 of its group.
  auto group = world->split(color, -world->rank());
  ASSERT_TRUE(group.ok()) << group.status();
  std::vector<int> members;
  for (int r = world->size() - 1; r >= 0; --r) {
    if (r % 2 == color) members.push_back(r);
  }
  ASSERT_EQ((*group)->size(), static_cast<int>(members.size()));
  EXPECT_EQ(members[(*group)->rank()], world->rank());
  EXPECT_EQ(static_cast<MpiCommunicator*>(group->get())->world_ranks(), members);
  EXPECT_THAT((*group)->name(), HasSubstr("world/split"));
  EXPECT_THAT((*group)->name(), HasSubstr("color=" + std::to_string(color)));

  // A collective on the group sums over its members only.
  at::Tensor tensor = at::full({4}, world->rank(), at::kLong);
  ASSERT_TRUE((*group)->allreduce(tensor, ReduceOp::kSum).ok());
  int64_t expected = 0;
  for (int r : members) expected += r;
  EXPECT_EQ(tensor[0].item<int64_t>(), expected);
  // The parent stays usable.
  at::Tensor one = at::ones({1}, at::kInt);
  ASSERT_TRUE(world->allreduce(one, ReduceOp::kSum).ok());
  EXPECT_EQ(one.item<int>(), world->size());
}

TEST(CommunicatorTest, SplitRejectsNegativeColor) {
  auto world = testing::NewWorld();
  auto group = world->split(-1, 0);
  EXPECT_EQ(group.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CommunicatorTest, LocalRanksCoverThisHost) {
  auto world = testing::NewWorld();
  // Every test rank runs on this machine.
  EXPECT_EQ(world->local_size(), world->size());
  EXPECT_EQ(world->local_rank(), world->rank());
}

TEST(CommunicatorTest, InvalidTensorsAreRejectedWithTheirProblem) {
  auto world = testing::NewWorld();
  at::Tensor transposed = at::ones({4, 3}).t();
  auto status = world->allreduce(transposed, ReduceOp::kSum);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("not contiguous"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("group 'world'"));

  at::Tensor complex = at::ones({2}, at::kComplexFloat);
  status = world->allreduce(complex, ReduceOp::kSum);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("ComplexFloat is not supported"));

  at::Tensor ok = at::ones({2});
  status = world->broadcast(ok, world->size());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("root must be in"));

  EXPECT_EQ(world->allgatherv(at::ones({})).status().code(), absl::StatusCode::kInvalidArgument);
  // The communicator is still usable after rejected calls.
  ASSERT_TRUE(world->allreduce(ok, ReduceOp::kSum).ok());
  EXPECT_EQ(ok[0].item<float>(), static_cast<float>(world->size()));
}

TEST(CommunicatorTest, VerificationNamesRanksThatDisagree) {
  auto world = testing::NewWorld();
  if (world->size() == 1) GTEST_SKIP() << "needs 2+ ranks to disagree";
  at::Tensor tensor = at::ones({world->rank() == 0 ? 4 : 5});
  auto status = world->allreduce(tensor, ReduceOp::kSum);
  ASSERT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("rank 0: allreduce(sum) float32[4]"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("rank 1: allreduce(sum) float32[5]"));
  // Nobody ran the mismatched call, so the group is still in step.
  ASSERT_TRUE(world->barrier().ok());
}

TEST(CommunicatorTest, SequenceNumberCountsCollectives) {
  CommunicatorOptions options = testing::TestCommunicatorOptions();
  options.verify_collectives = false;
  auto world = testing::NewWorld(options);
  const uint64_t before = world->sequence_number();
  at::Tensor tensor = at::ones({3});
  ASSERT_TRUE(world->allreduce(tensor, ReduceOp::kSum).ok());
  ASSERT_TRUE(world->broadcast(tensor, 0).ok());
  ASSERT_TRUE(world->barrier().ok());
  EXPECT_EQ(world->sequence_number(), before + 3);
}

TEST(CommunicatorTest, SecondThreadInsideTheSameCommunicatorIsRefused) {
  auto world = testing::NewWorld();
  if (world->size() == 1) GTEST_SKIP() << "a 1-rank barrier returns at once";
  // Rank 0's main thread waits in a barrier that the others join 1 s late;
  // meanwhile a second thread of rank 0 tries the same communicator.
  absl::Status second_thread_status;
  std::thread intruder;
  if (world->rank() == 0) {
    intruder = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      at::Tensor tensor = at::ones({1});
      second_thread_status = world->allreduce(tensor, ReduceOp::kSum);
    });
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  }
  ASSERT_TRUE(world->barrier().ok());
  if (world->rank() == 0) {
    intruder.join();
    EXPECT_EQ(second_thread_status.code(), absl::StatusCode::kInternal);
    EXPECT_THAT(std::string(second_thread_status.message()), HasSubstr("another thread"));
  }
}

}  // namespace
}  // namespace memtrain::parallel
