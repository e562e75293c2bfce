#include "data/corpus_file.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "data/internal/text.h"
#include "nlohmann/json.hpp"

namespace memtrain::data {
namespace {

// Dataset layout (docs/DATA.md). Training reads short random slices (a
// document's next segment), and a compressed chunk is decompressed whole on
// every cache miss, which made an epoch of a 23M-token corpus 20x slower
// than with uncompressed tokens (bench-data, TOOLCHAIN.md §6). So token ids
// are stored uncompressed in 64 KiB chunks (checksummed), and only the
// long-range flags (mostly zeros), offsets and ids are compressed.
constexpr hsize_t kTokenChunk = 16384;
constexpr hsize_t kOffsetChunk = 16384;
constexpr unsigned kDeflateLevel = 1;  // level 4 saved 1 % more, cost 20 % (TOOLCHAIN.md §6)
constexpr int64_t kWriteBufferElements = int64_t{1} << 20;

// Process-wide HDF5 settings, applied before the first file is opened:
// - HDF5 prints its error stack to stderr by default; memtrain reports errors
//   itself, naming the file and the dataset.
// - HDF5 keeps freed blocks in free lists per block size, and every
//   compressed chunk has its own size, so while a file is open those lists
//   grew with the number of chunks read: +114 MB over an epoch of a 23M-token
//   corpus (bench-data). Capping them keeps memory flat in corpus size.
void ConfigureHdf5() {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  H5set_free_list_limits(/*reg_global_lim=*/1 << 20, /*reg_list_lim=*/1 << 18,
                         /*arr_global_lim=*/1 << 20, /*arr_list_lim=*/1 << 18,
                         /*blk_global_lim=*/4 << 20, /*blk_list_lim=*/1 << 20);
}

absl::Status Hdf5Error(const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat(path, ": ", what));
}

// ---- attributes ----------------------------------------------------------------

absl::Status WriteStringAttribute(hid_t object, const char* name, const std::string& value) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, std::max<size_t>(value.size(), 1));
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attribute = H5Acreate2(object, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  const herr_t written = attribute < 0 ? -1 : H5Awrite(attribute, type, padded.data());
  if (attribute >= 0) H5Aclose(attribute);
  H5Sclose(space);
  H5Tclose(type);
  if (written < 0) return absl::InternalError(absl::StrCat("cannot write attribute ", name));
  return absl::OkStatus();
}

absl::Status WriteIntAttribute(hid_t object, const char* name, int64_t value) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attribute = H5Acreate2(object, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  const herr_t written = attribute < 0 ? -1 : H5Awrite(attribute, H5T_NATIVE_INT64, &value);
  if (attribute >= 0) H5Aclose(attribute);
  H5Sclose(space);
  if (written < 0) return absl::InternalError(absl::StrCat("cannot write attribute ", name));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadStringAttribute(const std::string& path, hid_t object,
                                                const char* name) {
  if (H5Aexists(object, name) <= 0) {
    return absl::DataLossError(absl::StrCat(path, ": attribute '", name, "' is missing"));
  }
  hid_t attribute = H5Aopen(object, name, H5P_DEFAULT);
  hid_t type = H5Aget_type(attribute);
  std::string value;
  herr_t read = -1;
  if (H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type)) {
    value.assign(H5Tget_size(type), '\0');
    hid_t memory_type = H5Tcopy(H5T_C_S1);
    H5Tset_size(memory_type, value.size());
    H5Tset_strpad(memory_type, H5T_STR_NULLPAD);
    read = H5Aread(attribute, memory_type, value.data());
    H5Tclose(memory_type);
  }
  H5Tclose(type);
  H5Aclose(attribute);
  if (read < 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": attribute '", name, "' is not a fixed-length string"));
  }
  value.resize(strnlen(value.data(), value.size()));
  return value;
}

absl::StatusOr<int64_t> ReadIntAttribute(const std::string& path, hid_t object, const char* name) {
  if (H5Aexists(object, name) <= 0) {
    return absl::DataLossError(absl::StrCat(path, ": attribute '", name, "' is missing"));
  }
  hid_t attribute = H5Aopen(object, name, H5P_DEFAULT);
  int64_t value = 0;
  const herr_t read = H5Aread(attribute, H5T_NATIVE_INT64, &value);
  H5Aclose(attribute);
  if (read < 0) {
    return absl::DataLossError(absl::StrCat(path, ": attribute '", name, "' is not an integer"));
  }
  return value;
}

// ---- datasets --------------------------------------------------------------------

