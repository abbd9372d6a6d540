# Warnings and sanitizers live on interface targets that each component links, not in global
# flags, so third-party and generated code is not held to them.

add_library(hospital_warnings INTERFACE)
target_compile_options(hospital_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wconversion
  -Wno-sign-conversion -Wimplicit-fallthrough)
if(HOSPITAL_WARNINGS_AS_ERRORS)
  target_compile_options(hospital_warnings INTERFACE -Werror)
endif()
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  # Checks the ABSL_GUARDED_BY / ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations.
  target_compile_options(hospital_warnings INTERFACE -Wthread-safety)
endif()

add_library(hospital_sanitizers INTERFACE)
if(HOSPITAL_SANITIZER)
  # Undefined behaviour stops the program (and fails the test) instead of printing a warning.
  target_compile_options(hospital_sanitizers INTERFACE -fsanitize=${HOSPITAL_SANITIZER}
    -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(hospital_sanitizers INTERFACE -fsanitize=${HOSPITAL_SANITIZER})
endif()
if(HOSPITAL_BUILD_FUZZERS)
  # Coverage for libFuzzer in everything the fuzzers link, not only in the targets themselves
  # (the sanitizer runtimes supply the hooks to binaries that are not fuzzers).
  target_compile_options(hospital_sanitizers INTERFACE -fsanitize=fuzzer-no-link)
endif()

add_library(hospital_project_options INTERFACE)
target_link_libraries(hospital_project_options INTERFACE hospital_warnings hospital_sanitizers)

# hospital_component(<target>): a library of src/, whose headers are included as
# "<folder>/<header>.h" from the source tree, or, once installed (the resilience library and the
# base layer under it), from the library's own prefix include/resilience/.
function(hospital_component target)
  get_target_property(type ${target} TYPE)
  set(scope PUBLIC)
  if(type STREQUAL "INTERFACE_LIBRARY")
    set(scope INTERFACE)
  endif()
  target_include_directories(${target} ${scope}
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/src>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/resilience>)
endfunction()
