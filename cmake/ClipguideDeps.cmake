# Third-party libraries, all from Debian's packages (scripts/setup.sh installs them).

find_package(ZLIB REQUIRED)                       # gzip-compressed BPE vocabularies
find_package(ICU REQUIRED COMPONENTS uc i18n)     # Unicode classes, case mapping, NFC for the tokenizer
find_package(nlohmann_json 3.10 REQUIRED)         # configs, safetensors headers, tool output
find_package(yaml-cpp REQUIRED)                   # taming-transformers VQGAN configs (generators)
find_package(LibArchive REQUIRED)                 # WebDataset tar shards (clipguide::train)
if(CLIPGUIDE_BUILD_TOOLS OR CLIPGUIDE_BUILD_BENCH)
  find_package(CLI11 REQUIRED)
endif()

# OpenImageIO: optional, so the core builds on machines that only have LibTorch.
set(CLIPGUIDE_HAVE_OIIO OFF)
if(NOT CLIPGUIDE_WITH_OIIO STREQUAL "OFF")
  if(CLIPGUIDE_WITH_OIIO STREQUAL "ON")
    find_package(OpenImageIO CONFIG REQUIRED)
  else()
    find_package(OpenImageIO CONFIG QUIET)
  endif()
  if(OpenImageIO_FOUND)
    set(CLIPGUIDE_HAVE_OIIO ON)
    # Debian's OpenImageIO target lists an OpenCV include folder that does not exist; drop it.
    foreach(_t OpenImageIO::OpenImageIO OpenImageIO::OpenImageIO_Util)
      if(TARGET ${_t})
        get_target_property(_inc ${_t} INTERFACE_INCLUDE_DIRECTORIES)
        if(_inc)
          set(_kept "")
          foreach(_d IN LISTS _inc)
            if(_d MATCHES "opencv" AND NOT EXISTS "${_d}")
              continue()
            endif()
            list(APPEND _kept "${_d}")
          endforeach()
          set_target_properties(${_t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
        endif()
      endif()
    endforeach()
  endif()
endif()
message(STATUS "clipguide: OpenImageIO image files: ${CLIPGUIDE_HAVE_OIIO}")

# clip-studio (gui/): Dear ImGui with its GLFW and OpenGL3 backends (Debian's libimgui-dev), GLFW, OpenGL.
# CLIPGUIDE_BUILD_GUI defaults to ON only when all three are found, so a LibTorch-only machine still builds.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(IMGUI QUIET IMPORTED_TARGET imgui)
endif()
find_package(glfw3 QUIET)
find_package(OpenGL QUIET)
set(_clipguide_gui_default OFF)
if(IMGUI_FOUND AND glfw3_FOUND AND OpenGL_FOUND)
  set(_clipguide_gui_default ON)
endif()
# Build folders configured before clip-studio existed cached the old fixed default (OFF); switch those on
# once. A value given with -D on the first configure (type not yet BOOL) is kept.
get_property(_clipguide_gui_type CACHE CLIPGUIDE_BUILD_GUI PROPERTY TYPE)
if(_clipguide_gui_default AND NOT CLIPGUIDE_GUI_DEFAULT_SEEN AND _clipguide_gui_type STREQUAL "BOOL"
   AND NOT CLIPGUIDE_BUILD_GUI)
  set(CLIPGUIDE_BUILD_GUI ON CACHE BOOL "Build clip-studio (needs Dear ImGui, GLFW, OpenGL)" FORCE)
endif()
set(CLIPGUIDE_GUI_DEFAULT_SEEN ON CACHE INTERNAL "clip-studio's found-dependent default has been applied")
option(CLIPGUIDE_BUILD_GUI "Build clip-studio (needs Dear ImGui, GLFW, OpenGL)" ${_clipguide_gui_default})
message(STATUS "clipguide: clip-studio GUI: ${CLIPGUIDE_BUILD_GUI}")
