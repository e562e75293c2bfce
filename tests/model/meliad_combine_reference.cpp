// A float64 port of meliad's Memorizing Transformer attention step
// (google-research/meliad, the memory variant of the transformer layer), step
// by step in loops, for the knn layer's reference tests. It uses no code from
// model/: only the weights it is given and meliad's own formulas, read from
//   transformer/memory/transformer_base.py  KVQLayer.__call__ (projections
//       without bias, normalize_kq), attention_scale_factor (|scale|)
//   transformer/memory/memory_layer.py      MemoryOnTpu (zero-filled
//       database), _chunking_sparsify and _retrieve_topk_gatherless (one
//       neighbour per bucket, never-written entries masked there only)
//   transformer/memory/transformer_layer.py _query_external_memory,
//       __call__/single_window_attention (the TRAINABLE_WEIGHTED_MEAN combine)
//   transformer/attention.py               simple_attention (local),
//       external_attention (softmax over the retrieved entries, no mask)
//   transformer/nn_components.py           safe_softmax (min_x = -1000)
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "tests/model/attention_references.h"

namespace memtrain::model::testing {
namespace {

double At(const at::Tensor& t, std::initializer_list<int64_t> index) {
  at::Tensor x = t;
  for (int64_t i : index) x = x[i];
  return x.item<double>();
}

// normalize_kq: x * rsqrt(sum(x^2) + 1e-6), over the last axis of a [d] vector.
std::vector<double> NormalizeKq(std::vector<double> x) {
  double sum = 0;
  for (double e : x) sum += e * e;
  const double factor = 1.0 / std::sqrt(sum + 1.0e-6);
  for (double& e : x) e *= factor;
  return x;
}

double DotProduct(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

std::vector<double> Row(const at::Tensor& t) {  // a 1-d tensor as a vector
  const at::Tensor c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// Plain softmax over `x` (flax nn.softmax: max subtracted).
std::vector<double> Softmax(const std::vector<double>& x) {
  const double largest = *std::max_element(x.begin(), x.end());
  double total = 0;
  std::vector<double> p(x.size());
  for (size_t i = 0; i < x.size(); ++i) total += (p[i] = std::exp(x[i] - largest));
  for (double& e : p) e /= total;
  return p;
}

// nn_components.safe_softmax with min_x: an extra element min_x in the sum.
std::vector<double> SafeSoftmax(const std::vector<double>& x, double min_x) {
  const double largest = std::max(*std::max_element(x.begin(), x.end()), min_x);
  double total = std::exp(min_x - largest);
  std::vector<double> p(x.size());
  for (size_t i = 0; i < x.size(); ++i) total += (p[i] = std::exp(x[i] - largest));
  for (double& e : p) e /= total;
  return p;
}

}  // namespace

MeliadCombine MeliadCombineReference(const MeliadWeights& weights, const at::Tensor& x,
                                     const at::Tensor& key_db, const at::Tensor& value_db,
                                     int64_t num_neighbors) {
  const int64_t batch = x.size(0), n = x.size(1), width = x.size(2);
  const int64_t heads = weights.attention_scale.size(0), d = width / heads;
  const int64_t database_size = key_db.size(2);
  // _retrieve_topk_gatherless: num_buckets = num_neighbors must divide the database.
  TORCH_CHECK(num_neighbors <= database_size && database_size % num_neighbors == 0,
              "meliad: buckets must divide the database");
  const int64_t num_buckets = num_neighbors, bucket_size = database_size / num_buckets;

  // KVQLayer: Dense without bias (x @ kernel; here kernel = W^T), split heads.
  const at::Tensor xd = x.to(at::kDouble);
  const at::Tensor queries = at::matmul(xd, weights.queries.t()).view({batch, n, heads, d});
  const at::Tensor keys = at::matmul(xd, weights.keys.t()).view({batch, n, heads, d});
  const at::Tensor values = at::matmul(xd, weights.values.t()).view({batch, n, heads, d});

  MeliadCombine out;
  out.queries = at::zeros({batch, n, heads, d}, at::kDouble);
  out.retrieved_keys = at::zeros({batch, n, heads, num_neighbors, d}, at::kDouble);
  out.retrieved_values = at::zeros({batch, n, heads, num_neighbors, d}, at::kDouble);
  out.local = at::zeros({batch, n, heads, d}, at::kDouble);
  out.external = at::zeros({batch, n, heads, d}, at::kDouble);
  out.gate = at::zeros({heads}, at::kDouble);
  at::Tensor mixed = at::zeros({batch, n, heads, d}, at::kDouble);

  // _chunking_sparsify: mask = (key.sum(-1) == 0).astype(bfloat16) * -1e6;
  // -1e6 rounds to -999424 in bfloat16.
  const double kInvalid = -999424.0;
  for (int64_t h = 0; h < heads; ++h) {
    // attention_scale_factor: |attention_scale|; the gate: sigmoid(external_memory_bias).
    const double scale = std::abs(At(weights.attention_scale, {h}));
    const double gate = 1.0 / (1.0 + std::exp(-At(weights.external_memory_bias, {h})));
    out.gate[h] = gate;
    for (int64_t b = 0; b < batch; ++b) {
      std::vector<std::vector<double>> q(n), k(n);
      for (int64_t i = 0; i < n; ++i) {
        q[i] = NormalizeKq(Row(queries[b][i][h]));
        k[i] = NormalizeKq(Row(keys[b][i][h]));
        out.queries[b][i][h] = at::tensor(q[i], at::kDouble);
      }
      // The dataset of (row b, head h) (split_dimensions (0, -2)).
      std::vector<std::vector<double>> db_keys(database_size), db_values(database_size);
      std::vector<bool> invalid(database_size);
      for (int64_t j = 0; j < database_size; ++j) {
        db_keys[j] = Row(key_db[b][h][j]);
        db_values[j] = Row(value_db[b][h][j]);
        double sum = 0;
        for (double e : db_keys[j]) sum += e;
        invalid[j] = sum == 0;
      }
      for (int64_t i = 0; i < n; ++i) {
        // topk_retrieval (unscaled, unrotated queries): scores reshaped to
        // [bucket_size, num_buckets], entry j = slot * num_buckets + bucket;
        // softmax(scores * 1e6) over each bucket's slots picks its best entry.
        std::vector<std::vector<double>> rkeys(num_buckets), rvalues(num_buckets);
        for (int64_t bucket = 0; bucket < num_buckets; ++bucket) {
          std::vector<double> sharpened(bucket_size);
          for (int64_t slot = 0; slot < bucket_size; ++slot) {
            const int64_t j = slot * num_buckets + bucket;
            sharpened[slot] = (DotProduct(q[i], db_keys[j]) + (invalid[j] ? kInvalid : 0.0)) * 1e6;
          }
          const std::vector<double> pick = Softmax(sharpened);
          rkeys[bucket].assign(d, 0.0);
          rvalues[bucket].assign(d, 0.0);
          for (int64_t slot = 0; slot < bucket_size; ++slot) {
            const int64_t j = slot * num_buckets + bucket;
            for (int64_t e = 0; e < d; ++e) {
              rkeys[bucket][e] += pick[slot] * db_keys[j][e];
              rvalues[bucket][e] += pick[slot] * db_values[j][e];
            }
          }
          out.retrieved_keys[b][i][h][bucket] = at::tensor(rkeys[bucket], at::kDouble);
          out.retrieved_values[b][i][h][bucket] = at::tensor(rvalues[bucket], at::kDouble);
        }
        // external_attention: logits q·rk times the scale, softmax over the
        // neighbours (no mask: a bucket of never-written entries gives a zero
        // key and value, logit 0), weighted sum of the values.
        std::vector<double> ext_logits(num_buckets);
        for (int64_t r = 0; r < num_buckets; ++r)
          ext_logits[r] = DotProduct(q[i], rkeys[r]) * scale;
        const std::vector<double> ext_attn = Softmax(ext_logits);
        std::vector<double> y_ext(d, 0.0);
        for (int64_t r = 0; r < num_buckets; ++r)
          for (int64_t e = 0; e < d; ++e) y_ext[e] += ext_attn[r] * rvalues[r][e];
        // simple_attention: logits q·k times the scale, causal mask -> -1e6,
        // safe_softmax with min_x = -1000.
        std::vector<double> logits(n);
        for (int64_t j = 0; j < n; ++j)
          logits[j] = j <= i ? DotProduct(q[i], k[j]) * scale : -1'000'000.0;
        const std::vector<double> attn = SafeSoftmax(logits, -1000.0);
        std::vector<double> y_local(d, 0.0);
        for (int64_t j = 0; j < n; ++j)
          for (int64_t e = 0; e < d; ++e) y_local[e] += attn[j] * At(values, {b, j, h, e});
        // TRAINABLE_WEIGHTED_MEAN: attn_ys * (1 - ebias) + y_ext * ebias.
        for (int64_t e = 0; e < d; ++e) {
          out.local[b][i][h][e] = y_local[e];
          out.external[b][i][h][e] = y_ext[e];
          mixed[b][i][h][e] = y_local[e] * (1 - gate) + y_ext[e] * gate;
        }
      }
    }
  }
  // Heads merged, then the post-attention projection.
  out.output = at::linear(mixed.view({batch, n, width}), weights.output_weight.to(at::kDouble),
                          weights.output_bias.to(at::kDouble));
  return out;
}

}  // namespace memtrain::model::testing
