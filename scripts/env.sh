# Sourced by scripts/test and scripts/quickstart: the environment memtrain's
# builds and runs expect on a single machine. Binaries set their own malloc
# thresholds and thread counts; nothing here is needed for correctness.

# Open MPI refuses to run as root without these (CI and containers are root).
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Room for a few builds of the LibTorch-heavy translation units.
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
