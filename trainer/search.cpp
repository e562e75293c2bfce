#include "trainer/search.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace memtrain::trainer {
namespace {

struct Beam {
  std::vector<int64_t> tokens;
  double score = 0;
};

double Ranked(const Hypothesis& h, double length_penalty) {
  const double length = static_cast<double>(h.tokens.size() + (h.finished ? 1 : 0));
  return h.score / std::pow(std::max(length, 1.0), length_penalty);
}

}  // namespace

std::vector<Hypothesis> BeamSearch(model::TransformerImpl& model, const at::Tensor& source,
                                   const at::Tensor& prompt, const SearchOptions& options) {
  TORCH_CHECK(options.beam >= 1 && options.max_length >= 1,
              "BeamSearch: beam and max_length must be >= 1");
  TORCH_CHECK(prompt.dim() == 2 && prompt.size(1) >= 1,
              "BeamSearch: prompt must be [B, P], P >= 1");
  at::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const int64_t rows = prompt.size(0), k = options.beam;
  const at::Tensor expand =
      at::arange(rows, prompt.options()).repeat_interleave(k);  // row of each beam
  at::Tensor memory, beam_source;
  if (source.defined()) {
    beam_source = source.index_select(0, expand);
    memory = model.Encode(beam_source);
  }
  model::TransformerDecodeStates states =
      model.NewDecodeStates(rows * k, source.defined() ? 0 : options.segment_length);
  at::Tensor logits = model.DecodeStep(prompt.index_select(0, expand), memory, beam_source, states);

  std::vector<std::vector<Beam>> alive(rows, std::vector<Beam>(k));
  for (auto& beams : alive) {
    for (int64_t j = 1; j < k; ++j) beams[j].score = -std::numeric_limits<double>::infinity();
  }
  std::vector<std::vector<Hypothesis>> finished(rows);
  std::vector<bool> done(rows, false);
  for (int64_t step = 0; step < options.max_length; ++step) {
    const at::Tensor log_probs =
        logits.select(1, logits.size(1) - 1).to(at::kDouble).log_softmax(-1);
    const int64_t vocab = log_probs.size(1);
    at::Tensor scores = log_probs.cpu().view({rows, k, vocab});
    std::vector<double> alive_scores;
    for (const auto& beams : alive) {
      for (const Beam& b : beams) alive_scores.push_back(b.score);
    }
    scores = scores + at::tensor(alive_scores, at::kDouble).view({rows, k, 1});
    // 2k candidates per row: enough to keep k alive even if k of them end.
    auto [top_scores, top_index] =
        scores.view({rows, k * vocab}).topk(std::min(2 * k, k * vocab), 1);
    auto score_at = top_scores.accessor<double, 2>();
    auto index_at = top_index.accessor<int64_t, 2>();
    std::vector<int64_t> reorder, next_tokens;
    std::vector<std::vector<Beam>> next(rows);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < top_index.size(1) && static_cast<int64_t>(next[r].size()) < k; ++c) {
        const double score = score_at[r][c];
        if (!std::isfinite(score)) break;
        const int64_t from = index_at[r][c] / vocab, token = index_at[r][c] % vocab;
        std::vector<int64_t> tokens = alive[r][from].tokens;
        if (token == options.eos) {
          if (!done[r] && c < k) finished[r].push_back({std::move(tokens), score, true});
          continue;
        }
        tokens.push_back(token);
        next[r].push_back({std::move(tokens), score});
        reorder.push_back(r * k + from);
        next_tokens.push_back(token);
      }
      // Every candidate ended (tiny vocabularies): pad with dead beams.
      while (static_cast<int64_t>(next[r].size()) < k) {
        next[r].push_back({alive[r][0].tokens, -std::numeric_limits<double>::infinity()});
        reorder.push_back(r * k);
        next_tokens.push_back(options.eos);
      }
      // Done when k hypotheses have ended and no live beam can still beat the
      // worst of them (scores only fall as tokens are added).
      if (!done[r] && static_cast<int64_t>(finished[r].size()) >= k) {
        double worst = std::numeric_limits<double>::infinity();
        for (const Hypothesis& h : finished[r])
          worst = std::min(worst, Ranked(h, options.length_penalty));
        Hypothesis best_alive{next[r][0].tokens, next[r][0].score, false};
        done[r] = Ranked(best_alive, options.length_penalty) <= worst;
      }
    }
    alive = std::move(next);
    if (step + 1 == options.max_length ||
        std::all_of(done.begin(), done.end(), [](bool d) { return d; }))
      break;
    const at::Tensor order = at::tensor(reorder, at::kLong).to(prompt.device());
    states.Reorder(order);
    logits =
        model.DecodeStep(at::tensor(next_tokens, at::kLong).to(prompt.device()).view({rows * k, 1}),
                         memory, beam_source, states);
  }
  std::vector<Hypothesis> best(rows);
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<Hypothesis> candidates = finished[r];
    for (const Beam& b : alive[r]) {
      if (std::isfinite(b.score)) candidates.push_back({b.tokens, b.score, false});
    }
    double best_rank = -std::numeric_limits<double>::infinity();
    for (Hypothesis& h : candidates) {
      const double rank = Ranked(h, options.length_penalty);
      if (rank > best_rank) {
        best_rank = rank;
        best[r] = std::move(h);
      }
    }
  }
  if (was_training) model.train();
  return best;
}

