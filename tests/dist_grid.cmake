# The modules on the block-cyclic grid, each at 1, 2, 3 and 4 ranks (grids 1x1, 1x2, 1x3, 2x2):
# - dist_gram, the Hessian accumulated on the grid (mpi/dist_gram.h): bit for bit the same at
#   every grid, against the serial sds_hessian, the diagonal, the quadratic trace, the exact
#   sums' limit and the per-rank memory bound;
# - dist_tiles, the tile inverse Cholesky (mpi/dist_tiles.h): bit for bit the 1x1 grid's,
#   against serial LAPACK, the strict upper triangle kept, failures agreed.
foreach(name dist_gram dist_tiles)
  add_executable(test_${name} ${CMAKE_CURRENT_SOURCE_DIR}/test_${name}.c)
  target_link_libraries(test_${name} PRIVATE sds_mpi)
  foreach(np 1 2 3 4)
    add_test(NAME ${name}_np${np} COMMAND ${SDS_MPIRUN} -np ${np} $<TARGET_FILE:test_${name}>)
    set_tests_properties(${name}_np${np} PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}"
                         PROCESSORS ${np} TIMEOUT 120)
  endforeach()
endforeach()