// Whole 1-D dataset into a vector.
template <typename T>
absl::StatusOr<std::vector<T>> ReadWhole(const std::string& path, hid_t file, const char* name,
                                         hid_t memory_type) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
    return absl::DataLossError(absl::StrCat(path, ": dataset ", name, " is missing"));
  }
  hid_t dataset = H5Dopen2(file, name, H5P_DEFAULT);
  hid_t space = H5Dget_space(dataset);
  hsize_t size = 0;
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank == 1) H5Sget_simple_extent_dims(space, &size, nullptr);
  std::vector<T> values(size);
  const herr_t read =
      rank != 1   ? -1
      : size == 0 ? 0
                  : H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
  H5Sclose(space);
  H5Dclose(dataset);
  if (read < 0) {
    return absl::DataLossError(
        absl::StrCat(path, ": cannot read dataset ", name, " (truncated or corrupt file?)"));
  }
  return values;
}

int64_t DatasetLength(hid_t file, const char* name) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) return -1;
  hid_t dataset = H5Dopen2(file, name, H5P_DEFAULT);
  hid_t space = H5Dget_space(dataset);
  hsize_t size = 0;
  H5Sget_simple_extent_dims(space, &size, nullptr);
  H5Sclose(space);
  H5Dclose(dataset);
  return static_cast<int64_t>(size);
}

absl::Status WriteWhole(hid_t group, const char* name, hid_t file_type, hid_t memory_type,
                        const void* data, hsize_t size) {
  hid_t space = H5Screate_simple(1, &size, nullptr);
  hid_t dataset = H5Dcreate2(group, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const herr_t written = dataset < 0 ? -1
                         : size == 0
                             ? 0
                             : H5Dwrite(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (dataset >= 0) H5Dclose(dataset);
  H5Sclose(space);
  if (written < 0) return absl::InternalError(absl::StrCat("cannot write dataset ", name));
  return absl::OkStatus();
}

const char* TokensName(Field field) {
  return field == Field::kSource ? "/source/tokens" : "/target/tokens";
}

std::string NowRfc3339() {
  return absl::FormatTime(absl::RFC3339_sec, absl::Now(), absl::UTCTimeZone());
}

}  // namespace

std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  std::string hex;
  for (unsigned i = 0; i < length; ++i) absl::StrAppendFormat(&hex, "%02x", digest[i]);
  return hex;
}

absl::StatusOr<InputFile> DescribeInputFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  EVP_DigestInit_ex(context, EVP_sha256(), nullptr);
  std::vector<char> buffer(1 << 20);
  InputFile file{path, 0, ""};
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize got = in.gcount();
    if (got <= 0) break;
    EVP_DigestUpdate(context, buffer.data(), static_cast<size_t>(got));
    file.bytes += got;
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context, digest, &length);
  EVP_MD_CTX_free(context);
  for (unsigned i = 0; i < length; ++i) absl::StrAppendFormat(&file.sha256, "%02x", digest[i]);
  return file;
}

// ---- CorpusWriter ----------------------------------------------------------------

// An extendible 1-D dataset; appends are buffered and written in large
// hyperslabs.
struct CorpusWriter::Column {
  hid_t dataset = -1;
  hid_t memory_type = -1;
  size_t element_size = 0;
  int64_t written = 0;
  std::vector<char> buffer;

  static absl::StatusOr<std::unique_ptr<Column>> Create(hid_t file, const char* name,
                                                        hid_t file_type, hid_t memory_type,
                                                        hsize_t chunk, bool compress) {
    auto column = std::make_unique<Column>();
    column->memory_type = memory_type;
    column->element_size = H5Tget_size(memory_type);
    hsize_t zero = 0, unlimited = H5S_UNLIMITED;
    hid_t space = H5Screate_simple(1, &zero, &unlimited);
    hid_t properties = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(properties, 1, &chunk);
    // Fletcher-32 per chunk: a flipped byte fails the read that touches it
    // instead of becoming a wrong token.
    H5Pset_fletcher32(properties);
    if (compress) {
      H5Pset_shuffle(properties);
      H5Pset_deflate(properties, kDeflateLevel);
    }
    hid_t links = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(links, 1);
    column->dataset = H5Dcreate2(file, name, file_type, space, links, properties, H5P_DEFAULT);
    H5Pclose(links);
    H5Pclose(properties);
    H5Sclose(space);
    if (column->dataset < 0) return absl::InternalError(absl::StrCat("cannot create ", name));
    return column;
  }

  template <typename T>
  void Append(const T* values, size_t count) {
    const char* bytes = reinterpret_cast<const char*>(values);
    buffer.insert(buffer.end(), bytes, bytes + count * sizeof(T));
  }
  bool full() const {
    return static_cast<int64_t>(buffer.size() / element_size) >= kWriteBufferElements;
  }

