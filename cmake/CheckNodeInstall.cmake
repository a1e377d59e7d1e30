# ctest deploy_node_install_gives_a_valid_systemd_unit: `cmake --install` of
# the build into a scratch DESTDIR, then
#   - the unit is where systemd looks (<prefix>/lib/systemd/system) and
#     `systemd-analyze verify` accepts it with no message at all (an unknown
#     key is only a warning there, so any output fails the test), its
#     ExecStart/ExecStartPre naming the installed gputierd;
#   - its ExecStartPre (gputierd --check-config on the installed config) passes;
#   - gputier-oci-hook is beside gputierd, and the hooks.d file podman and
#     CRI-O read (<prefix>/share/containers/oci/hooks.d/gputier.json) is JSON
#     naming that hook at createRuntime;
#   - a second install keeps a config the operator edited.
# Usage: cmake -DBINARY_DIR=<build> -DWORK_DIR=<scratch> -P CheckNodeInstall.cmake
cmake_minimum_required(VERSION 3.22)
set(prefix /usr/local)
set(root "${WORK_DIR}/root")
file(REMOVE_RECURSE "${WORK_DIR}")
set(ENV{DESTDIR} "${root}")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BINARY_DIR}" --prefix ${prefix}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed:\n${out}")
endif()
set(unit "${root}${prefix}/lib/systemd/system/gputierd.service")
set(config "${root}${prefix}/etc/gputier/gputierd.yaml")
foreach(f "${unit}" "${config}" "${root}${prefix}/bin/gputierd" "${root}${prefix}/bin/gputierctl")
  if(NOT EXISTS "${f}")
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()

set(hook_json "${root}${prefix}/share/containers/oci/hooks.d/gputier.json")
foreach(f "${root}${prefix}/bin/gputier-oci-hook" "${hook_json}")
  if(NOT EXISTS "${f}")
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()
file(READ "${hook_json}" hook_text)
string(JSON hook_path ERROR_VARIABLE json_error GET "${hook_text}" hook path)
string(JSON hook_stage ERROR_VARIABLE json_error GET "${hook_text}" stages 0)
if(json_error OR NOT hook_path STREQUAL "${prefix}/bin/gputier-oci-hook" OR NOT hook_stage STREQUAL "createRuntime")
  message(FATAL_ERROR "${hook_json} does not name ${prefix}/bin/gputier-oci-hook at createRuntime "
                      "(path '${hook_path}', stage '${hook_stage}' ${json_error})")
endif()

file(READ "${unit}" text)
if(text MATCHES "@[A-Z_]+@")
  message(FATAL_ERROR "${unit} has an unfilled placeholder ${CMAKE_MATCH_0}")
endif()
foreach(line "ExecStartPre=${prefix}/bin/gputierd --check-config --config=${prefix}/etc/gputier/gputierd.yaml"
             "ExecStart=${prefix}/bin/gputierd --config=${prefix}/etc/gputier/gputierd.yaml")
  string(FIND "${text}" "${line}" at)
  if(at LESS 0)
    message(FATAL_ERROR "${unit} lacks \"${line}\"")
  endif()
endforeach()

# systemd-analyze checks that the commands exist: point them into DESTDIR.
find_program(SYSTEMD_ANALYZE systemd-analyze)
if(SYSTEMD_ANALYZE)
  string(REPLACE "=${prefix}/" "=${root}${prefix}/" rooted "${text}")
  string(REPLACE " --config=${prefix}/" " --config=${root}${prefix}/" rooted "${rooted}")
  file(WRITE "${WORK_DIR}/gputierd.service" "${rooted}")
  execute_process(COMMAND ${SYSTEMD_ANALYZE} verify "${WORK_DIR}/gputierd.service"
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0 OR NOT out STREQUAL "")
    message(FATAL_ERROR "systemd-analyze verify of the installed unit (exit ${rc}):\n${out}")
  endif()
else()
  message(STATUS "systemd-analyze not found: the unit's syntax is not checked")
endif()

execute_process(COMMAND "${root}${prefix}/bin/gputierd" --check-config "--config=${config}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the unit's ExecStartPre fails on the installed config:\n${out}")
endif()

file(APPEND "${config}" "# edited by the operator\n")
execute_process(COMMAND ${CMAKE_COMMAND} --install "${BINARY_DIR}" --prefix ${prefix}
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
file(READ "${config}" kept)
if(NOT kept MATCHES "# edited by the operator\n$")
  message(FATAL_ERROR "a second cmake --install replaced the operator's ${config}")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
message(STATUS "installed unit verified, its ExecStartPre passes, an edited config is kept")
