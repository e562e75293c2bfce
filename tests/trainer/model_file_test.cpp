#include "checkpoints/model_file.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace memtrain::checkpoints {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

model::TransformerOptions Small() {
  model::TransformerOptions o;
  o.vocab_size = 30;
  o.model_dim = 16;
  o.heads = 2;
  o.ffn_dim = 32;
  o.encoder_layers = 0;
  o.decoder_layers = 2;
  o.attention = "performer";  // a buffer (the projection) must round-trip too
  o.attention_options.performer.features = 8;
  return o;
}

std::string FreshDir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("memtrain_model_file_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir.parent_path());
  return dir.string();
}

TEST(ModelFileTest, SavedModelLoadsWithTheSameOutputsAndInfo) {
  auto model = model::MakeTransformer(Small());
  ASSERT_TRUE(model.ok());
  (*model)->eval();
  ModelInfo info;
  info.options = Small();
  info.tokenizer_sha256 = "abc123";
  info.task = "lm";
  info.step = 77;
  const std::string dir = FreshDir("saved");
  ASSERT_TRUE(SaveModel(dir, **model, info).ok());
  for (const auto& entry : fs::directory_iterator(fs::path(dir).parent_path())) {
    EXPECT_THAT(entry.path().filename().string(), ::testing::Not(HasSubstr("partial")));
  }
  auto loaded = LoadModel(dir, at::kCPU);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  loaded->model->eval();
  EXPECT_EQ(loaded->info.step, 77);
  EXPECT_EQ(loaded->info.tokenizer_sha256, "abc123");
  const at::Tensor tokens = at::randint(1, 30, {2, 6}, at::kLong);
  EXPECT_TRUE(at::equal((*model)->ForwardLm(tokens), loaded->model->ForwardLm(tokens)));

  // Saving again replaces the old model completely.
  info.step = 78;
  ASSERT_TRUE(SaveModel(dir, **model, info).ok());
  EXPECT_EQ(LoadModel(dir, at::kCPU)->info.step, 78);
}

TEST(ModelFileTest, MissingAndDamagedModelsAreRefusedByName) {
  EXPECT_EQ(LoadModel(FreshDir("nothing"), at::kCPU).status().code(), absl::StatusCode::kNotFound);
  auto model = model::MakeTransformer(Small());
  ModelInfo info;
  info.options = Small();
  const std::string dir = FreshDir("damaged");
  ASSERT_TRUE(SaveModel(dir, **model, info).ok());
  const fs::path weights = fs::path(dir) / "model.pt";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  auto damaged = LoadModel(dir, at::kCPU);
  EXPECT_EQ(damaged.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(damaged.status().message()), HasSubstr("model.pt"));
  // A config that does not describe the weights.
  ASSERT_TRUE(SaveModel(dir, **model, info).ok());
  info.options.model_dim = 32;
  info.options.ffn_dim = 64;
  {
    auto other = model::MakeTransformer(info.options);
    ASSERT_TRUE(SaveModel(dir + "-other", **other, info).ok());
  }
  fs::copy_file(fs::path(dir + "-other") / "model.json", fs::path(dir) / "model.json",
                fs::copy_options::overwrite_existing);
  EXPECT_EQ(LoadModel(dir, at::kCPU).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace memtrain::checkpoints
