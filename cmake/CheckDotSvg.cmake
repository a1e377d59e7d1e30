# Checks that each SVG in SVGS (a ;-list of docs/x.svg) is what Graphviz makes
# of its source (docs/x.dot) now: run by ctest architecture_svg_matches_its_dot.
#   cmake -DSVGS="docs/architecture.svg;docs/loader-folders.svg" -P cmake/CheckDotSvg.cmake
# Prints "SKIP" without Graphviz (deploy/bootstrap test installs it).
find_program(DOT_EXE dot)
if(NOT DOT_EXE)
  message("SKIP: Graphviz's dot is not installed (Debian: graphviz)")
  return()
endif()
foreach(svg IN LISTS SVGS)
  string(REGEX REPLACE "\\.svg$" ".dot" src "${svg}")
  execute_process(COMMAND ${DOT_EXE} -Tsvg "${src}" OUTPUT_VARIABLE fresh RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "dot -Tsvg ${src} failed (${rc})")
  endif()
  file(READ "${svg}" committed)
  if(NOT fresh STREQUAL committed)
    message(FATAL_ERROR "${svg} is not what Graphviz makes of ${src}; regenerate it: "
                        "dot -Tsvg ${src} -o ${svg}")
  endif()
endforeach()
message(STATUS "every SVG matches its .dot")
