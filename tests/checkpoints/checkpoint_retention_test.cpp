// Retention keeps one timeline: after a run resumes from an older
// checkpoint, the newer ones (an abandoned timeline) are set aside, the
// checkpoint just committed is never deleted, and `latest` points at it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoints/checkpoint.h"

namespace memtrain::checkpoints {
namespace {

namespace fs = std::filesystem;

std::string FreshDir() {
  const fs::path dir =
      fs::temp_directory_path() / ("memtrain_retention_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

void Save(const std::string& dir, int64_t step, int keep_last) {
  auto partial = CreatePartialCheckpoint(dir, step);
  ASSERT_TRUE(partial.ok()) << partial.status();
  std::ofstream(fs::path(*partial) / "trainer.json") << "{\"step\": " << step << "}\n";
  auto written = DescribeCheckpointFile(*partial, "trainer.json");
  ASSERT_TRUE(written.ok()) << written.status();
  auto committed = CommitCheckpoint(dir, step, keep_last, {*written});
  ASSERT_TRUE(committed.ok()) << committed.status();
}

std::vector<int64_t> Steps(const std::string& dir) {
  std::vector<int64_t> steps;
  for (const CheckpointRef& ref : ListCheckpoints(dir)) steps.push_back(ref.step);
  return steps;
}

TEST(CheckpointRetentionTest, ResumingFromAnOlderCheckpointSetsTheNewerOnesAside) {
  const std::string dir = FreshDir();
  for (int64_t step : {100, 200, 300}) Save(dir, step, /*keep_last=*/3);
  ASSERT_EQ(Steps(dir), (std::vector<int64_t>{300, 200, 100}));
  // The run resumed from 100 and commits 150.
  Save(dir, 150, /*keep_last=*/3);
  EXPECT_EQ(Steps(dir), (std::vector<int64_t>{150, 100}));
  EXPECT_TRUE(fs::is_directory(CheckpointPath(dir, 300) + ".abandoned"));
  EXPECT_TRUE(fs::is_directory(CheckpointPath(dir, 200) + ".abandoned"));
  EXPECT_EQ(fs::read_symlink(fs::path(dir) / kLatestName), CheckpointName(150));
  auto newest = FindNewestValid(dir, INT64_MAX, nullptr, nullptr);
  ASSERT_TRUE(newest.ok());
  EXPECT_EQ(newest->step, 150) << "--resume=auto must stay on this run's timeline";
  fs::remove_all(dir);
}

TEST(CheckpointRetentionTest, TheCheckpointJustCommittedIsNeverDeleted) {
  const std::string dir = FreshDir();
  Save(dir, 300, /*keep_last=*/1);
  Save(dir, 150, /*keep_last=*/1);  // resumed from an older copy elsewhere
  EXPECT_EQ(Steps(dir), (std::vector<int64_t>{150}));
  EXPECT_TRUE(fs::exists(fs::path(dir) / kLatestName / "MANIFEST.json")) << "latest dangles";
  // A second abandoned copy of the same step gets a name of its own.
  Save(dir, 300, /*keep_last=*/1);
  Save(dir, 120, /*keep_last=*/1);
  EXPECT_TRUE(fs::is_directory(CheckpointPath(dir, 300) + ".abandoned"));
  EXPECT_TRUE(fs::is_directory(CheckpointPath(dir, 300) + ".abandoned-2"));
  EXPECT_EQ(Steps(dir), (std::vector<int64_t>{120}));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace memtrain::checkpoints
