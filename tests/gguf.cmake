# GGUF reader and the GGUF tokenizer: synthetic files of every metadata type and tensor type,
# malformed files, and the real SmolLM2-135M-Instruct Q4_1 file (dequantisation bit-exact against
# gguf-py, metadata, tokenizer ids against Hugging Face `tokenizers`).
if(NOT DEFINED SDS_SMOLLM2_GGUF)
  set(SDS_SMOLLM2_GGUF ${PROJECT_SOURCE_DIR}/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
endif()
add_executable(test_gguf ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf.c)
target_link_libraries(test_gguf PRIVATE sds_io)
foreach(check synthetic malformed real tokenizer)
  add_test(NAME gguf_${check}
           COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf.py
                   $<TARGET_FILE:test_gguf> ${SDS_SHARED} --checks ${check}
                   --tokenize-ids $<TARGET_FILE:tokenize_ids>)
  set_tests_properties(gguf_${check} PROPERTIES
                       ENVIRONMENT "${SDS_TEST_ENV};SDS_SMOLLM2_GGUF=${SDS_SMOLLM2_GGUF}"
                       TIMEOUT 900)
endforeach()

# The real model end to end: sds-mpi eval on the GGUF against transformers on the same weights.
add_test(NAME smollm2_eval COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_smollm2.py)
set_tests_properties(smollm2_eval PROPERTIES
                     ENVIRONMENT "${SDS_TEST_ENV};SDS_SMOLLM2_GGUF=${SDS_SMOLLM2_GGUF}"
                     PROCESSORS 2 TIMEOUT 600)
