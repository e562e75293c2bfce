#include "launch/model_flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"

ABSL_DECLARE_FLAG(std::string, attention);
ABSL_DECLARE_FLAG(std::vector<std::string>, knn_layers);
ABSL_DECLARE_FLAG(std::vector<std::string>, layer_attention);
ABSL_DECLARE_FLAG(int64_t, performer_features);

namespace memtrain::launch {
namespace {

using ::testing::HasSubstr;

TEST(ModelFlagsTest, DefaultsAreThePapersAndOverridesApply) {
  auto defaults = ModelOptionsFromFlags();
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->attention_options.performer.features, model::PerformerOptions().features);
  EXPECT_EQ(defaults->attention_options.knn.top_k, 32);

  absl::SetFlag(&FLAGS_attention, "memsizer");
  absl::SetFlag(&FLAGS_knn_layers, std::vector<std::string>{"4", "5"});
  absl::SetFlag(&FLAGS_layer_attention, std::vector<std::string>{"1:performer"});
  absl::SetFlag(&FLAGS_performer_features, 64);
  auto options = ModelOptionsFromFlags();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->attention, "memsizer");
  EXPECT_EQ(options->layer_attention.at(4), "knn");
  EXPECT_EQ(options->layer_attention.at(5), "knn");
  EXPECT_EQ(options->layer_attention.at(1), "performer");
  EXPECT_EQ(options->attention_options.performer.features, 64);
}

TEST(ModelFlagsTest, MalformedValuesNameTheFlag) {
  absl::SetFlag(&FLAGS_knn_layers, std::vector<std::string>{"nine"});
  auto options = ModelOptionsFromFlags();
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(options.status().message()), HasSubstr("--knn_layers: 'nine'"));
  absl::SetFlag(&FLAGS_knn_layers, std::vector<std::string>{});
  absl::SetFlag(&FLAGS_layer_attention, std::vector<std::string>{"3-knn"});
  options = ModelOptionsFromFlags();
  EXPECT_THAT(std::string(options.status().message()), HasSubstr("--layer_attention: '3-knn'"));
  absl::SetFlag(&FLAGS_layer_attention, std::vector<std::string>{});
}

}  // namespace
}  // namespace memtrain::launch
