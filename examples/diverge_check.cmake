# One divergence check of an example program (see examples/CMakeLists.txt):
#   cmake -DPROGRAM=<exe> -DARGS="--flag|value|..." -DJSON=<summary file name>
#         -DOUT=<--out folder> -P diverge_check.cmake
# Passes when the program, run with a learning rate that makes its training
# diverge, exits 0 and reports it: its output and summary.md say "diverged
# at epoch E, step S", its JSON summary records a divergence object with
# "diverged": true, and summary.md's tables print no accuracy for that run.
string(REPLACE "|" ";" args "${ARGS}")
file(REMOVE_RECURSE "${OUT}")
execute_process(
  COMMAND "${PROGRAM}" ${args} --out "${OUT}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err
  TIMEOUT 120)
set(all "${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "expected exit 0, got ${rc}:\n${all}")
endif()
set(pattern "diverged at epoch [0-9]+, step [0-9]+")
if(NOT all MATCHES "${pattern}")
  message(FATAL_ERROR "expected output matching '${pattern}', got:\n${all}")
endif()
foreach(name summary.md ${JSON})
  if(NOT EXISTS "${OUT}/${name}")
    message(FATAL_ERROR "${OUT}/${name} was not written")
  endif()
endforeach()
file(READ "${OUT}/summary.md" md)
if(NOT md MATCHES "${pattern}")
  message(FATAL_ERROR "summary.md does not report the divergence:\n${md}")
endif()
file(READ "${OUT}/${JSON}" json)
if(NOT json MATCHES "\"divergence\": *{[^}]*\"diverged\": *true")
  message(FATAL_ERROR "${JSON} records no divergence:\n${json}")
endif()
if(json MATCHES "\"diverged\": *true" AND NOT json MATCHES "\"epoch\": *[1-9]")
  message(FATAL_ERROR "${JSON} records a divergence without its epoch")
endif()
message(STATUS "divergence reported as expected")
