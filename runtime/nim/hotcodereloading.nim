## The hot code reloading API of Nim's `nimhcr`, for Nim programs that run
## on hcr.  Put `--path:"<hcr>/runtime/nim"` in the project's `nim.cfg` (on
## the command line, Nim's own configuration would put its standard
## library's inert module of the same name first) and `import
## hotcodereloading`: code written for nimhcr builds unchanged.
##
## The procs map onto hcr.h; the runtime that loads the image provides them.
## `executeOnReload` blocks run once in place at a module's first load (with
## its top-level code) and again at every reload that changes the module;
## `beforeCodeReload` and `afterCodeReload` register handlers with such a
## block, so a reloaded module's handlers are its new code's.

import std/macros

proc hcr_has_any_module_changed(): bool {.importc, cdecl.}
proc hcr_has_module_changed(module: cstring): bool {.importc, cdecl.}
proc hcr_perform_code_reload(): cint {.importc, cdecl.}
proc hcr_last_error(): cstring {.importc, cdecl.}
proc hcr_generation(): cuint {.importc, cdecl.}
proc hcr_on_before_reload(fn: proc () {.nimcall.}) {.importc, cdecl.}
proc hcr_on_after_reload(fn: proc () {.nimcall.}) {.importc, cdecl.}

var hcrNimStarted* {.exportc: "hcr_nim_started".}: bool
  ## False while the runtime loads the first image (before Nim's own
  ## initialisation), true from this module's top-level code on; kept across
  ## reloads.
hcrNimStarted = true

proc hasAnyModuleChanged*(): bool =
  ## Whether the image on disk holds a module that differs from the loaded one.
  hcr_has_any_module_changed()

proc hcrModuleChanged(name: string): bool =
  hcr_has_module_changed(cstring(name))

macro hasModuleChanged*(module: untyped): bool =
  ## Whether MODULE changed; inside handlers, whether the reload in progress
  ## changes it.  nimhcr's form names the module (`hasModuleChanged(logic)`
  ## for `logic.nim` of the project directory); a string is hcr's module
  ## name (Nim's file stem: `"@mlogic.nim"`).
  if module.kind in {nnkStrLit, nnkRStrLit, nnkTripleStrLit}:
    result = newCall(bindSym"hcrModuleChanged", module)
  else:
    result = newCall(bindSym"hcrModuleChanged", newLit("@m" & module.repr & ".nim"))

proc performCodeReload*(): int {.discardable.} =
  ## Reloads every changed module: the number reloaded, 0 when nothing
  ## changed, -1 when the reload failed (the old code keeps running; see
  ## `lastReloadError`).
  int(hcr_perform_code_reload())

proc lastReloadError*(): string =
  ## The message of the last failed reload on this thread.
  $hcr_last_error()

proc reloadGeneration*(): int =
  ## The number of completed reloads.
  int(hcr_generation())

var hcrBlockCount {.compileTime.} = 0

macro hcrNextBlockName(): untyped =
  inc hcrBlockCount
  newLit("hcr_nim_on_reload_" & $hcrBlockCount)

template executeOnReload*(body: untyped) =
  ## Runs BODY now (with the module's top-level code) and again at every
  ## reload that changes or adds this module.
  proc hcrOnReloadBlock() {.nimcall, gensym.} =
    body
  # Called by the runtime before Nim's initialisation at the first load: no
  # stack trace frame (it needs Nim's thread-local state).
  proc hcrOnReloadEntry() {.nimcall, gensym, stackTrace: off.} =
    if hcrNimStarted: hcrOnReloadBlock()
  {.emit: ["""
__attribute__((used, section(".hcr_on_reload"), aligned(8)))
static struct { void (*fn)(void); unsigned long order; } """,
    hcrNextBlockName(), " = { (void (*)(void))", hcrOnReloadEntry,
    ", __COUNTER__ };\n"].}
  hcrOnReloadBlock()

template beforeCodeReload*(body: untyped) =
  ## Registers BODY to run before every reload, over the old code.
  executeOnReload:
    hcr_on_before_reload(proc () {.nimcall.} = body)

template afterCodeReload*(body: untyped) =
  ## Registers BODY to run after every reload, over the new code.
  executeOnReload:
    hcr_on_after_reload(proc () {.nimcall.} = body)
