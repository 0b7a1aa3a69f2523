# cmake --install: the libraries, public headers and an exported package, so that another project does
#   find_package(clipguide REQUIRED)  +  target_link_libraries(app PRIVATE clipguide::clipnet)
# (or clipguide::generators, clipguide::guidance: the guidance loss, hooks and loop, with both of the others)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS clipguide_core clipguide_clipnet clipguide_train clipguide_generators clipguide_guidance EXPORT clipguideTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY core clipnet generators guidance DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/clipguide
        FILES_MATCHING PATTERN "*.h" PATTERN "*.inc")
# The shipped default model (clipnet/default_model.h finds it here, relative to the library).
install(DIRECTORY models/ DESTINATION ${CMAKE_INSTALL_DATADIR}/clipguide/models)
install(EXPORT clipguideTargets NAMESPACE clipguide:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clipguide)

configure_package_config_file(cmake/clipguideConfig.cmake.in
  "${CMAKE_CURRENT_BINARY_DIR}/clipguideConfig.cmake"
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clipguide)
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/clipguideConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/clipguideConfig.cmake" "${CMAKE_CURRENT_BINARY_DIR}/clipguideConfigVersion.cmake"
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/clipguide)
