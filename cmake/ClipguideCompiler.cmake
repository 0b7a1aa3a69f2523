# Compiler settings shared by every clipguide target: ccache, the LibTorch precompiled header, warnings.

if(CLIPGUIDE_USE_CCACHE)
  find_program(CLIPGUIDE_CCACHE ccache)
  if(CLIPGUIDE_CCACHE)
    # Base dir makes hits portable across clones (CI builds a fresh clone each run);
    # the sloppiness settings are what ccache needs to cache precompiled-header builds.
    set(_ccache ${CMAKE_COMMAND} -E env
        CCACHE_BASEDIR=${PROJECT_SOURCE_DIR}
        CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
        CCACHE_MAXSIZE=8G ${CLIPGUIDE_CCACHE})
    set(CMAKE_CXX_COMPILER_LAUNCHER ${_ccache})
    set(CMAKE_C_COMPILER_LAUNCHER ${_ccache})
    message(STATUS "clipguide: compiling through ${CLIPGUIDE_CCACHE}")
  endif()
endif()

# Sanitizers for the whole build (clipguide's code; LibTorch itself is not instrumented):
#   cmake -S . -B build-asan -DCLIPGUIDE_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo ...
# or the CMake preset "asan" (CMakePresets.json). Tests then run with ASAN_OPTIONS/UBSAN_OPTIONS set by
# scripts/run_sanitized.sh (leak checking off: LibTorch keeps global allocations for the process's life).
set(CLIPGUIDE_SANITIZE "" CACHE STRING "Comma-separated -fsanitize= list for every clipguide target (e.g. address,undefined)")
if(CLIPGUIDE_SANITIZE)
  add_compile_options(-fsanitize=${CLIPGUIDE_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=${CLIPGUIDE_SANITIZE})
  message(STATUS "clipguide: sanitizers ${CLIPGUIDE_SANITIZE}")
endif()

# clipguide_target_defaults(<target>): warnings and the shared precompiled header.
# The first target to call it builds the PCH; the others reuse it (one ~30 s compile, not one per target).
function(clipguide_target_defaults target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  # One PCH serves libraries and programs only if all compile with the same code model: -fPIC everywhere.
  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "EXECUTABLE")
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE OFF)
    target_compile_options(${target} PRIVATE -fPIC)
  endif()
  if(CLIPGUIDE_USE_PCH)
    get_property(_pch_owner GLOBAL PROPERTY CLIPGUIDE_PCH_OWNER)
    if(NOT _pch_owner)
      target_precompile_headers(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${PROJECT_SOURCE_DIR}/cmake/pch.h>")
      set_property(GLOBAL PROPERTY CLIPGUIDE_PCH_OWNER ${target})
    else()
      target_precompile_headers(${target} REUSE_FROM ${_pch_owner})
    endif()
  endif()
endfunction()
