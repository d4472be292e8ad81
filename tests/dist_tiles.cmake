# The tile inverse Cholesky (mpi/dist_tiles.h): bit for bit the 1x1 grid's at grids 1x1, 1x2,
# 1x3 and 2x2, against serial LAPACK, the strict upper triangle kept, failures agreed.
add_executable(test_dist_tiles ${CMAKE_CURRENT_SOURCE_DIR}/test_dist_tiles.c)
target_link_libraries(test_dist_tiles PRIVATE sds_mpi)

foreach(np 1 2 3 4)
  add_test(NAME dist_tiles_np${np} COMMAND ${SDS_MPIRUN} -np ${np} $<TARGET_FILE:test_dist_tiles>)
  set_tests_properties(dist_tiles_np${np} PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}"
                       PROCESSORS ${np} TIMEOUT 120)
endforeach()
