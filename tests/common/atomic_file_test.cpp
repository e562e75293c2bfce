// Publish: the target is either the old content or the complete new one,
// nothing of the staging is left behind, and a failed publish leaves the
// target untouched.
#include "common/atomic_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace memtrain {
namespace {

namespace fs = std::filesystem;

std::string Read(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("atomic_file_test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Whatever besides `keep` is in dir_.
  std::vector<std::string> Others(const std::string& keep) {
    std::vector<std::string> others;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      if (entry.path().filename() != keep) others.push_back(entry.path().filename().string());
    }
    return others;
  }
  fs::path dir_;
};

TEST_F(AtomicFileTest, AFileReplacesTheOldOneAndNoStagingRemains) {
  const std::string target = (dir_ / "corpus.h5").string();
  ASSERT_TRUE(WriteFileDurably(target, "old").ok());
  const std::string staging = StagingPath(target);
  EXPECT_EQ(staging, target + ".partial-" + std::to_string(::getpid()));
  ASSERT_TRUE(WriteFileDurably(staging, "new").ok());
  ASSERT_TRUE(Publish(staging, target).ok());
  EXPECT_EQ(Read(target), "new");
  EXPECT_TRUE(Others("corpus.h5").empty());
}

TEST_F(AtomicFileTest, ADirectoryReplacesTheOldOneWhole) {
  const std::string target = (dir_ / "model").string();
  fs::create_directories(target);
  ASSERT_TRUE(WriteFileDurably(target + "/stale.pt", "old").ok());
  const std::string staging = StagingPath(target, "");
  ASSERT_TRUE(CreateStagingDirectory(staging).ok());
  ASSERT_TRUE(WriteFileDurably(staging + "/model.pt", "weights").ok());
  ASSERT_TRUE(Publish(staging, target).ok());
  EXPECT_EQ(Read(fs::path(target) / "model.pt"), "weights");
  EXPECT_FALSE(fs::exists(fs::path(target) / "stale.pt"));  // not merged: replaced
  EXPECT_TRUE(Others("model").empty());                     // no staging, no old copy aside
}

TEST_F(AtomicFileTest, AFailedPublishLeavesTheTargetAlone) {
  const std::string target = (dir_ / "model").string();
  fs::create_directories(target);
  ASSERT_TRUE(WriteFileDurably(target + "/model.pt", "old").ok());
  const absl::Status missing = Publish((dir_ / "nothing.partial").string(), target);
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("nothing.partial"), std::string::npos) << missing;
  EXPECT_EQ(Read(fs::path(target) / "model.pt"), "old");
}

TEST_F(AtomicFileTest, CreatingAStagingDirectoryClearsACrashedAttempt) {
  const std::string staging = StagingPath((dir_ / "ckpt").string(), "");
  fs::create_directories(staging);
  ASSERT_TRUE(WriteFileDurably(staging + "/half-written", "x").ok());
  ASSERT_TRUE(CreateStagingDirectory(staging).ok());
  EXPECT_TRUE(fs::is_directory(staging));
  EXPECT_TRUE(fs::is_empty(staging));
}

}  // namespace
}  // namespace memtrain
