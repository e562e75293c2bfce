#include "model/dropout.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <mutex>

#include "common/enum_names.h"

namespace memtrain::model {
namespace {

const EnumNames<DropoutSampler>& SamplerNames() {
  static const auto* names = new EnumNames<DropoutSampler>(
      "dropout sampler", {{DropoutSampler::kPhilox, "philox"}, {DropoutSampler::kAten, "aten"}});
  return *names;
}

// Philox blocks computed together: each 32-bit word of the sixteen blocks
// sits in one array, so every round is a loop the compiler turns into vector
// multiplies (16 lanes: two AVX-512 or four AVX2 registers).
constexpr int64_t kLanes = 16;
// Elements per group of kLanes blocks (four 32-bit words each).
constexpr int64_t kGroup = 4 * kLanes;

// Fills `scales` with the scale factor of elements [group * kGroup, + count)
// (count <= kGroup): word w of lane l goes to element w * kLanes + l.
// Compiled for AVX-512, AVX2 and the baseline; the loader picks one.
__attribute__((target_clones("avx512f", "avx2", "default"))) void FillGroup(
    uint64_t key, int64_t group, uint32_t keep_below, float scale, float* scales, int64_t count) {
  uint32_t word0[kLanes], word1[kLanes], word2[kLanes], word3[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) {
    const uint64_t block = static_cast<uint64_t>(group * kLanes + l);
    word0[l] = static_cast<uint32_t>(block);
    word1[l] = static_cast<uint32_t>(block >> 32);
    word2[l] = 0;  // subsequence 0
    word3[l] = 0;
  }
  // Philox4x32's round constants and Weyl key increments (ATen's names:
  // kPhiloxSA, kPhiloxSB, kPhilox10A, kPhilox10B); ten rounds. Neither loop
  // is unrolled: fully unrolled, GCC vectorized none of the rounds (measured:
  // 3.4 against 2.3 ns per element, the mask written, in a stand-alone test).
  uint32_t key0 = static_cast<uint32_t>(key), key1 = static_cast<uint32_t>(key >> 32);
#pragma GCC unroll 1
  for (int round = 0; round < 10; ++round) {
#pragma GCC unroll 1
    for (int64_t l = 0; l < kLanes; ++l) {
      const uint64_t product0 = uint64_t{0xD2511F53u} * word0[l];
      const uint64_t product1 = uint64_t{0xCD9E8D57u} * word2[l];
      const uint32_t next0 = static_cast<uint32_t>(product1 >> 32) ^ word1[l] ^ key0;
      const uint32_t next2 = static_cast<uint32_t>(product0 >> 32) ^ word3[l] ^ key1;
      word0[l] = next0;
      word1[l] = static_cast<uint32_t>(product1);
      word2[l] = next2;
      word3[l] = static_cast<uint32_t>(product0);
    }
    key0 += 0x9E3779B9u;
    key1 += 0xBB67AE85u;
  }
  if (count == kGroup) {
    for (int64_t l = 0; l < kLanes; ++l) {
      scales[l] = word0[l] < keep_below ? scale : 0.0f;
      scales[kLanes + l] = word1[l] < keep_below ? scale : 0.0f;
      scales[2 * kLanes + l] = word2[l] < keep_below ? scale : 0.0f;
      scales[3 * kLanes + l] = word3[l] < keep_below ? scale : 0.0f;
    }
    return;
  }
  const uint32_t* words[4] = {word0, word1, word2, word3};
  for (int64_t e = 0; e < count; ++e) {
    scales[e] = words[e / kLanes][e % kLanes] < keep_below ? scale : 0.0f;
  }
}

// The threshold and scale of a keep probability 1 - p (0 < p < 1).
struct Keep {
  uint32_t below;  // round((1 - p) 2^32), at most 2^32 - 1
  float scale;
};
Keep KeepFor(double p) {
  const double keep = std::nearbyint((1.0 - p) * 4294967296.0);
  return {keep >= 4294967295.0 ? 4294967295u : static_cast<uint32_t>(keep),
          static_cast<float>(1.0 / (1.0 - p))};
}

// Whether Dropout draws this input's mask with Philox (else at::dropout).
bool UsesPhilox(const at::Tensor& input, double p, DropoutSampler sampler) {
  return sampler == DropoutSampler::kPhilox && input.is_cpu() &&
         input.scalar_type() == at::kFloat && p < 1.0;
}

// One key per mask, from the default CPU generator (so checkpoints replay it).
uint64_t DrawKey() {
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get<at::CPUGeneratorImpl>()->random64();
}

// `numel` scale factors, element e drawn from Philox group group_of(e /
// kGroup) at offset e mod kGroup (the last group cut short).
template <typename GroupOf>
at::Tensor DrawScales(int64_t numel, double p, uint64_t key, const GroupOf& group_of) {
  at::Tensor scales = at::empty({numel}, at::kFloat);
  const Keep keep = KeepFor(p);
  float* data = scales.data_ptr<float>();
  const int64_t groups = (numel + kGroup - 1) / kGroup;
  at::parallel_for(0, groups, /*grain_size=*/256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      FillGroup(key, group_of(i), keep.below, keep.scale, data + i * kGroup,
                std::min(kGroup, numel - i * kGroup));
    }
  });
  return scales;
}

}  // namespace

