# hospital_proto_library(NAME <target> PROTOS <files> [GRPC] [DEPS <targets>])
#
# Generates C++ (and, with GRPC, gRPC service) code for .proto files under protos/ with CMake's
# protobuf_generate, and wraps it in one static library, so that generated code is compiled once
# and linked by every binary that needs it. Call it from protos/CMakeLists.txt: the generated
# files keep the protos' paths relative to that folder ("hospital/morgue/v1/morgue.pb.h").
function(hospital_proto_library)
  cmake_parse_arguments(ARG "GRPC" "NAME" "PROTOS;DEPS" ${ARGN})
  set(out_dir ${PROJECT_BINARY_DIR}/generated)
  file(MAKE_DIRECTORY ${out_dir})
  add_library(${ARG_NAME} STATIC ${ARG_PROTOS})
  protobuf_generate(TARGET ${ARG_NAME} LANGUAGE cpp PROTOC_OUT_DIR ${out_dir}
    IMPORT_DIRS ${PROJECT_SOURCE_DIR}/protos)
  if(ARG_GRPC)
    protobuf_generate(TARGET ${ARG_NAME} LANGUAGE grpc PROTOC_OUT_DIR ${out_dir}
      GENERATE_EXTENSIONS .grpc.pb.h .grpc.pb.cc
      PLUGIN protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>
      IMPORT_DIRS ${PROJECT_SOURCE_DIR}/protos)
  endif()
  hospital_generated_library(${ARG_NAME} ${ARG_DEPS})
endfunction()

# hospital_system_proto_library(NAME <target> PROTO <path under /usr/share/grpc-proto>)
#
# The same for one of gRPC's own service protos as Debian's grpc-proto package installs them.
# protobuf_generate names its outputs after the proto's path relative to the calling folder, which
# for a file outside the source tree is not where protoc writes them, so these few are generated
# by a plain custom command.
function(hospital_system_proto_library)
  cmake_parse_arguments(ARG "" "NAME;PROTO" "" ${ARGN})
  set(import_dir /usr/share/grpc-proto)
  set(out_dir ${PROJECT_BINARY_DIR}/generated)
  string(REGEX REPLACE "\\.proto$" "" stem ${ARG_PROTO})
  set(sources ${out_dir}/${stem}.pb.cc ${out_dir}/${stem}.grpc.pb.cc)
  add_custom_command(
    OUTPUT ${sources} ${out_dir}/${stem}.pb.h ${out_dir}/${stem}.grpc.pb.h
    COMMAND protobuf::protoc -I${import_dir} --cpp_out=${out_dir} --grpc_out=${out_dir}
            --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>
            ${import_dir}/${ARG_PROTO}
    DEPENDS ${import_dir}/${ARG_PROTO} protobuf::protoc
    COMMENT "Generating code for ${ARG_PROTO}"
    VERBATIM)
  add_library(${ARG_NAME} STATIC ${sources})
  hospital_generated_library(${ARG_NAME})
endfunction()

function(hospital_generated_library name)
  target_include_directories(${name} SYSTEM PUBLIC
    $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/generated>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/resilience>)
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf gRPC::grpc++ ${ARGN})
  # Build options stay in this build: an installed library hands none to its users.
  target_link_libraries(${name} PRIVATE $<BUILD_INTERFACE:hospital_sanitizers>)
endfunction()