  absl::Status Flush() {
    const hsize_t count = buffer.size() / element_size;
    if (count == 0) return absl::OkStatus();
    hsize_t start = static_cast<hsize_t>(written), new_size = start + count;
    if (H5Dset_extent(dataset, &new_size) < 0) return absl::InternalError("H5Dset_extent failed");
    hid_t file_space = H5Dget_space(dataset);
    H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
    hid_t memory_space = H5Screate_simple(1, &count, nullptr);
    const herr_t status =
        H5Dwrite(dataset, memory_type, memory_space, file_space, H5P_DEFAULT, buffer.data());
    H5Sclose(memory_space);
    H5Sclose(file_space);
    if (status < 0) return absl::InternalError("H5Dwrite failed (disk full?)");
    written += static_cast<int64_t>(count);
    buffer.clear();
    return absl::OkStatus();
  }

  ~Column() {
    if (dataset >= 0) H5Dclose(dataset);
  }
};

CorpusWriter::CorpusWriter(std::string path, std::string partial_path, std::string task)
    : path_(std::move(path)), partial_path_(std::move(partial_path)), task_(std::move(task)) {}

void CorpusWriter::CloseColumns() {
  for (std::unique_ptr<Column>* column :
       {&source_tokens_, &source_offsets_, &source_long_range_, &target_tokens_, &target_offsets_,
        &id_bytes_, &id_offsets_}) {
    column->reset();
  }
}

CorpusWriter::~CorpusWriter() {
  CloseColumns();
  if (file_ >= 0) H5Fclose(file_);
  if (!finished_) std::remove(partial_path_.c_str());
}

