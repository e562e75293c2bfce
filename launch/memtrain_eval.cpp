// memtrain-eval: perplexity of a saved model on a corpus (every rank
// evaluates its shard), optionally with and without the memory layers'
// memories, and for seq2seq tasks the BLEU or ROUGE of beam-search output.
//
//   memtrain-eval --model=runs/demo/model --data=demo.valid.h5 --compare_memory
//   mpirun -np 2 memtrain-eval --model=runs/wmt/model --data=wmt16.valid.h5 --generate=200 --beam=4
#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "common/binary.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "launch/batch_flags.h"
#include "launch/knn_memory_flags.h"
#include "launch/rank_context.h"
#include "launch/saved_model_flags.h"
#include "memory/knn_memory_store.h"
#include "trainer/evaluate.h"
#include "trainer/generation.h"
#include "trainer/metrics_log.h"

ABSL_FLAG(bool, use_memory, true,
          "lm: memory layers keep each stream's memory across segments; false: no memory (an XL "
          "cache is kept).");
ABSL_FLAG(bool, compare_memory, false, "lm: evaluate with and without the memories and compare.");
ABSL_FLAG(std::string, knn_memory_dir, "",
          "lm: the knn layers search this prebuilt memory (memtrain-build-memory --out) read-only "
          "instead of "
          "memories that start empty. Run with as many ranks as built it.");
ABSL_FLAG(int64_t, long_range_from, 0,
          "lm: report the long-range ppl of the targets at least this many tokens into their "
          "document as well (0: only the corpus's marked tokens, the demo corpus's): how a model "
          "uses far context on corpora without marks.");
ABSL_FLAG(int64_t, steps, 0, "Batches per rank to evaluate; 0: the whole corpus.");
ABSL_FLAG(int64_t, generate, 0,
          "seq2seq: beam-search the first N records (rank 0) and score them.");
ABSL_FLAG(std::string, metrics, "", "Append the results as JSON lines here (rank 0).");

namespace memtrain {
namespace {

absl::Status Run(int argc, char** argv) {
  MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("steps", absl::GetFlag(FLAGS_steps), 0));
  MEMTRAIN_RETURN_IF_ERROR(RequireFlagAtLeast("generate", absl::GetFlag(FLAGS_generate), 0));
  MEMTRAIN_RETURN_IF_ERROR(
      RequireFlagAtLeast("long_range_from", absl::GetFlag(FLAGS_long_range_from), 0));
  MEMTRAIN_ASSIGN_OR_RETURN(launch::RankContext rank, launch::StartRank(&argc, &argv, "[eval]"));
  const bool lead = rank.world->rank() == 0;
  MEMTRAIN_ASSIGN_OR_RETURN(launch::ModelAndData opened,
                            launch::OpenModelAndDataFromFlags(rank.device.device));
  checkpoints::LoadedModel& loaded = opened.model;
  const std::string& data_path = opened.data_path;
  std::unique_ptr<trainer::MetricsLog> log;
  if (lead && !absl::GetFlag(FLAGS_metrics).empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(log, trainer::MetricsLog::Open(absl::GetFlag(FLAGS_metrics)));
  }
  data::BatchSourceOptions source_options;
  source_options.rank = rank.world->rank();
  source_options.world_size = rank.world->size();
  source_options.prefix_lm = loaded.info.options.encoder_layers == 0;
  source_options.long_range_from = absl::GetFlag(FLAGS_long_range_from);
  MEMTRAIN_RETURN_IF_ERROR(launch::ApplyBatchShapeFlags(&source_options));
  MEMTRAIN_ASSIGN_OR_RETURN(auto source, data::OpenBatchSource(data_path, source_options));

