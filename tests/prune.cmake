# One-shot pruning numerics (pattern, Hessian, magnitude, Wanda, SparseGPT) against the public
# reference pruners' outputs in shared/golden; and the kernel benchmark (not a test).
find_package(Threads REQUIRED)
add_executable(test_prune_golden ${CMAKE_CURRENT_SOURCE_DIR}/test_prune_golden.c)
target_link_libraries(test_prune_golden PRIVATE sds_io Threads::Threads)
add_test(NAME prune_golden COMMAND test_prune_golden ${SDS_SHARED}/golden)
set_tests_properties(prune_golden PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" TIMEOUT 300)

# Benchmark (bench/bench_prune_kernels.py runs it beside PyTorch): built, not a test.
add_executable(bench_prune_kernels ${PROJECT_SOURCE_DIR}/bench/bench_prune_kernels.c)
target_link_libraries(bench_prune_kernels PRIVATE sds_mpi)

# sds-mpi prune end to end on generated OPT and Llama checkpoints.
add_test(NAME prune_e2e COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_prune.py)
set_tests_properties(prune_e2e PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" FIXTURES_REQUIRED hf
                     PROCESSORS 2 TIMEOUT 900)

# SDS (SPEC 2.6) on the golden inputs: never worse than its base, better on average.
add_executable(test_sds_golden ${CMAKE_CURRENT_SOURCE_DIR}/test_sds_golden.c)
target_link_libraries(test_sds_golden PRIVATE sds_io)
add_test(NAME sds_golden COMMAND test_sds_golden ${SDS_SHARED}/golden)
set_tests_properties(sds_golden PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" TIMEOUT 600)

# sds-mpi prune --method sds end to end on generated OPT and Llama checkpoints.
add_test(NAME sds_e2e COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_sds.py)
set_tests_properties(sds_e2e PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" FIXTURES_REQUIRED hf
                     PROCESSORS 2 TIMEOUT 900)

# Benchmark (not a test): the exact-sum statistics' cost next to the ssyrk they follow.
add_executable(bench_xsum ${PROJECT_SOURCE_DIR}/bench/bench_xsum.c)
target_link_libraries(bench_xsum PRIVATE sds_core)

# Benchmark (not a test): Hessian accumulation as prune runs it, at any rank count (mpirun).
add_executable(bench_gram ${PROJECT_SOURCE_DIR}/bench/bench_gram.c)
target_link_libraries(bench_gram PRIVATE sds_mpi)

find_package(Threads REQUIRED)
add_executable(bench_blas_pairs ${PROJECT_SOURCE_DIR}/bench/bench_blas_pairs.c)
target_link_libraries(bench_blas_pairs PRIVATE sds_core Threads::Threads)
