# Exact order-independent sums (src/xsum.h): the statistics prune reduces over ranks, the same
# bits at 1, 2 and 4 ranks.
add_executable(test_xsum ${CMAKE_CURRENT_SOURCE_DIR}/test_xsum.c)
target_link_libraries(test_xsum PRIVATE sds_mpi)
foreach(np 1 2 4)
  add_test(NAME xsum_np${np} COMMAND ${SDS_MPIRUN} -np ${np} $<TARGET_FILE:test_xsum>)
  set_tests_properties(xsum_np${np} PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" PROCESSORS ${np}
                       TIMEOUT 120)
endforeach()
