# Finds LibTorch, the C++ part of the PyPI torch wheel, through the Python that has torch installed.
# Set CLIPGUIDE_PYTHON (or Torch_DIR) to choose; scripts/setup.sh makes a venv and passes it.

if(NOT CLIPGUIDE_PYTHON)
  find_program(_py NAMES python3 python)
  set(CLIPGUIDE_PYTHON "${_py}" CACHE FILEPATH "Python with torch" FORCE)
endif()
if(NOT Torch_DIR)
  execute_process(
    COMMAND "${CLIPGUIDE_PYTHON}" -c "import torch; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _torch_rc ERROR_QUIET)
  if(NOT _torch_rc EQUAL 0)
    message(FATAL_ERROR "clipguide: '${CLIPGUIDE_PYTHON}' cannot import torch. Run scripts/setup.sh, "
                        "or pass -DCLIPGUIDE_PYTHON=/path/to/python-with-torch or -DTorch_DIR=...")
  endif()
  list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
endif()

# A CUDA build of the wheel needs the CUDA toolkit (nvcc) to configure; Caffe2's config finds it.
find_program(_nvcc nvcc HINTS /usr/local/cuda/bin)
if(_nvcc AND NOT CMAKE_CUDA_COMPILER)
  set(CMAKE_CUDA_COMPILER "${_nvcc}")
endif()
find_package(Torch REQUIRED)
message(STATUS "clipguide: LibTorch from ${Torch_DIR}")
# Torch's imported target adds the C++ ABI flag; TORCH_CXX_FLAGS is for old CMake users, not needed here.