std::vector<std::string> DropoutSamplerNames() { return SamplerNames().names(); }
bool AbslParseFlag(absl::string_view text, DropoutSampler* value, std::string* error) {
  return SamplerNames().Parse(text, value, error);
}
std::string AbslUnparseFlag(DropoutSampler value) { return SamplerNames().Name(value); }

at::Tensor DropoutScales(int64_t numel, double p, uint64_t key) {
  return DrawScales(numel, p, key, [](int64_t group) { return group; });
}

at::Tensor DropoutScalesOfRows(const at::Tensor& rows, int64_t all_rows, int64_t row_numel,
                               double p, uint64_t key) {
  TORCH_CHECK(rows.is_cpu() && rows.scalar_type() == at::kLong && rows.dim() == 1,
              "DropoutScalesOfRows: rows must be int64 [R] on the CPU");
  if (rows.numel() > 0) {
    const int64_t lowest = rows.min().item<int64_t>(), highest = rows.max().item<int64_t>();
    TORCH_CHECK(lowest >= 0 && highest < all_rows, "DropoutScalesOfRows: rows ", lowest, " to ",
                highest, " reach outside [0, ", all_rows, ")");
  }
  if (row_numel % kGroup != 0) {  // rows share groups: draw them all
    return DropoutScales(all_rows * row_numel, p, key)
        .view({all_rows, row_numel})
        .index_select(0, rows);
  }
  const at::Tensor row_index = rows.contiguous();
  const int64_t* row = row_index.data_ptr<int64_t>();
  const int64_t groups_per_row = row_numel / kGroup;
  return DrawScales(rows.size(0) * row_numel, p, key,
                    [&](int64_t i) {
                      return row[i / groups_per_row] * groups_per_row + i % groups_per_row;
                    })
      .view({rows.size(0), row_numel});
}

at::Tensor Dropout(const at::Tensor& input, double p, bool training, DropoutSampler sampler) {
  if (!training || p == 0.0) return input;
  if (!UsesPhilox(input, p, sampler)) return at::dropout(input, p, training);
  return input * DropoutScales(input.numel(), p, DrawKey()).view(input.sizes());
}

at::Tensor DropoutRows(const at::Tensor& input, const at::Tensor& rows, int64_t all_rows, double p,
                       bool training, DropoutSampler sampler) {
  if (!training || p == 0.0) return input;
  TORCH_CHECK(input.dim() >= 1 && rows.dim() == 1 && rows.size(0) == input.size(0),
              "DropoutRows: one index per input row; got ", rows.sizes(), " for ", input.sizes());
  std::vector<int64_t> whole = input.sizes().vec();
  whole[0] = all_rows;
  if (!UsesPhilox(input, p, sampler)) {
    // at::dropout's mask of the whole (ones times its scales), drawn as
    // at::dropout of the whole would draw it.
    return input * at::dropout(at::ones(whole, input.options()), p, true).index_select(0, rows);
  }
  const int64_t row_numel = c10::multiply_integers(input.sizes().slice(1));
  return input *
         DropoutScalesOfRows(rows.cpu(), all_rows, row_numel, p, DrawKey()).view(input.sizes());
}

}  // namespace memtrain::model
