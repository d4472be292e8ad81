# HDF5 pruning output: the collective writer at 1, 2 and 4 ranks read back value by value, the
# reader's errors, and (Python) identical files across rank counts, h5py/h5dump, and failures
# agreed on every rank with nothing left behind.
add_executable(test_h5out ${CMAKE_CURRENT_SOURCE_DIR}/test_h5out.c)
target_link_libraries(test_h5out PRIVATE sds_io)

foreach(np 1 2 4)
  add_test(NAME h5out_np${np}
           COMMAND ${SDS_MPIRUN} -np ${np} $<TARGET_FILE:test_h5out> write
                   ${CMAKE_CURRENT_BINARY_DIR}/h5out_np${np}.h5)
  set_tests_properties(h5out_np${np} PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" PROCESSORS ${np}
                       TIMEOUT 300)
endforeach()
add_test(NAME h5out_reader
         COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/h5out_reader)
add_test(NAME h5out_reader_errors
         COMMAND ${SDS_MPIRUN} -np 1 $<TARGET_FILE:test_h5out> reader
                 ${CMAKE_CURRENT_BINARY_DIR}/h5out_reader)
set_tests_properties(h5out_reader PROPERTIES FIXTURES_SETUP h5out_reader_dir)
set_tests_properties(h5out_reader_errors PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" TIMEOUT 300
                     FIXTURES_REQUIRED h5out_reader_dir)
add_test(NAME h5out_py
         COMMAND ${SDS_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/test_h5out.py
                 $<TARGET_FILE:test_h5out> ${CMAKE_CURRENT_BINARY_DIR}/h5out_py_tmp)
set_tests_properties(h5out_py PROPERTIES ENVIRONMENT "${SDS_TEST_ENV}" PROCESSORS 4 TIMEOUT 900)
