# Generated Hugging Face checkpoints (fixture), forward-pass logits and eval perplexity.
add_executable(model_logits ${CMAKE_CURRENT_SOURCE_DIR}/model_logits.c)
target_link_libraries(model_logits PRIVATE sds_io)

add_test(NAME fixtures_hf COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/hf_fixtures.py)
set_tests_properties(fixtures_hf PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" FIXTURES_SETUP hf)

add_test(NAME opt_logits COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_logits.py
         $<TARGET_FILE:model_logits> opt)
add_test(NAME llama_logits COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_logits.py
         $<TARGET_FILE:model_logits> llama)
set_tests_properties(opt_logits llama_logits PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}"
                     FIXTURES_REQUIRED hf)

add_test(NAME eval_perplexity COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_eval.py)
set_tests_properties(eval_perplexity PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" FIXTURES_REQUIRED hf
                     PROCESSORS 2)

add_test(NAME eval_errors COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_errors.py)
set_tests_properties(eval_errors PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" FIXTURES_REQUIRED hf
                     PROCESSORS 2)
