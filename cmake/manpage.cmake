# Writes qforge.1.gz with help2man from the binary's own help texts (cmake -P):
#   -DQFORGE=<built binary> -DHELP2MAN=<help2man> -DOUT=<.../qforge.1.gz>
# `qforge --help` and `--version` give NAME/SYNOPSIS/DESCRIPTION/OPTIONS; one COMMANDS section
# holds `qforge <command> --help` for every command that `qforge __complete commands` lists.
get_filename_component(dir "${OUT}" DIRECTORY)
set(include_file "${dir}/qforge.h2m")
set(page "${dir}/qforge.1")

execute_process(COMMAND "${QFORGE}" __complete commands OUTPUT_VARIABLE commands RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT commands)
  message(FATAL_ERROR "${QFORGE} __complete commands failed (${rc})")
endif()
string(REPLACE "\n" ";" commands "${commands}")
set(text "[COMMANDS]\n")
foreach(cmd IN LISTS commands)
  if(cmd STREQUAL "")
    continue()
  endif()
  execute_process(COMMAND "${QFORGE}" ${cmd} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${QFORGE} ${cmd} --help failed (${rc})")
  endif()
  # roff: a backslash is \e; a line starting with '.' or '\'' would be a request: \& guards it.
  string(REPLACE "\\" "\\e" help "${help}")
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" help "${help}")
  string(APPEND text ".SS \"qforge ${cmd}\"\n.nf\n${help}.fi\n")
endforeach()
file(WRITE "${include_file}" "${text}")

execute_process(COMMAND "${HELP2MAN}" --no-info --no-discard-stderr --section=1
                        "--name=quantize, plan and evaluate LLMs for your own hardware"
                        "--include=${include_file}" -o "${page}" "${QFORGE}"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "help2man failed on ${QFORGE} (${rc})")
endif()
execute_process(COMMAND gzip -9nf "${page}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gzip ${page} failed (${rc})")
endif()
