/* unreachable_module — a module that is linked into the image but that the
 * root does not reach is not loaded: its constructors, HCR_ON_RELOAD blocks
 * and handlers never run, through any number of reloads.  Once a new version
 * of a module imports it, it becomes a new module and is initialised then
 * (constructor once, block, after handler).
 *
 * main imports a; orphan is linked from the start.
 *   step 1: a changes, orphan is still unreachable.  Reloaded 1.
 *   step 2: a imports orphan: orphan's constructor runs (first time), then
 *           the blocks of orphan and a, then the after handlers.  Reloaded 2.
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);

static void main_after(void) { printf("main: after\n"); }

HCR_ON_RELOAD(main_on_reload) { hcr_on_after_reload(main_after); }

int main(void)
{
    int step;

    printf("main: a_value() = %d\n", a_value());
    for (step = 1; step <= 2; step++) {
        scenario_rebuild(step);
        printf("-- reload %d\n", step);
        printf("-- reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
        printf("main: a_value() = %d\n", a_value());
    }
    fflush(stdout);
    return 0;
}
