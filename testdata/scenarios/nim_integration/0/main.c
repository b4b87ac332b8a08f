/* nim_integration — a C port of every step of Nim's own hot code reloading
 * integration test (nim-lang/Nim tests/dll/nimhcr_integration.nim with its
 * modules nimhcr_0/1/2.nim and their step versions nimhcr_0_1.nim ...).
 *
 * Modules: main (nimhcr_integration), a (nimhcr_0), b (nimhcr_1), c (nimhcr_2).
 * main never changes; it keeps calling a's getInt() and, between steps,
 * rebuilds itself, prints hcr_has_any_module_changed(), reloads (the
 * handlers print their lines) and prints the answer.
 *
 *   step 1  a: global g_0 gets a new initialiser (42) and a gains before/after
 *           handlers -> g_0 keeps 1000, a's top-level code does not rerun,
 *           only the NEW after handler runs (a had no handler before).
 *   step 2  nothing changed (a.c copied byte-identical) -> no handler runs.
 *   step 3  a imports the new module b: b's top-level code runs exactly once,
 *           b has a function-static counter and struct globals; a's new
 *           after handler sets the kept global g_0 = 100; a's new constructor
 *           must not run -> 100 + 8 + 2 = 110.
 *   step 4  a imports b and the new c, drops g_0, adds a counter object whose
 *           function pointer is stored in a global, reads the const array c_2
 *           of c; b is unchanged (its top level does not rerun, its after
 *           handler still runs) -> 8 + 1 = 9.
 *   step 5  a re-introduces g_0 (fresh: its NEW initialiser 1000), the stored
 *           counter continues where it was (2, 3); a, b, c all change and b
 *           now imports c; c's old before handler runs, its new after handler.
 *   step 6  a imports nothing: b and c are unloaded, their globals freed,
 *           c's after handler does not run -> 42.
 *
 * Beyond Nim's output each step also prints the value returned by
 * hcr_perform_code_reload() (changed + new + removed modules).
 */
#include <stdio.h>

#include "scenario.h"

int getInt(void); /* module a: the only thing main calls */

static void main_before(void) { printf("main: before\n"); }
static void main_after(void) { printf("main: after\n"); }

HCR_ON_RELOAD(main_handlers)
{
    hcr_on_before_reload(main_before);
    hcr_on_after_reload(main_after);
}

__attribute__((constructor)) static void main_top_level(void)
{
    printf("main: HELLO!\n");
}

static void compile_reload_execute(int step)
{
    int n;

    scenario_rebuild(step);
    printf("main: hasAnyModuleChanged? %s\n",
           hcr_has_any_module_changed() ? "true" : "false");
    n = scenario_checked(hcr_perform_code_reload());
    printf("main: performCodeReload() = %d\n", n);
    printf("              The answer is: %d\n", getInt());
}

int main(void)
{
    compile_reload_execute(1); /* versions are: 1 - -   */
    compile_reload_execute(2); /* no change             */
    compile_reload_execute(3); /* versions are: 2 1 -   */
    compile_reload_execute(4); /* versions are: 3 1 1   */
    compile_reload_execute(5); /* versions are: 4 2 2   */
    compile_reload_execute(6); /* versions are: 5 2 2   */
    printf("done\n");
    fflush(stdout);
    return 0;
}
