# cmake -DSOURCE_DIR=... -DBINARY_DIR=... -P BuildWithDefaultGenerator.cmake
#
# Configures SOURCE_DIR from scratch in BINARY_DIR with CMake's default
# generator (no -G: Unix Makefiles on Linux) and builds every target, as a
# packager would. Fails with the step that failed.
if(NOT SOURCE_DIR OR NOT BINARY_DIR)
  message(FATAL_ERROR "usage: cmake -DSOURCE_DIR=<tree> -DBINARY_DIR=<dir> -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
file(REMOVE_RECURSE ${BINARY_DIR})
cmake_host_system_information(RESULT jobs QUERY NUMBER_OF_LOGICAL_CORES)
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BINARY_DIR} -DCMAKE_BUILD_TYPE=RelWithDebInfo
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring with the default generator failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BINARY_DIR} -j ${jobs} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building with the default generator failed (${rc}); run `cmake -S . -B build-make && "
                      "cmake --build build-make` to see the failing rule")
endif()
file(REMOVE_RECURSE ${BINARY_DIR})
message(STATUS "the default generator built every target")
