# find_package(resilience) after `cmake --install`: the library's dependencies, then its targets
# (resilience::resilience and its components).
include(CMakeFindDependencyMacro)
find_dependency(Threads)
find_dependency(Protobuf)
find_dependency(gRPC CONFIG)
find_dependency(absl CONFIG)
find_dependency(prometheus-cpp CONFIG)
include("${CMAKE_CURRENT_LIST_DIR}/resilienceTargets.cmake")
