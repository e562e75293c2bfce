// The safetensors writer and reader round-trip every supported dtype and the
// metadata bitwise, and report truncation as data loss naming the file; a
// ExactKnnMemory restored from its saved state searches exactly like the
// original, also after its ring buffer wrapped.
#include "checkpoints/safetensors.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "memory/exact_knn_memory.h"

namespace memtrain::checkpoints {
namespace {

std::string TempPath(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("memtrain_ckpt_test_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

TEST(SafetensorsTest, RoundTripsEveryDtypeAndTheMetadata) {
  at::manual_seed(3);
  std::map<std::string, at::Tensor> tensors = {
      {"f64", at::randn({3, 2}, at::kDouble)},
      {"f32", at::randn({4}, at::kFloat)},
      {"f16", at::randn({2, 2}).to(at::kHalf)},
      {"bf16", at::randn({5}).to(at::kBFloat16)},
      {"i64", at::arange(-3, 3, at::kLong)},
      {"i32", at::arange(7, at::kInt)},
      {"i16", at::arange(2, at::kShort)},
      {"i8", at::arange(-2, 2, at::kChar)},
      {"u8", at::arange(250, 256, at::kLong).to(at::kByte)},
      {"bool", at::tensor({1, 0, 1}, at::kInt).to(at::kBool)},
      {"scalar", at::scalar_tensor(2.5)},
      {"empty", at::zeros({0, 3})},
      {"strided", at::randn({4, 3}).t()},  // written contiguous
  };
  const std::string path = TempPath("round_trip.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"step", "7"}, {"note", "x"}}).ok());
  auto read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->metadata, (std::map<std::string, std::string>{{"step", "7"}, {"note", "x"}}));
  ASSERT_EQ(read->tensors.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor& got = read->tensors.at(name);
    EXPECT_EQ(got.scalar_type(), tensor.scalar_type()) << name;
    EXPECT_EQ(got.sizes(), tensor.sizes()) << name;
    EXPECT_TRUE(at::equal(got, tensor)) << name;
  }
}

TEST(SafetensorsTest, TruncatedFileIsDataLossNamingIt) {
  const std::string path = TempPath("truncated.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"w", at::randn({16, 16})}}, {}).ok());
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
  auto read = ReadSafetensors(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(read.status().message().find(path), std::string::npos) << read.status();
  std::filesystem::resize_file(path, 5);
  EXPECT_EQ(ReadSafetensors(path).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadSafetensors(TempPath("missing.safetensors")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(KnnMemoryStateTest, RestoredMemorySearchesExactlyLikeTheOriginalAfterWrapping) {
  at::manual_seed(4);
  memory::ExactKnnMemory memory(memory::ExactKnnMemoryOptions(10));
  for (int i = 0; i < 3; ++i) {  // 12 entries into 10 slots on stream 0
    ASSERT_TRUE(memory.add(0, at::randn({2, 4, 3}), at::randn({2, 4, 5})).ok());
  }
  ASSERT_TRUE(memory.add(5, at::randn({2, 3, 3}), at::randn({2, 3, 5})).ok());
  auto state = memory.SaveState();
  ASSERT_TRUE(state.ok()) << state.status();
  const std::string path = TempPath("memory.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, *state, {}).ok());
  auto read = ReadSafetensors(path);
  ASSERT_TRUE(read.ok()) << read.status();
  memory::ExactKnnMemory restored(memory::ExactKnnMemoryOptions(10));
  ASSERT_TRUE(restored.LoadState(read->tensors).ok());
  const at::Tensor entry_k = at::randn({2, 1, 3}), entry_v = at::randn({2, 1, 5});
  ASSERT_TRUE(memory.add(0, entry_k, entry_v).ok());  // both keep evicting alike
  ASSERT_TRUE(restored.add(0, entry_k, entry_v).ok());
  const at::Tensor queries = at::randn({2, 6, 3});
  for (int64_t stream : {0, 5, 9}) {
    EXPECT_EQ(restored.size(stream), memory.size(stream));
    auto a = memory.search(stream, queries, 4), b = restored.search(stream, queries, 4);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_TRUE(at::equal(a->scores, b->scores)) << "stream " << stream;
    EXPECT_TRUE(at::equal(a->values, b->values)) << "stream " << stream;
  }
  // A smaller memory keeps the newest entries; a malformed state is refused.
  memory::ExactKnnMemory smaller(memory::ExactKnnMemoryOptions(8));
  ASSERT_TRUE(smaller.LoadState(read->tensors).ok());
  EXPECT_EQ(smaller.size(0), 8);
  std::map<std::string, at::Tensor> malformed = read->tensors;
  malformed.erase("0.added");
  EXPECT_EQ(restored.LoadState(malformed).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(restored.size(0), 10) << "a refused state must leave the memory unchanged";
}

}  // namespace
}  // namespace memtrain::checkpoints
