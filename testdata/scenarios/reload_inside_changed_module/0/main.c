/* reload_inside_changed_module — a reload requested from code of a module
 * that the reload changes (Nim: "the callstack must not contain reloaded
 * modules (or crash!)" — lifted here).  The frame of the old a_run() keeps
 * running the old code after hcr_perform_code_reload() returns into it (it
 * prints its old text); calls through a function pointer held in a global
 * reach the new code at once; a's static global is the same object for old
 * and new code; after a_run() returns, main's calls reach the new a.
 *
 *   a v0 -> step 1 (inside a v0's a_run) -> a v1 -> step 2 (inside a v1's
 *   a_run) -> a v2.
 */
#include <stdio.h>

#include "scenario.h"

int a_run(int step);
int a_version(void);

int main(void)
{
    printf("main: a_version() = %d\n", a_version());
    printf("main: a_run(1) = %d\n", a_run(1));
    printf("main: a_version() = %d\n", a_version());
    printf("main: a_run(2) = %d\n", a_run(2));
    printf("main: a_version() = %d\n", a_version());
    printf("main: a_run(3) = %d\n", a_run(3));
    fflush(stdout);
    return 0;
}
