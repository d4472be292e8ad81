# The Hessian accumulated on the block-cyclic grid (mpi/dist_gram.h): bit for bit the same at
# grids 1x1, 1x2, 1x3 and 2x2, against the serial sds_hessian, the diagonal, the quadratic
# trace, the exact sums' limit and the per-rank memory bound.
add_executable(test_dist_gram ${CMAKE_CURRENT_SOURCE_DIR}/test_dist_gram.c)
target_link_libraries(test_dist_gram PRIVATE sds_mpi)

foreach(np 1 2 3 4)
  add_test(NAME dist_gram_np${np} COMMAND ${SDS_MPIRUN} -np ${np} $<TARGET_FILE:test_dist_gram>)
  set_tests_properties(dist_gram_np${np} PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}"
                       PROCESSORS ${np} TIMEOUT 120)
endforeach()
