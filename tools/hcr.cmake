# hcr.cmake — build a hot-reloadable hcr image with CMake.
#
#     cmake_minimum_required(VERSION 3.16)
#     project(game C)
#     include(path/to/hcr/tools/hcr.cmake)
#     hcr_add_image(game SOURCES main.c world.c render.c)
#
# hcr_add_image(<target> SOURCES <file>... [ROOT <module>] [OUTPUT <path>])
#
#   Compiles every source as one module (an OBJECT library, <target>_modules,
#   built with the flags hcr needs: -fPIC -ffunction-sections -fdata-sections,
#   and hcr.h on the include path) and links the modules with hcr-link into
#   OUTPUT (default: ${CMAKE_CURRENT_BINARY_DIR}/<target>.hcr). A module's
#   name is its source's file name without the extension. ROOT is the module
#   whose main runs (default: the first source's). The custom target <target>
#   is part of `all`. Add include folders, definitions and options to
#   <target>_modules as to any target.
#
#   Then, for example:
#       cmake -S . -B build && cmake --build build
#       hcr watch . --build "cmake --build build" --image build/game.hcr
#
# Cache variables: HCR_LINK (the hcr-link executable; searched on PATH),
# HCR_INCLUDE_DIR (the folder of hcr.h; default: runtime/include of the hcr
# checkout this file is in).
#
# Including this file sets CMAKE_C_OUTPUT_EXTENSION_REPLACE in the including
# folder, so that objects are named main.o, not main.c.o (hcr-link names a
# module after its object's file stem).
#
# Modules compile through a small launcher (<binary dir>/hcr-compile.sh, the
# C_COMPILER_LAUNCHER of <target>_modules): when a source is saved while its
# object is compiling, the object is given the source's earlier modification
# time, so the next build compiles it again instead of calling it up to date
# (`hcr watch --build` rebuilds after every change, and must not miss one).

set(HCR_INCLUDE_DIR "${CMAKE_CURRENT_LIST_DIR}/../runtime/include"
    CACHE PATH "Folder of hcr.h")
find_program(HCR_LINK hcr-link DOC "The hcr-link executable")
set(CMAKE_C_OUTPUT_EXTENSION_REPLACE 1)
set(CMAKE_CXX_OUTPUT_EXTENSION_REPLACE 1)

set(HCR_COMPILE_LAUNCHER "${CMAKE_CURRENT_BINARY_DIR}/hcr-compile.sh")
file(WRITE "${HCR_COMPILE_LAUNCHER}" [=[
# hcr-compile.sh COMPILER ARGS... (written by hcr.cmake): runs the compile;
# if the source changed while it ran, backdates the object to the source's
# time at the start, so that the next build compiles it again.
obj=; src=; prev=
for a in "$@"; do
  case $prev in -o) obj=$a ;; -c) src=$a ;; esac
  prev=$a
done
if [ -z "$obj" ] || [ -z "$src" ] || [ ! -f "$src" ]; then exec "$@"; fi
touch -r "$src" "$obj.started" 2>/dev/null || exec "$@"
"$@" || { status=$?; rm -f "$obj.started"; exit $status; }
if [ -n "$(find "$src" -newer "$obj.started")" ]; then touch -r "$obj.started" "$obj"; fi
rm -f "$obj.started"
]=])

function(hcr_add_image target)
  cmake_parse_arguments(PARSE_ARGV 1 HCR "" "ROOT;OUTPUT" "SOURCES")
  if(HCR_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "hcr_add_image(${target}): unexpected arguments: ${HCR_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT HCR_SOURCES)
    message(FATAL_ERROR "hcr_add_image(${target}): no SOURCES given")
  endif()
  if(NOT HCR_LINK)
    message(FATAL_ERROR "hcr_add_image(${target}): hcr-link not found; set HCR_LINK to its path (cargo build -p hcr-tools puts it in target/debug)")
  endif()
  if(NOT HCR_ROOT)
    list(GET HCR_SOURCES 0 first)
    get_filename_component(HCR_ROOT "${first}" NAME_WE)
  endif()
  if(NOT HCR_OUTPUT)
    set(HCR_OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/${target}.hcr")
  elseif(NOT IS_ABSOLUTE "${HCR_OUTPUT}")
    set(HCR_OUTPUT "${CMAKE_CURRENT_BINARY_DIR}/${HCR_OUTPUT}")
  endif()

  add_library(${target}_modules OBJECT ${HCR_SOURCES})
  set_target_properties(${target}_modules PROPERTIES POSITION_INDEPENDENT_CODE ON)
  target_compile_options(${target}_modules PRIVATE -fPIC -ffunction-sections -fdata-sections)
  target_include_directories(${target}_modules PRIVATE "${HCR_INCLUDE_DIR}")
  set_target_properties(${target}_modules PROPERTIES
    C_COMPILER_LAUNCHER "sh;${HCR_COMPILE_LAUNCHER}")

  # hcr-link writes the image atomically: a running program never sees half
  # of it.
  add_custom_command(
    OUTPUT "${HCR_OUTPUT}"
    COMMAND "${HCR_LINK}" -o "${HCR_OUTPUT}" --root "${HCR_ROOT}"
            "$<TARGET_OBJECTS:${target}_modules>"
    DEPENDS ${target}_modules "$<TARGET_OBJECTS:${target}_modules>"
    COMMAND_EXPAND_LISTS VERBATIM
    COMMENT "hcr-link ${target}")
  add_custom_target(${target} ALL DEPENDS "${HCR_OUTPUT}")
endfunction()
