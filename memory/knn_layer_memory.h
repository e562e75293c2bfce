// File: memory/knn_layer_memory.h
//
// What one `knn` layer searches and writes: a KnnMemory, the stream of each
// batch row in it, and the scope, which says who writes the memory and when
// it is cleared (docs/KNN_MEMORY.md, "Words"). `KnnLayerMemories` gives each
// knn layer its own; TransformerImpl::NewSegmentStates asks it once per knn
// layer, and MakeKnnLayerMemories (memory/knn_memory_setup.h) makes one from
// the flags.
//
//   memory::KnnLayerMemories memories = [](int64_t layer, int64_t rows) {
//     memory::KnnLayerMemory layer_memory;   // scope kStream: row b is stream b
//     layer_memory.memory = std::make_shared<ExactKnnMemory>(
//         ExactKnnMemoryOptions(8192));
//     for (int64_t b = 0; b < rows; ++b) layer_memory.streams.push_back(b);
//     return layer_memory;
//   };
//   TransformerDecodeStates states = model->NewSegmentStates(rows, memories);
//
// Nothing here names a communicator: whoever makes the memories decides
// whether one is sharded (memory/knn_memory_setup.h), and the model only
// calls the KnnMemory interface, so model/ builds without MPI.
#ifndef MEMTRAIN_MEMORY_KNN_LAYER_MEMORY_H_
#define MEMTRAIN_MEMORY_KNN_LAYER_MEMORY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "memory/knn_memory.h"

namespace memtrain::memory {

/// Who writes a knn layer's memory, and when it is cleared.
enum class KnnScope {
  /// The paper (--knn_scope=stream): each row is a document stream with a
  /// stream id of its own, written by its row and cleared when its document
  /// starts.
  kStream,
  /// --knn_scope=shared: many rows name one stream (stream 0); each segment's
  /// rows write it in row order, and a new document clears nothing.
  kShared,
  /// A prebuilt memory (--knn_memory_dir; memory/knn_memory_store.h):
  /// searched, never written or cleared.
  kPrebuilt,
};

/// The memory of one knn layer.
struct KnnLayerMemory {
  std::shared_ptr<KnnMemory> memory;  ///< [not null]; may be shared by layers' states and ranks
  std::vector<int64_t> streams;       ///< one per batch row; distinct for kStream
  KnnScope scope = KnnScope::kStream;
};

/// Called once per knn decoder layer (its index), in layer order, with the
/// number of batch rows. Sharded memories are collective: every rank asks for
/// the same layers in the same order (NewSegmentStates does).
using KnnLayerMemories = std::function<KnnLayerMemory(int64_t layer, int64_t rows)>;

}  // namespace memtrain::memory

#endif  // MEMTRAIN_MEMORY_KNN_LAYER_MEMORY_H_
