# Tokenizer: ids identical to Hugging Face's on real text, both file layouts, and bad input.
add_executable(tokenize_ids ${CMAKE_CURRENT_SOURCE_DIR}/tokenize_ids.c)
target_link_libraries(tokenize_ids PRIVATE sds_io)

add_test(NAME tokenizer_hf_ids
         COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.py
                 $<TARGET_FILE:tokenize_ids> ${SDS_SHARED} --checks ids)
add_test(NAME tokenizer_errors
         COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.py
                 $<TARGET_FILE:tokenize_ids> ${SDS_SHARED} --checks errors)
set_tests_properties(tokenizer_hf_ids tokenizer_errors PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}")
set_tests_properties(tokenizer_hf_ids PROPERTIES TIMEOUT 900)
set_tests_properties(tokenizer_errors PROPERTIES TIMEOUT 300)
