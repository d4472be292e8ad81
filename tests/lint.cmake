# Static checks of the C sources: cppcheck (warnings, portability, performance) and the
# repository's clang-format style. Both tools come from Debian (scripts/setup.sh --tests).
file(GLOB SDS_LINT_SOURCES ${PROJECT_SOURCE_DIR}/src/*.[ch] ${PROJECT_SOURCE_DIR}/io/*.[ch]
     ${PROJECT_SOURCE_DIR}/mpi/*.[ch] ${PROJECT_SOURCE_DIR}/tests/*.c)
find_program(SDS_CPPCHECK cppcheck)
find_program(SDS_CLANG_FORMAT clang-format)
if(NOT SDS_CPPCHECK OR NOT SDS_CLANG_FORMAT)
  # building the program must not need them; the lint test fails and says what to install
  add_test(NAME lint_tools_missing
           COMMAND sh -c "echo 'cppcheck and clang-format are needed: apt-get install cppcheck clang-format (or scripts/setup.sh --tests)'; exit 1")
  return()
endif()
add_test(NAME lint_cppcheck
         COMMAND ${SDS_CPPCHECK} --quiet --error-exitcode=1 --enable=warning,performance,portability
                 --std=c11 --inline-suppr -I ${PROJECT_SOURCE_DIR}/src -I ${PROJECT_SOURCE_DIR}/io
                 -I ${PROJECT_SOURCE_DIR}/mpi ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/io
                 ${PROJECT_SOURCE_DIR}/mpi)
add_test(NAME lint_clang_format
         COMMAND ${SDS_CLANG_FORMAT} --dry-run --Werror --style=file ${SDS_LINT_SOURCES})
