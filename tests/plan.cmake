# sds-mpi plan: its predicted peak memory against real prune runs (within 15%), its predicted time
# against their measured time (a generous band: the machine is shared).
add_test(NAME plan COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_plan.py)
set_tests_properties(plan PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" FIXTURES_REQUIRED hf
                     PROCESSORS 2 TIMEOUT 900)
