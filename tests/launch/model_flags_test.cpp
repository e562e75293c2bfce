#include "launch/model_flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"

ABSL_DECLARE_FLAG(std::string, attention);
ABSL_DECLARE_FLAG(std::vector<std::string>, knn_layers);
ABSL_DECLARE_FLAG(std::vector<std::string>, layer_attention);
ABSL_DECLARE_FLAG(int64_t, performer_features);
ABSL_DECLARE_FLAG(int64_t, memsizer_slots);
ABSL_DECLARE_FLAG(int64_t, memsizer_cross_slots);
ABSL_DECLARE_FLAG(std::vector<std::string>, infinite_widths);
ABSL_DECLARE_FLAG(memtrain::model::PerformerKernel, performer_kernel);

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

// Every variant option is a flag (model/attention.h's tables), lists of
// numbers and enums included, and reaches model.json under its member name.
TEST(ModelFlagsTest, EveryVariantOptionIsAFlagAndReachesTheConfig) {
  absl::SetFlag(&FLAGS_infinite_widths, std::vector<std::string>{"0.25", "0.5", "1"});
  absl::SetFlag(&FLAGS_performer_kernel, model::PerformerKernel::kRelu);
  auto options = ModelOptionsFromFlags();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->attention_options.infinite.widths, (std::vector<double>{0.25, 0.5, 1}));
  EXPECT_EQ(options->attention_options.performer.kernel, model::PerformerKernel::kRelu);
  EXPECT_EQ(options->attention_options.memsizer.cross_slots, 0) << "0: the same as slots";
  absl::SetFlag(&FLAGS_memsizer_slots, 4);
  absl::SetFlag(&FLAGS_memsizer_cross_slots, 32);
  options = ModelOptionsFromFlags();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->attention_options.memsizer.slots, 4);
  EXPECT_EQ(options->attention_options.memsizer.cross_slots, 32);
  const std::string json = model::TransformerOptionsToJson(*options);
  EXPECT_THAT(json, HasSubstr("\"widths\":[0.25,0.5,1.0]"));
  EXPECT_THAT(json, HasSubstr("\"kernel\":\"relu\""));
  auto back = model::TransformerOptionsFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->attention_options.infinite.widths, options->attention_options.infinite.widths);
  EXPECT_EQ(back->attention_options.memsizer.cross_slots, 32);
  absl::SetFlag(&FLAGS_memsizer_slots, model::MemSizerOptions().slots);
  absl::SetFlag(&FLAGS_memsizer_cross_slots, 0);

  absl::SetFlag(&FLAGS_infinite_widths, std::vector<std::string>{"0.1", "wide"});
  EXPECT_THAT(std::string(ModelOptionsFromFlags().status().message()),
              HasSubstr("--infinite_widths: 'wide' is not a number"));
  absl::SetFlag(&FLAGS_infinite_widths, std::vector<std::string>{"0.005", "0.01"});
  absl::SetFlag(&FLAGS_performer_kernel, model::PerformerKernel::kSoftmax);
}

}  // namespace
}  // namespace memtrain::launch