at::Tensor SamplingDistribution(const at::Tensor& logits, const SearchOptions& options) {
  TORCH_CHECK(
      options.temperature > 0 && options.top_k >= 0 && options.top_p > 0 && options.top_p <= 1,
      "Sample: temperature > 0, top_k >= 0 and 0 < top_p <= 1 are required");
  at::Tensor scaled = logits.to(at::kDouble) / options.temperature;
  const int64_t vocab = scaled.size(-1);
  if (options.top_k > 0 && options.top_k < vocab) {
    const at::Tensor kth =
        std::get<0>(scaled.topk(options.top_k, -1)).narrow(-1, options.top_k - 1, 1);
    scaled = scaled.masked_fill(scaled < kth, -std::numeric_limits<double>::infinity());
  }
  at::Tensor probs = scaled.softmax(-1);
  if (options.top_p < 1) {
    auto [sorted, order] = probs.sort(-1, /*descending=*/true);
    // A token stays when the tokens more likely than it hold less than top_p.
    const at::Tensor before = sorted.cumsum(-1) - sorted;
    sorted = sorted.masked_fill(before >= options.top_p, 0);
    probs = at::zeros_like(probs).scatter(-1, order, sorted);
    probs = probs / probs.sum(-1, /*keepdim=*/true);
  }
  return probs;
}

std::vector<Hypothesis> Sample(model::TransformerImpl& model, const at::Tensor& source,
                               const at::Tensor& prompt, const SearchOptions& options,
                               const std::vector<uint64_t>& row_seeds) {
  TORCH_CHECK(options.max_length >= 1, "Sample: max_length must be >= 1");
  TORCH_CHECK(prompt.dim() == 2 && prompt.size(1) >= 1, "Sample: prompt must be [B, P], P >= 1");
  const int64_t rows = prompt.size(0);
  TORCH_CHECK(static_cast<int64_t>(row_seeds.size()) == rows, "Sample: one seed per row");
  at::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  at::Tensor memory;
  if (source.defined()) memory = model.Encode(source);
  model::TransformerDecodeStates states =
      model.NewDecodeStates(rows, source.defined() ? 0 : options.segment_length);
  at::Tensor logits = model.DecodeStep(prompt, memory, source, states);
  std::vector<at::Generator> generators;
  for (uint64_t seed : row_seeds)
    generators.push_back(at::make_generator<at::CPUGeneratorImpl>(seed));
  std::vector<Hypothesis> drawn(rows);
  for (int64_t step = 0; step < options.max_length; ++step) {
    const at::Tensor last = logits.select(1, logits.size(1) - 1).to(at::kDouble).cpu();
    const at::Tensor probs = SamplingDistribution(last, options);
    const at::Tensor log_probs = last.log_softmax(-1);
    std::vector<int64_t> next(rows, options.eos);
    for (int64_t r = 0; r < rows; ++r) {
      Hypothesis& h = drawn[r];
      if (h.finished) continue;
      const int64_t token =
          at::multinomial(probs[r], 1, /*replacement=*/false, generators[r]).item<int64_t>();
      h.score += log_probs[r][token].item<double>();
      if (token == options.eos) {
        h.finished = true;
      } else {
        h.tokens.push_back(token);
        next[r] = token;
      }
    }
    if (step + 1 == options.max_length ||
        std::all_of(drawn.begin(), drawn.end(), [](const Hypothesis& h) { return h.finished; }))
      break;
    logits = model.DecodeStep(at::tensor(next, at::kLong).to(prompt.device()).view({rows, 1}),
                              memory, source, states);
  }
  if (was_training) model.train();
  return drawn;
}

}  // namespace memtrain::trainer
