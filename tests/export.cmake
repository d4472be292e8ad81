# sds-mpi export: pruned models as Hugging Face directories that transformers loads, from every
# generated checkpoint and a GGUF made from one; and from the real SmolLM2 GGUF (skipped, exit
# 77, when the file is absent).
add_test(NAME export_hf COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_export.py
                                $<TARGET_FILE:tokenize_ids>)
set_tests_properties(export_hf PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" FIXTURES_REQUIRED hf
                     PROCESSORS 2 TIMEOUT 900)

if(NOT DEFINED SDS_SMOLLM2_GGUF)
  set(SDS_SMOLLM2_GGUF ${PROJECT_SOURCE_DIR}/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
endif()
add_test(NAME export_smollm2 COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_export.py
                                     $<TARGET_FILE:tokenize_ids> --smollm2)
set_tests_properties(export_smollm2 PROPERTIES
                     ENVIRONMENT "${SDS_TEST_ENV};SDS_SMOLLM2_GGUF=${SDS_SMOLLM2_GGUF}"
                     PROCESSORS 2 TIMEOUT 900 SKIP_RETURN_CODE 77)
