// File: common/native_libraries.h
//
// Which BLAS and which OpenMP runtime this process's calls actually land in.
//
// LibTorch's CPU matrix products call the Fortran symbol `sgemm_` through the
// dynamic linker, which binds it to the first loaded library that defines it.
// The wheel's libtorch_cpu.so defines it (the MKL linked into it), but a BLAS
// loaded earlier (Debian's OpenBLAS, brought in with FAISS) would take every
// such call, 2-3x slower (docs/ARCHITECTURE.md, "One BLAS and one OpenMP
// runtime per process"). The build orders the libraries so that cannot
// happen; this is how a process checks it and how memtrain-env reports it.
//
//   const NativeLibraries libraries = FindNativeLibraries();
//   LOG(INFO) << DescribeNativeLibraries(libraries);
//   absl::Status s = CheckLibTorchBlas(libraries);   // FailedPrecondition if displaced
//
// Reads the dynamic linker's state only (dlsym, dladdr, dl_iterate_phdr):
// no LibTorch call, so memtrain_common needs no LibTorch.
#ifndef MEMTRAIN_COMMON_NATIVE_LIBRARIES_H_
#define MEMTRAIN_COMMON_NATIVE_LIBRARIES_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace memtrain {

struct NativeLibraries {
  /// Where libtorch_cpu.so is loaded; empty in a process without LibTorch.
  std::string libtorch_cpu;
  /// The library whose `sgemm_` the process's calls bind to (the first
  /// definition in the global lookup order); empty if none defines it.
  std::string sgemm;
  /// Whether that is libtorch_cpu.so's own `sgemm_`.
  bool sgemm_is_libtorchs = false;
  /// Every loaded library that is a BLAS (OpenBLAS, reference BLAS, BLIS,
  /// ATLAS, MKL), in load order; libtorch_cpu.so counts when it defines sgemm_.
  std::vector<std::string> blas_libraries;
  /// Every loaded OpenMP runtime (libgomp, libomp, libiomp5), in load order.
  std::vector<std::string> openmp_runtimes;
};

/// Reads the dynamic linker's state of this process now.
NativeLibraries FindNativeLibraries();

/// OK when the process has no LibTorch, or LibTorch's `sgemm_` binds to its
/// own, and at most one OpenMP runtime is loaded; FailedPrecondition naming
/// the libraries otherwise.
absl::Status CheckLibTorchBlas(const NativeLibraries& libraries);

/// One line for logs and memtrain-env, e.g. "BLAS sgemm_ ->
/// torch/lib/libtorch_cpu.so (LibTorch's own); also loaded:
/// lib/x86_64-linux-gnu/libblas.so.3 | OpenMP torch/lib/libgomp.so.1".
std::string DescribeNativeLibraries(const NativeLibraries& libraries);

}  // namespace memtrain

#endif  // MEMTRAIN_COMMON_NATIVE_LIBRARIES_H_
