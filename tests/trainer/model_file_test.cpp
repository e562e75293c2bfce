#include "checkpoints/model_file.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

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
  const fs::path dir =
      fs::temp_directory_path() / ("memtrain_model_file_" + std::to_string(::getpid())) / name;
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

// model.json is versioned (checkpoints/model_file.h): a file written by
// format 1 (tests/checkpoints/fixtures/format1) loads; an option missing from
// a file takes its default; a newer format and unknown fields are refused,
// naming the file; nothing throws.
TEST(ModelFileTest, OlderFormatsLoadAndNewerOnesAreRefused) {
  const fs::path fixture = fs::path(MEMTRAIN_FIXTURES_DIR) / "format1" / "model";
  auto old = LoadModel(fixture.string(), at::kCPU);
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->info.step, 12);
  EXPECT_EQ(old->info.options.layer_attention.at(1), "knn");
  // Format 3 made the knn projections bias-free by default; this model of
  // format 1 was trained with biases and keeps them.
  EXPECT_TRUE(old->info.options.attention_options.knn.projection_bias);
  EXPECT_NE(old->model->named_parameters().find("decoder.1.self_attention.query.bias"), nullptr);
  // Format 5 added the dropout sampler (default philox); it trained with at::dropout's masks.
  EXPECT_EQ(old->info.options.dropout_sampler, model::DropoutSampler::kAten);
  EXPECT_EQ(model::TransformerOptions{}.dropout_sampler, model::DropoutSampler::kPhilox);
  model::TransformerOptions fresh = old->info.options;
  fresh.attention_options.knn = model::KnnOptions{};
  auto made = model::MakeTransformer(fresh);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->named_parameters().find("decoder.1.self_attention.query.bias"), nullptr);
  EXPECT_EQ((*made)->named_parameters().find("decoder.1.self_attention.key.bias"), nullptr);

  const std::string dir = FreshDir("versions");
  fs::create_directories(dir);
  fs::copy_file(fixture / "model.pt", fs::path(dir) / "model.pt");
  auto write_config = [&](const std::function<void(nlohmann::json&)>& edit) {
    std::ifstream in(fixture / "model.json");
    nlohmann::json config = nlohmann::json::parse(in);
    edit(config);
    std::ofstream(fs::path(dir) / "model.json") << config.dump();
  };
  // Written before an option existed: the option takes its default.
  write_config(
      [](nlohmann::json& c) { c["model"]["attention_options"]["knn"].erase("gate_bias"); });
  auto without = LoadModel(dir, at::kCPU);
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_EQ(without->info.options.attention_options.knn.gate_bias, model::KnnOptions{}.gate_bias);
  // This build's own version, explicitly.
  write_config([](nlohmann::json& c) { c["format_version"] = kModelFormatVersion; });
  EXPECT_TRUE(LoadModel(dir, at::kCPU).ok());
  // From a newer memtrain.
  write_config([](nlohmann::json& c) { c["format_version"] = kModelFormatVersion + 1; });
  auto newer = LoadModel(dir, at::kCPU);
  EXPECT_EQ(newer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(newer.status().message()),
              HasSubstr(absl::StrCat("format version ", kModelFormatVersion + 1)));
  // A misspelt field is not silently dropped.
  write_config([](nlohmann::json& c) { c["model"]["hedas"] = 4; });
  auto typo = LoadModel(dir, at::kCPU);
  EXPECT_EQ(typo.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(typo.status().message()), HasSubstr("unknown field 'hedas'"));
  // A field of the wrong type.
  write_config([](nlohmann::json& c) { c["model"]["heads"] = "two"; });
  EXPECT_EQ(LoadModel(dir, at::kCPU).status().code(), absl::StatusCode::kDataLoss);
  // What SaveModel writes now says its version.
  ASSERT_TRUE(SaveModel(dir, *old->model, old->info).ok());
  std::ifstream in(fs::path(dir) / "model.json");
  EXPECT_EQ(nlohmann::json::parse(in).at("format_version").get<int>(), kModelFormatVersion);
}

