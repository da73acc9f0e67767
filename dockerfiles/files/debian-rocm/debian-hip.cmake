# Included after every project() through CMAKE_PROJECT_INCLUDE (the toolchain stage's ENV;
# PyTorch's setup.py forwards CMAKE_* variables to CMake). On Linux, Debian's FindHIP.cmake
# never searches for hipcc_cmake_linker_helper, yet its HIP link rules start with it.
set(HIP_HIPCC_CMAKE_LINKER_HELPER /usr/local/bin/hipcc_cmake_linker_helper
    CACHE FILEPATH "FindHIP's link helper (imagefactory, Debian layout)")