  MEMTRAIN_ASSIGN_OR_RETURN(memory::KnnMemorySetup knn_setup, launch::KnnMemorySetupFromFlags());
  if (const std::string dir = absl::GetFlag(FLAGS_knn_memory_dir); !dir.empty()) {
    MEMTRAIN_ASSIGN_OR_RETURN(
        memory::KnnMemoryStore store,
        memory::ReadKnnMemoryStore(dir, loaded.weights_sha256,
                                   model::KnnLayers(loaded.info.options), *rank.world));
    for (const auto& [layer, entries] : store.info.entries) {
      LOG_IF(INFO, lead) << absl::StrFormat(
          "[eval] decoder.%d searches %s read-only: %d entries of %s over %d rank(s)", layer, dir,
          entries, store.info.corpus, store.info.ranks);
    }
    knn_setup.prebuilt = std::move(store.memories);
  }
  MEMTRAIN_ASSIGN_OR_RETURN(
      const memory::KnnLayerMemories knn_memory,
      memory::MakeKnnLayerMemories(knn_setup, loaded.info.options.attention_options.knn.memory_size,
                                   *rank.world));

  std::vector<bool> memory_settings = {absl::GetFlag(FLAGS_use_memory)};
  if (absl::GetFlag(FLAGS_compare_memory)) memory_settings = {true, false};
  MEMTRAIN_ASSIGN_OR_RETURN(
      const std::vector<trainer::LossTotals> results,
      trainer::EvaluateMemorySettings(*loaded.model, loaded.info.task, knn_memory, memory_settings,
                                      *source, *rank.world, rank.device.device,
                                      absl::GetFlag(FLAGS_steps)));
  for (size_t i = 0; lead && i < results.size(); ++i) {
    const trainer::LossTotals& totals = results[i];
    const std::string setting =
        loaded.info.task == "lm" ? (memory_settings[i] ? " with memory" : " without memory") : "";
    std::cout << absl::StrFormat("[eval] %s%s: ppl %.3f over %.0f tokens", data_path, setting,
                                 totals.perplexity(), totals.tokens);
    if (totals.long_range_tokens > 0) {
      std::cout << absl::StrFormat(" | long-range ppl %.3f over %.0f tokens",
                                   totals.long_range_perplexity(), totals.long_range_tokens);
    }
    std::cout << std::endl;
    if (log) {
      MEMTRAIN_RETURN_IF_ERROR(
          log->Write("eval", {{"data", data_path},
                              {"memory", memory_settings[i]},
                              {"ppl", totals.perplexity()},
                              {"long_range_ppl", totals.long_range_perplexity()},
                              {"tokens", totals.tokens},
                              {"step", loaded.info.step}}));
    }
  }
  if (lead && results.size() == 2 && results[0].long_range_tokens > 0) {
    std::cout << "[eval] memory bought: " << trainer::DescribeMemoryGain(results[0], results[1])
              << std::endl;
  }

  const int64_t generate = absl::GetFlag(FLAGS_generate);
  if (generate > 0 && lead) {
    trainer::GenerationOptions options;
    options.search = launch::SearchOptionsFromFlags(opened.data->tokenizer().eos_id);
    // Only the search is timed (not loading the model or the corpus), so that
    // scripts/reproduce can compare the inference cost of attention kinds.
    const auto start = std::chrono::steady_clock::now();
    MEMTRAIN_ASSIGN_OR_RETURN(
        auto examples, trainer::GenerateRecords(*loaded.model, *opened.data, 0, generate, options,
                                                rank.device.device));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    MEMTRAIN_ASSIGN_OR_RETURN(trainer::GenerationScore score,
                              trainer::ScoreGeneration(loaded.info.task, examples));
    if (!score.metric.empty()) {
      std::cout << "[eval] " << score.summary << std::endl;
      if (log) {
        MEMTRAIN_RETURN_IF_ERROR(log->Write("eval", {{"data", data_path},
                                                     {"metric", score.metric},
                                                     {"value", score.value},
                                                     {"summary", score.summary},
                                                     {"examples", examples.size()},
                                                     {"seconds", seconds}}));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace memtrain

int main(int argc, char** argv) {
  memtrain::InitBinary(
      argc, argv,
      "Evaluates a saved model on a corpus: perplexity (with and without memory), and "
      "BLEU/ROUGE of beam search for seq2seq tasks.\n"
      "  memtrain-eval --model=runs/demo/model --data=demo.valid.h5 --compare_memory");
  return memtrain::RunBinary("[eval]", [&] { return memtrain::Run(argc, argv); });
}
