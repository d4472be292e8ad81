# Pipeline stages and exact statistics (issue 5): prune and eval at 1, 2, 3 and 4 ranks with 1, 2
# and 3 stages give the same bits as 1 rank, on generated OPT and Llama checkpoints; staged
# errors agreed on every rank.
add_test(NAME stages COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_stages.py)
set_tests_properties(stages PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" FIXTURES_REQUIRED hf
                     PROCESSORS 2 TIMEOUT 1200)
