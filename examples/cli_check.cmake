# One bad-flag check of an example program (see examples/CMakeLists.txt):
#   cmake -DPROGRAM=<exe> -DARGS="--flag|value|..." -DEXPECT=<regex>
#         -DOUT=<--out folder> -P cli_check.cmake
# Passes when the program exits non-zero, its output matches EXPECT, and the
# --out folder holds nothing: the flag was refused before any work.
string(REPLACE "|" ";" args "${ARGS}")
file(REMOVE_RECURSE "${OUT}")
execute_process(
  COMMAND "${PROGRAM}" ${args} --out "${OUT}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err
  TIMEOUT 60)
set(all "${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "expected a non-zero exit, got 0:\n${all}")
endif()
if(NOT all MATCHES "${EXPECT}")
  message(FATAL_ERROR "expected output matching '${EXPECT}', got (exit ${rc}):\n${all}")
endif()
file(GLOB left "${OUT}/*")
if(left)
  message(FATAL_ERROR "the flag was refused after work began; left: ${left}")
endif()
message(STATUS "refused as expected (exit ${rc}): ${all}")
