# hospital_proto_library(NAME <target> PROTOS <files relative to IMPORT_DIR> [IMPORT_DIR <dir>]
#                        [GRPC] [DEPS <targets>])
#
# Generates C++ (and, with GRPC, gRPC service) code for the given .proto files into the build
# tree and wraps it in one static library, so that generated code is compiled once and linked by
# every binary that needs it.
function(hospital_proto_library)
  cmake_parse_arguments(ARG "GRPC" "NAME;IMPORT_DIR" "PROTOS;DEPS" ${ARGN})
  if(NOT ARG_IMPORT_DIR)
    set(ARG_IMPORT_DIR ${CMAKE_CURRENT_SOURCE_DIR})
  endif()
  set(out_dir ${PROJECT_BINARY_DIR}/generated)
  file(MAKE_DIRECTORY ${out_dir})
  set(include_args -I${PROJECT_SOURCE_DIR}/protos -I${ARG_IMPORT_DIR})
  foreach(dir ${Protobuf_INCLUDE_DIRS})
    list(APPEND include_args -I${dir})
  endforeach()
  set(sources)
  foreach(proto ${ARG_PROTOS})
    get_filename_component(abs ${ARG_IMPORT_DIR}/${proto} ABSOLUTE)
    string(REGEX REPLACE "\\.proto$" "" stem ${proto})
    set(outputs ${out_dir}/${stem}.pb.cc ${out_dir}/${stem}.pb.h)
    set(plugin_args)
    if(ARG_GRPC)
      list(APPEND outputs ${out_dir}/${stem}.grpc.pb.cc ${out_dir}/${stem}.grpc.pb.h)
      set(plugin_args --grpc_out=${out_dir}
        --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>)
    endif()
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND protobuf::protoc ${include_args} --cpp_out=${out_dir} ${plugin_args} ${abs}
      DEPENDS ${abs} protobuf::protoc
      COMMENT "Generating code for ${proto}"
      VERBATIM)
    list(APPEND sources ${out_dir}/${stem}.pb.cc)
    if(ARG_GRPC)
      list(APPEND sources ${out_dir}/${stem}.grpc.pb.cc)
    endif()
  endforeach()
  add_library(${ARG_NAME} STATIC ${sources})
  target_include_directories(${ARG_NAME} SYSTEM PUBLIC ${out_dir} ${Protobuf_INCLUDE_DIRS})
  target_link_libraries(${ARG_NAME} PUBLIC protobuf::libprotobuf gRPC::grpc++ ${ARG_DEPS})
  target_link_libraries(${ARG_NAME} PRIVATE hospital_sanitizers)
endfunction()
