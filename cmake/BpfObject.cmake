# bpf_object(<name> <source.bpf.c>)
#
# clang -target bpf (CO-RE, BTF) -> <name>.bpf.o -> `bpftool gen skeleton` ->
# <name>.skel.h, exposed as the INTERFACE target <name>_skel. Every object
# depends on every shared header (include/ and bpf/*.h) and on vmlinux.h, so a
# changed ABI can never leave a stale skeleton behind.

find_program(GT_BPF_CLANG NAMES clang clang-19 clang-16 clang-14 REQUIRED)
find_program(GT_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

set(GT_BPF_OUT ${CMAKE_BINARY_DIR}/bpf)
file(MAKE_DIRECTORY ${GT_BPF_OUT})

set(GT_VMLINUX_BTF "/sys/kernel/btf/vmlinux" CACHE FILEPATH
    "Kernel BTF used to generate vmlinux.h (CO-RE relocates at load time)")
if(NOT EXISTS ${GT_VMLINUX_BTF})
  message(FATAL_ERROR "gputier: ${GT_VMLINUX_BTF} does not exist. The BPF objects are "
          "built against kernel BTF; build on a kernel with CONFIG_DEBUG_INFO_BTF=y or "
          "pass -DGT_VMLINUX_BTF=<path to a vmlinux with BTF>.")
endif()

add_custom_command(
  OUTPUT ${GT_BPF_OUT}/vmlinux.h
  COMMAND ${GT_BPFTOOL} btf dump file ${GT_VMLINUX_BTF} format c > ${GT_BPF_OUT}/vmlinux.h.tmp
  COMMAND ${CMAKE_COMMAND} -E rename ${GT_BPF_OUT}/vmlinux.h.tmp ${GT_BPF_OUT}/vmlinux.h
  COMMENT "Generating vmlinux.h from ${GT_VMLINUX_BTF}"
  VERBATIM)
add_custom_target(gt_vmlinux_h DEPENDS ${GT_BPF_OUT}/vmlinux.h)

file(GLOB GT_BPF_SHARED_HEADERS CONFIGURE_DEPENDS
     ${PROJECT_SOURCE_DIR}/include/gputier/*.h
     ${PROJECT_SOURCE_DIR}/bpf/*.h)

function(bpf_object name src)
  set(obj ${GT_BPF_OUT}/${name}.bpf.o)
  set(skel ${GT_BPF_OUT}/${name}.skel.h)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${GT_BPF_CLANG} -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_x86
            -Wall -Werror -Wno-unused-function
            -I${GT_BPF_OUT} -I${PROJECT_SOURCE_DIR}/include -I${PROJECT_SOURCE_DIR}/bpf
            -c ${CMAKE_CURRENT_SOURCE_DIR}/${src} -o ${obj}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${src} ${GT_BPF_SHARED_HEADERS} ${GT_BPF_OUT}/vmlinux.h
    COMMENT "BPF ${name}.bpf.o"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${GT_BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skel}.tmp ${skel}
    DEPENDS ${obj}
    COMMENT "BPF skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  # vmlinux.h is made by a rule of the top directory: generators other than
  # Ninja (Unix Makefiles) only see it through this target-level dependency.
  add_dependencies(${name}_skel_gen gt_vmlinux_h)
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${GT_BPF_OUT})
  target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF)
  set_property(GLOBAL APPEND PROPERTY GT_BPF_OBJECTS ${obj})
endfunction()
