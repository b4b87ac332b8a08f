# A Nim demo for hcr: edit logic.nim while it runs, then rebuild and relink
# (see README "Nim programs"); the counter keeps counting in the new code.
import std/os
import logic, hotcodereloading

afterCodeReload:
  echo "reloaded"

for i in 0 ..< 600:
  step()
  if hasAnyModuleChanged():
    performCodeReload()
  sleep(500)