// --init_from as the paper fine-tunes: a model trained without memory gains a
// knn layer (Figure 6), or a knn model gets a bigger memory (Table 5); what
// the two share is copied, the rest named; any other difference is refused.
LoadedModel SavedLm(const model::TransformerOptions& options, const std::string& name) {
  auto model = model::MakeTransformer(options);
  EXPECT_TRUE(model.ok()) << model.status();
  ModelInfo info;
  info.options = (*model)->options();
  info.tokenizer_sha256 = "abc";
  info.task = "lm";
  const std::string dir = FreshDir(name);
  EXPECT_TRUE(SaveModel(dir, **model, info).ok());
  auto loaded = LoadModel(dir, at::kCPU);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  return *std::move(loaded);
}

TEST(ModelFileTest, InitializeFromAddsMemoryOrResizesItAndRefusesOtherChanges) {
  model::TransformerOptions plain = Small();
  plain.attention = "softmax";
  const LoadedModel saved = SavedLm(plain, "plain");

  model::TransformerOptions with_memory = plain;
  with_memory.xl_cache = true;  // no weights: allowed, and named
  with_memory.layer_attention = {{1, "knn"}};
  with_memory.attention_options.knn.memory_size = 256;
  with_memory.attention_options.knn.top_k = 8;
  at::manual_seed(99);  // other initial weights than the saved model's
  auto target = model::MakeTransformer(with_memory);
  ASSERT_TRUE(target.ok());
  auto changes = InitializeFrom(**target, saved);
  ASSERT_TRUE(changes.ok()) << changes.status();
  const std::string log = absl::StrJoin(*changes, "\n");
  EXPECT_THAT(log, HasSubstr("decoder.1.self: softmax -> knn (memory added; "));
  EXPECT_THAT(log, HasSubstr("--use_memory=false"));  // how to keep the layer's attention
  EXPECT_THAT(log, HasSubstr("XL cache: off -> on"));
  EXPECT_THAT(log, HasSubstr("initialised fresh: decoder.1.self_attention.head.gate_bias, "
                             "decoder.1.self_attention.head.logit_scale"));
  EXPECT_THAT(log, HasSubstr("saved but not used: decoder.1.self_attention.query.bias"));
  const auto saved_parameters = saved.model->named_parameters();
  for (const auto& item : (*target)->named_parameters()) {
    const at::Tensor* from = saved_parameters.find(item.key());
    if (from != nullptr) {
      EXPECT_TRUE(at::equal(item.value(), *from)) << item.key();
    }
  }

  // A knn model's memory grows: every tensor carries over, the change is named.
  LoadedModel saved_knn = SavedLm(with_memory, "knn");
  model::TransformerOptions bigger = with_memory;
  bigger.attention_options.knn.memory_size = 4096;
  auto grown = model::MakeTransformer(bigger);
  ASSERT_TRUE(grown.ok());
  changes = InitializeFrom(**grown, saved_knn);
  ASSERT_TRUE(changes.ok()) << changes.status();
  EXPECT_EQ(*changes, std::vector<std::string>{"knn memory: 256 -> 4096 entries per stream"});
  const at::Tensor tokens = at::randint(1, 30, {2, 6}, at::kLong);
  (*grown)->eval();
  saved_knn.model->eval();
  EXPECT_TRUE(at::equal((*grown)->ForwardLm(tokens), saved_knn.model->ForwardLm(tokens)));

  // Anything else is another model.
  model::TransformerOptions wider = plain;
  wider.ffn_dim = 64;
  auto other = model::MakeTransformer(wider);
  ASSERT_TRUE(other.ok());
  changes = InitializeFrom(**other, saved);
  EXPECT_EQ(changes.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(changes.status().message()), HasSubstr("ffn_dim: saved 32, now 64"));
  bigger.attention_options.knn.top_k = 4;  // not an allowed change for an existing knn layer
  auto other_knn = model::MakeTransformer(bigger);
  ASSERT_TRUE(other_knn.ok());
  EXPECT_THAT(std::string(InitializeFrom(**other_knn, saved_knn).status().message()),
              HasSubstr("attention_options"));
}

}  // namespace
}  // namespace memtrain::checkpoints
