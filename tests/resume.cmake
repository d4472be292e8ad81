# sds-mpi prune: checkpoint and --resume (test hook, SIGUSR1, SIGTERM, kill -9), bitwise-equal
# output, and the Slurm and PBS job scripts (about 80 s, 270 s under the sanitizers).
add_test(NAME prune_resume COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_resume.py)
set_tests_properties(prune_resume PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" FIXTURES_REQUIRED hf
                     PROCESSORS 2 TIMEOUT 900)
