# safetensors reader: C checks on hand-written files, and bit-exact comparison with torch.
add_executable(test_safetensors ${CMAKE_CURRENT_SOURCE_DIR}/test_safetensors.c)
target_link_libraries(test_safetensors PRIVATE sds_io)
add_test(NAME safetensors_c
         COMMAND test_safetensors ${CMAKE_CURRENT_BINARY_DIR}/safetensors_c_tmp)
add_test(NAME safetensors_py
         COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_safetensors.py
                 $<TARGET_FILE:test_safetensors> ${CMAKE_CURRENT_BINARY_DIR}/safetensors_py_tmp)
set_tests_properties(safetensors_c safetensors_py PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}")
