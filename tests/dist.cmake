# Distributed SparseGPT (mpi/dist_sparsegpt.h): ScaLAPACK factor on a BLACS grid and the
# row-sharded sweep, against the serial SparseGPT on random problems and the golden files, with
# the damping retry, agreed failures and the per-rank memory bound, at 1, 2 and 4 ranks.
add_executable(test_dist_sparsegpt ${CMAKE_CURRENT_SOURCE_DIR}/test_dist_sparsegpt.c)
target_link_libraries(test_dist_sparsegpt PRIVATE sds_mpi)

foreach(np 1 2 4)
  add_test(NAME dist_sparsegpt_np${np}
           COMMAND ${SDS_MPIRUN} -np ${np} $<TARGET_FILE:test_dist_sparsegpt> ${SDS_SHARED}/golden)
  set_tests_properties(dist_sparsegpt_np${np} PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}"
                       PROCESSORS ${np} TIMEOUT 600)
endforeach()