absl::StatusOr<std::unique_ptr<CorpusWriter>> CorpusWriter::Create(const std::string& path,
                                                                   const std::string& task,
                                                                   const TokenizerInfo& tokenizer) {
  ConfigureHdf5();
  const std::string partial = StagingPath(path);
  MEMTRAIN_ASSIGN_OR_RETURN(const TaskInfo* task_info, FindTask(task));
  std::unique_ptr<CorpusWriter> writer(new CorpusWriter(path, partial, task));
  writer->seq2seq_ = task_info->seq2seq;
  writer->file_ = H5Fcreate(partial.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (writer->file_ < 0) {
    return absl::PermissionDeniedError(absl::StrCat(partial,
                                                    ": cannot create (directory missing "
                                                    "or not writable?)"));
  }
  const hid_t f = writer->file_;
  MEMTRAIN_ASSIGN_OR_RETURN(writer->source_tokens_,
                            Column::Create(f, "/source/tokens", H5T_STD_I32LE, H5T_NATIVE_INT32,
                                           kTokenChunk, /*compress=*/false));
  MEMTRAIN_ASSIGN_OR_RETURN(writer->source_offsets_,
                            Column::Create(f, "/source/offsets", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                           kOffsetChunk, /*compress=*/true));
  MEMTRAIN_ASSIGN_OR_RETURN(writer->source_long_range_,
                            Column::Create(f, "/source/long_range", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                                           kTokenChunk, /*compress=*/true));
  if (writer->seq2seq_) {
    MEMTRAIN_ASSIGN_OR_RETURN(writer->target_tokens_,
                              Column::Create(f, "/target/tokens", H5T_STD_I32LE, H5T_NATIVE_INT32,
                                             kTokenChunk, /*compress=*/false));
    MEMTRAIN_ASSIGN_OR_RETURN(writer->target_offsets_,
                              Column::Create(f, "/target/offsets", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                             kOffsetChunk, /*compress=*/true));
    MEMTRAIN_ASSIGN_OR_RETURN(writer->id_bytes_,
                              Column::Create(f, "/ids/bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                                             kTokenChunk, /*compress=*/true));
    MEMTRAIN_ASSIGN_OR_RETURN(writer->id_offsets_,
                              Column::Create(f, "/ids/offsets", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                             kOffsetChunk, /*compress=*/true));
  }
  const int64_t zero = 0;
  writer->source_offsets_->Append(&zero, 1);
  if (writer->target_offsets_) writer->target_offsets_->Append(&zero, 1);
  if (writer->id_offsets_) writer->id_offsets_->Append(&zero, 1);

  // The tokenizer, whole: model bytes for SentencePiece, pieces for decoding
  // without it.
  hid_t group = H5Gcreate2(f, "/tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  std::string piece_bytes;
  std::vector<int64_t> piece_offsets{0};
  for (const std::string& piece : tokenizer.pieces) {
    piece_bytes += piece;
    piece_offsets.push_back(static_cast<int64_t>(piece_bytes.size()));
  }
  absl::Status status = WriteWhole(group, "model", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                                   tokenizer.model_bytes.data(), tokenizer.model_bytes.size());
  if (status.ok()) {
    status = WriteWhole(group, "piece_bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, piece_bytes.data(),
                        piece_bytes.size());
  }
  if (status.ok()) {
    status = WriteWhole(group, "piece_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64,
                        piece_offsets.data(), piece_offsets.size());
  }
  for (const auto& [name, value] :
       std::vector<std::pair<const char*, int64_t>>{{"vocab_size", tokenizer.vocab_size},
                                                    {"pad_id", tokenizer.pad_id},
                                                    {"unk_id", tokenizer.unk_id},
                                                    {"bos_id", tokenizer.bos_id},
                                                    {"eos_id", tokenizer.eos_id},
                                                    {"sep_id", tokenizer.sep_id}}) {
    if (status.ok()) status = WriteIntAttribute(group, name, value);
  }
  if (status.ok()) status = WriteStringAttribute(group, "sha256", tokenizer.sha256);
  if (status.ok()) status = WriteStringAttribute(group, "model_type", tokenizer.model_type);
  H5Gclose(group);
  if (!status.ok()) return absl::InternalError(absl::StrCat(partial, ": ", status.message()));
  return writer;
}

absl::Status CorpusWriter::Append(const std::vector<int32_t>& source,
                                  const std::vector<uint8_t>& source_long_range,
                                  const std::vector<int32_t>& target, const std::string& id) {
  if (!source_long_range.empty() && source_long_range.size() != source.size()) {
    return absl::InternalError("CorpusWriter::Append: long-range flags do not match the tokens");
  }
  if (seq2seq_ == target.empty()) {
    return absl::InternalError(absl::StrCat("CorpusWriter::Append: task ", task_,
                                            seq2seq_ ? " needs" : " takes no", " target tokens"));
  }
  source_tokens_->Append(source.data(), source.size());
  if (source_long_range.empty()) {
    const std::vector<uint8_t> zeros(source.size(), 0);
    source_long_range_->Append(zeros.data(), zeros.size());
  } else {
    any_long_range_ =
        any_long_range_ || std::any_of(source_long_range.begin(), source_long_range.end(),
                                       [](uint8_t flag) { return flag != 0; });
    source_long_range_->Append(source_long_range.data(), source_long_range.size());
  }
  source_tokens_count_ += static_cast<int64_t>(source.size());
  source_offsets_->Append(&source_tokens_count_, 1);
  if (target_tokens_) {
    target_tokens_->Append(target.data(), target.size());
    target_tokens_count_ += static_cast<int64_t>(target.size());
    target_offsets_->Append(&target_tokens_count_, 1);
    id_bytes_->Append(id.data(), id.size());
    id_bytes_count_ += static_cast<int64_t>(id.size());
    id_offsets_->Append(&id_bytes_count_, 1);
  }
  ++records_;
  if (source_tokens_->full() || (target_tokens_ && target_tokens_->full())) return Flush();
  return absl::OkStatus();
}

absl::Status CorpusWriter::Flush() {
  for (Column* column :
       {source_tokens_.get(), source_offsets_.get(), source_long_range_.get(), target_tokens_.get(),
        target_offsets_.get(), id_bytes_.get(), id_offsets_.get()}) {
    if (column == nullptr) continue;
    absl::Status status = column->Flush();
    if (!status.ok())
      return absl::InternalError(absl::StrCat(partial_path_, ": ", status.message()));
  }
  return absl::OkStatus();
}

absl::Status CorpusWriter::Finish(CorpusHeader header) {
  MEMTRAIN_RETURN_IF_ERROR(Flush());
  if (header.task != task_) {
    return absl::InternalError(
        absl::StrCat("header task ", header.task, " != writer task ", task_));
  }
  header.num_records = records_;
  header.num_source_tokens = source_tokens_count_;
  header.num_target_tokens = target_tokens_count_;
  header.has_long_range = any_long_range_;
  if (header.created_at.empty()) header.created_at = NowRfc3339();
  nlohmann::json inputs = nlohmann::json::array();
  for (const InputFile& input : header.inputs) {
    inputs.push_back({{"path", input.path}, {"bytes", input.bytes}, {"sha256", input.sha256}});
  }
  absl::Status status = absl::OkStatus();
  auto string_attribute = [&](const char* name, const std::string& value) {
    if (status.ok()) status = WriteStringAttribute(file_, name, value);
  };
  auto int_attribute = [&](const char* name, int64_t value) {
    if (status.ok()) status = WriteIntAttribute(file_, name, value);
  };
  string_attribute("format", kFormatName);
  int_attribute("format_version", kFormatVersion);
  string_attribute("corpus", header.corpus);
  string_attribute("split", header.split);
  string_attribute("task", header.task);
  int_attribute("num_records", header.num_records);
  int_attribute("num_source_tokens", header.num_source_tokens);
  int_attribute("num_target_tokens", header.num_target_tokens);
  int_attribute("malformed_skipped", header.malformed_skipped);
  int_attribute("empty_skipped", header.empty_skipped);
  int_attribute("has_long_range", header.has_long_range ? 1 : 0);
  string_attribute("inputs", inputs.dump());
  string_attribute("options", header.options_json);
  string_attribute("created_by", header.created_by);
  string_attribute("created_at", header.created_at);
  // Last: a file without `complete` = 1 is refused by CorpusFile::Open.
  int_attribute("complete", 1);
  if (!status.ok()) return absl::InternalError(absl::StrCat(partial_path_, ": ", status.message()));

  CloseColumns();
  const herr_t closed = H5Fclose(file_);
  file_ = -1;
  if (closed < 0) return absl::InternalError(absl::StrCat(partial_path_, ": H5Fclose failed"));
  MEMTRAIN_RETURN_IF_ERROR(Publish(partial_path_, path_));
  finished_ = true;
  return absl::OkStatus();
}

// ---- CorpusFile ------------------------------------------------------------------

CorpusFile::~CorpusFile() {
  for (const auto& [name, dataset] : datasets_) H5Dclose(dataset);
  if (file_ >= 0) H5Fclose(file_);
}

absl::Status CorpusFile::set_chunk_cache_bytes(int64_t bytes) {
  if (!datasets_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": the chunk cache size is fixed once a dataset has been read"));
  }
  options_.chunk_cache_bytes = bytes;
  return absl::OkStatus();
}

absl::StatusOr<hid_t> CorpusFile::Dataset(const char* name) {
  auto it = datasets_.find(name);
  if (it != datasets_.end()) return it->second;
  // Kept open for the file's lifetime: the chunk cache lives in the open
  // dataset, and reopening per read would decompress a chunk per read.
  hid_t access = H5Pcreate(H5P_DATASET_ACCESS);
  // 12421 slots (a prime, as the HDF5 docs advise) for up to ~12k chunks.
  // w0 = 0.75 (HDF5's default LRU weighting): with 1.0 only "fully read"
  // chunks may be evicted, and segment reads that overlap by one token never
  // count a chunk as fully read, so the cache grew to the whole dataset.
  H5Pset_chunk_cache(access, 12421, static_cast<size_t>(options_.chunk_cache_bytes), 0.75);
  const hid_t dataset = H5Dopen2(file_, name, access);
  H5Pclose(access);
  if (dataset < 0) return absl::DataLossError(absl::StrCat(path_, ": cannot open ", name));
  datasets_.emplace(name, dataset);
  return dataset;
}

absl::StatusOr<std::unique_ptr<CorpusFile>> CorpusFile::Open(const std::string& path,
                                                             CorpusFileOptions options) {
  ConfigureHdf5();
  if (access(path.c_str(), R_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file (or not readable)"));
  }
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not an HDF5 file (or its superblock is damaged)"));
  }
  std::unique_ptr<CorpusFile> corpus(new CorpusFile());
  corpus->path_ = path;
  corpus->options_ = options;
  // Read-only readers never take the HDF5 file lock, so any number of ranks
  // (and a writer elsewhere) can have the file open (TOOLCHAIN.md §6).
  hid_t access_properties = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_file_locking(access_properties, false, true);
  corpus->file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, access_properties);
  H5Pclose(access_properties);
  if (corpus->file_ < 0) {
    return absl::DataLossError(absl::StrCat(path, ": HDF5 cannot open it (truncated or corrupt?)"));
  }
  MEMTRAIN_RETURN_IF_ERROR(corpus->Load());
  return corpus;
}

absl::Status CorpusFile::Load() {
  const std::string& p = path_;
  auto format = ReadStringAttribute(p, file_, "format");
  if (!format.ok() || *format != kFormatName) {
    return absl::InvalidArgumentError(
        absl::StrCat(p, ": not a memtrain corpus (root attribute 'format' is ",
                     format.ok() ? absl::StrCat("'", *format, "'") : std::string("missing"),
                     ", expected '", kFormatName, "'); make one with memtrain-prepare"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(const int64_t version, ReadIntAttribute(p, file_, "format_version"));
  if (version != kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        p, ": format version ", version, ", this memtrain reads version ", kFormatVersion));
  }
  auto complete = ReadIntAttribute(p, file_, "complete");
  if (!complete.ok() || *complete != 1) {
    return absl::DataLossError(absl::StrCat(
        p, ": incomplete file (no 'complete' mark): a memtrain-prepare run that did not finish"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(header_.corpus, ReadStringAttribute(p, file_, "corpus"));
  MEMTRAIN_ASSIGN_OR_RETURN(header_.split, ReadStringAttribute(p, file_, "split"));
  MEMTRAIN_ASSIGN_OR_RETURN(header_.task, ReadStringAttribute(p, file_, "task"));
  absl::StatusOr<const TaskInfo*> task = FindTask(header_.task);
  if (!task.ok()) return absl::DataLossError(absl::StrCat(p, ": ", task.status().message()));
  seq2seq_ = (*task)->seq2seq;
  MEMTRAIN_ASSIGN_OR_RETURN(header_.num_records, ReadIntAttribute(p, file_, "num_records"));
  MEMTRAIN_ASSIGN_OR_RETURN(header_.num_source_tokens,
                            ReadIntAttribute(p, file_, "num_source_tokens"));
  MEMTRAIN_ASSIGN_OR_RETURN(header_.num_target_tokens,
                            ReadIntAttribute(p, file_, "num_target_tokens"));
  MEMTRAIN_ASSIGN_OR_RETURN(header_.malformed_skipped,
                            ReadIntAttribute(p, file_, "malformed_skipped"));
  MEMTRAIN_ASSIGN_OR_RETURN(header_.empty_skipped, ReadIntAttribute(p, file_, "empty_skipped"));
  MEMTRAIN_ASSIGN_OR_RETURN(const int64_t long_range, ReadIntAttribute(p, file_, "has_long_range"));
  header_.has_long_range = long_range != 0;
  MEMTRAIN_ASSIGN_OR_RETURN(header_.options_json, ReadStringAttribute(p, file_, "options"));
  MEMTRAIN_ASSIGN_OR_RETURN(header_.created_by, ReadStringAttribute(p, file_, "created_by"));
  MEMTRAIN_ASSIGN_OR_RETURN(header_.created_at, ReadStringAttribute(p, file_, "created_at"));
  MEMTRAIN_ASSIGN_OR_RETURN(const std::string inputs, ReadStringAttribute(p, file_, "inputs"));
  const nlohmann::json parsed = nlohmann::json::parse(inputs, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array()) return Hdf5Error(p, "attribute 'inputs' is not a JSON array");
  for (const nlohmann::json& input : parsed) {
    header_.inputs.push_back(
        {input.value("path", ""), input.value("bytes", int64_t{0}), input.value("sha256", "")});
  }

  // Tokenizer.
  if (H5Lexists(file_, "/tokenizer", H5P_DEFAULT) <= 0)
    return Hdf5Error(p, "group /tokenizer is missing");
  hid_t group = H5Gopen2(file_, "/tokenizer", H5P_DEFAULT);
  absl::Status status = absl::OkStatus();
  auto int_field = [&](const char* name, int32_t* out) {
    if (!status.ok()) return;
    auto value = ReadIntAttribute(p, group, name);
    if (value.ok()) {
      *out = static_cast<int32_t>(*value);
    } else {
      status = value.status();
    }
  };
  int_field("vocab_size", &tokenizer_.vocab_size);
  int_field("pad_id", &tokenizer_.pad_id);
  int_field("unk_id", &tokenizer_.unk_id);
  int_field("bos_id", &tokenizer_.bos_id);
  int_field("eos_id", &tokenizer_.eos_id);
  int_field("sep_id", &tokenizer_.sep_id);
  if (status.ok()) {
    auto sha = ReadStringAttribute(p, group, "sha256");
    auto type = ReadStringAttribute(p, group, "model_type");
    status = !sha.ok() ? sha.status() : type.status();
    if (status.ok()) {
      tokenizer_.sha256 = *sha;
      tokenizer_.model_type = *type;
    }
  }
  H5Gclose(group);
  MEMTRAIN_RETURN_IF_ERROR(status);
  MEMTRAIN_ASSIGN_OR_RETURN(std::vector<uint8_t> model,
                            ReadWhole<uint8_t>(p, file_, "/tokenizer/model", H5T_NATIVE_UINT8));
  tokenizer_.model_bytes.assign(model.begin(), model.end());
  MEMTRAIN_ASSIGN_OR_RETURN(
      std::vector<uint8_t> piece_bytes,
      ReadWhole<uint8_t>(p, file_, "/tokenizer/piece_bytes", H5T_NATIVE_UINT8));
  MEMTRAIN_ASSIGN_OR_RETURN(
      std::vector<int64_t> piece_offsets,
      ReadWhole<int64_t>(p, file_, "/tokenizer/piece_offsets", H5T_NATIVE_INT64));
  if (static_cast<int64_t>(piece_offsets.size()) != tokenizer_.vocab_size + 1 ||
      piece_offsets.back() != static_cast<int64_t>(piece_bytes.size())) {
    return Hdf5Error(p, "/tokenizer/piece_offsets does not match vocab_size and piece_bytes");
  }
  for (int32_t id = 0; id < tokenizer_.vocab_size; ++id) {
    if (piece_offsets[id + 1] < piece_offsets[id]) return Hdf5Error(p, "piece offsets decrease");
    tokenizer_.pieces.emplace_back(
        reinterpret_cast<const char*>(piece_bytes.data()) + piece_offsets[id],
        static_cast<size_t>(piece_offsets[id + 1] - piece_offsets[id]));
  }

  // Offsets: small (8 bytes per record) and needed by every rank's plan.
  MEMTRAIN_ASSIGN_OR_RETURN(source_offsets_,
                            ReadWhole<int64_t>(p, file_, "/source/offsets", H5T_NATIVE_INT64));
  if (static_cast<int64_t>(source_offsets_.size()) != header_.num_records + 1) {
    return Hdf5Error(p, absl::StrCat("/source/offsets has ", source_offsets_.size(),
                                     " entries for ", header_.num_records, " records"));
  }
  if (DatasetLength(file_, "/source/tokens") != header_.num_source_tokens ||
      DatasetLength(file_, "/source/long_range") != header_.num_source_tokens) {
    return Hdf5Error(p,
                     "/source/tokens or /source/long_range does not have num_source_tokens "
                     "entries");
  }
  if (is_seq2seq()) {
    MEMTRAIN_ASSIGN_OR_RETURN(target_offsets_,
                              ReadWhole<int64_t>(p, file_, "/target/offsets", H5T_NATIVE_INT64));
    MEMTRAIN_ASSIGN_OR_RETURN(id_offsets_,
                              ReadWhole<int64_t>(p, file_, "/ids/offsets", H5T_NATIVE_INT64));
    if (static_cast<int64_t>(target_offsets_.size()) != header_.num_records + 1 ||
        static_cast<int64_t>(id_offsets_.size()) != header_.num_records + 1 ||
        DatasetLength(file_, "/target/tokens") != header_.num_target_tokens) {
      return Hdf5Error(p, "/target or /ids does not match num_records / num_target_tokens");
    }
  }
  return absl::OkStatus();
}

const std::vector<int64_t>& CorpusFile::offsets(Field field) const {
  return field == Field::kSource ? source_offsets_ : target_offsets_;
}

int64_t CorpusFile::record_length(Field field, int64_t record) const {
  const std::vector<int64_t>& o = offsets(field);
  return o[record + 1] - o[record];
}

namespace {

// A hyperslab [start, start + count) of an open 1-D dataset.
template <typename T>
absl::StatusOr<std::vector<T>> ReadRange(const std::string& path, hid_t dataset, const char* name,
                                         hid_t memory_type, int64_t start, int64_t count) {
  std::vector<T> values(static_cast<size_t>(std::max<int64_t>(count, 0)));
  if (count <= 0) return values;
  hid_t file_space = H5Dget_space(dataset);
  hsize_t offset = static_cast<hsize_t>(start), size = static_cast<hsize_t>(count);
  hsize_t extent = 0;
  H5Sget_simple_extent_dims(file_space, &extent, nullptr);
  herr_t status = -1;
  if (start >= 0 && offset + size <= extent) {
    H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &offset, nullptr, &size, nullptr);
    hid_t memory_space = H5Screate_simple(1, &size, nullptr);
    status = H5Dread(dataset, memory_type, memory_space, file_space, H5P_DEFAULT, values.data());
    H5Sclose(memory_space);
  }
  H5Sclose(file_space);
  if (status < 0) {
    return absl::DataLossError(absl::StrCat(path, ": cannot read ", name, "[", start, ", ",
                                            start + count, ") of ", extent,
                                            " (truncated or corrupt file: checksum or "
                                            "decompression failed?)"));
  }
  return values;
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> CorpusFile::ReadTokens(Field field, int64_t start,
                                                            int64_t count) {
  if (field == Field::kTarget && !is_seq2seq()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": an lm corpus has no target tokens"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(hid_t dataset, Dataset(TokensName(field)));
  return ReadRange<int32_t>(path_, dataset, TokensName(field), H5T_NATIVE_INT32, start, count);
}

absl::StatusOr<std::vector<int32_t>> CorpusFile::ReadRecord(Field field, int64_t record) {
  if (record < 0 || record >= num_records()) {
    return absl::OutOfRangeError(
        absl::StrCat(path_, ": record ", record, " is outside [0, ", num_records(), ")"));
  }
  const std::vector<int64_t>& o = offsets(field);
  return ReadTokens(field, o[record], o[record + 1] - o[record]);
}

absl::StatusOr<std::vector<uint8_t>> CorpusFile::ReadLongRange(int64_t start, int64_t count) {
  MEMTRAIN_ASSIGN_OR_RETURN(hid_t dataset, Dataset("/source/long_range"));
  return ReadRange<uint8_t>(path_, dataset, "/source/long_range", H5T_NATIVE_UINT8, start, count);
}

absl::StatusOr<std::string> CorpusFile::ReadId(int64_t record) {
  if (!is_seq2seq()) return std::string();
  if (record < 0 || record >= num_records()) {
    return absl::OutOfRangeError(absl::StrCat(path_, ": record ", record, " out of range"));
  }
  MEMTRAIN_ASSIGN_OR_RETURN(hid_t dataset, Dataset("/ids/bytes"));
  MEMTRAIN_ASSIGN_OR_RETURN(
      std::vector<uint8_t> bytes,
      ReadRange<uint8_t>(path_, dataset, "/ids/bytes", H5T_NATIVE_UINT8, id_offsets_[record],
                         id_offsets_[record + 1] - id_offsets_[record]));
  return std::string(bytes.begin(), bytes.end());
}

absl::Status CorpusFile::Verify() {
  if (Sha256Hex(tokenizer_.model_bytes) != tokenizer_.sha256) {
    return Hdf5Error(path_, "/tokenizer/model does not match its sha256 attribute");
  }
  for (Field field : {Field::kSource, Field::kTarget}) {
    if (field == Field::kTarget && !is_seq2seq()) continue;
    const std::vector<int64_t>& o = offsets(field);
    const int64_t total =
        field == Field::kSource ? header_.num_source_tokens : header_.num_target_tokens;
    if (o.front() != 0 || o.back() != total) {
      return Hdf5Error(path_, absl::StrCat(TokensName(field), ": offsets span [", o.front(), ", ",
                                           o.back(), ") but the file has ", total, " tokens"));
    }
    for (size_t i = 1; i < o.size(); ++i) {
      if (o[i] < o[i - 1]) {
        return Hdf5Error(path_,
                         absl::StrCat(TokensName(field), ": offsets decrease at record ", i - 1));
      }
    }
    constexpr int64_t kBlock = int64_t{1} << 20;
    for (int64_t start = 0; start < total; start += kBlock) {
      MEMTRAIN_ASSIGN_OR_RETURN(std::vector<int32_t> tokens,
                                ReadTokens(field, start, std::min(kBlock, total - start)));
      for (size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i] < 0 || tokens[i] >= tokenizer_.vocab_size) {
          return Hdf5Error(path_,
                           absl::StrCat(TokensName(field), "[", start + static_cast<int64_t>(i),
                                        "] = ", tokens[i], " is outside the vocabulary [0, ",
                                        tokenizer_.vocab_size, ")"));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckSameTokenizer(const CorpusFile& a, const CorpusFile& b) {
  if (a.tokenizer().sha256 == b.tokenizer().sha256) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(a.path(), " and ", b.path(), " were encoded with different tokenizers (sha256 ",
                   a.tokenizer().sha256.substr(0, 12), " vs ", b.tokenizer().sha256.substr(0, 12),
                   "); prepare one with --tokenizer_from=<the other>"));
}

// ---- PieceDecoder ----------------------------------------------------------------

std::string PieceDecoder::Decode(const std::vector<int32_t>& ids) const {
  static const std::string kSpaceMarker = "\xe2\x96\x81";  // U+2581 "▁"
  std::string text;
  for (int32_t id : ids) {
    if (id < 0 || id >= tokenizer_.vocab_size) continue;
    if (id == tokenizer_.pad_id || id == tokenizer_.bos_id || id == tokenizer_.eos_id) continue;
    if (id == tokenizer_.unk_id) {
      text += " \xe2\x81\x87 ";  // " ⁇ ", SentencePiece's rendering of unk
      continue;
    }
    const std::string& piece = tokenizer_.pieces[id];
    unsigned byte = 0;
    if (piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>' &&
        std::sscanf(piece.c_str(), "<0x%2X>", &byte) == 1) {
      text.push_back(static_cast<char>(byte));
      continue;
    }
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
        text.push_back(' ');
        i += kSpaceMarker.size();
      } else {
        text.push_back(piece[i++]);
      }
    }
  }
  return internal::ReplaceInvalidUtf8(text);
}

absl::Status WriteTokenizerCorpus(const CorpusFile& from, const std::string& path) {
  MEMTRAIN_ASSIGN_OR_RETURN(std::unique_ptr<CorpusWriter> writer,
                            CorpusWriter::Create(path, from.header().task, from.tokenizer()));
  CorpusHeader header;
  header.corpus = from.header().corpus;
  header.split = "tokenizer";
  header.task = from.header().task;
  header.options_json = from.header().options_json;
  header.created_by = absl::StrCat("the tokenizer of ", from.path());
  return writer->Finish(std::move(header));
}

}  // namespace memtrain::data
