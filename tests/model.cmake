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

# Partial loading for pipeline stages (sds_model_load_part): parts against the whole model on
# generated OPT and Llama checkpoints and on the real SmolLM2 GGUF.
if(NOT DEFINED SDS_SMOLLM2_GGUF)
  set(SDS_SMOLLM2_GGUF ${PROJECT_SOURCE_DIR}/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
endif()
add_executable(test_model_part ${CMAKE_CURRENT_SOURCE_DIR}/test_model_part.c)
target_link_libraries(test_model_part PRIVATE sds_io)
set(SDS_PART_FIXTURES opt-preln opt-postln-proj opt-fp16-sharded llama-gqa llama-tied-bias
                      llama-bf16-sharded)
list(TRANSFORM SDS_PART_FIXTURES PREPEND ${PROJECT_BINARY_DIR}/fixtures/)
add_test(NAME model_part COMMAND test_model_part ${SDS_PART_FIXTURES} ${SDS_SMOLLM2_GGUF})
set_tests_properties(model_part PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" FIXTURES_REQUIRED hf
                     TIMEOUT 600)
