/* module_reimport — a module that is no longer reachable from the root is
 * unloaded (its globals freed, its after handlers gone); imported again
 * later it is a NEW module: fresh globals from its initialisers, its
 * constructors and HCR_ON_RELOAD blocks run again.
 *
 * main imports a.  b registers before/after handlers and has b_count = 10.
 *   load:   a imports b.  b's constructor and block run; a_tick() -> 11, 12.
 *   step 1: a stops importing b.  Before handlers run over the OLD tree, so
 *           b's before handler runs one last time; b is then unloaded: its
 *           after handler does not run.  Reloaded: a (changed) + b (removed).
 *   step 2: a imports b again (b.c itself is unchanged on disk): b is new:
 *           constructor, block, b_count starts at 10 again.  Reloaded: a
 *           (changed) + b (new).
 */
#include <stdio.h>

#include "scenario.h"

int a_tick(void);

static void main_before(void) { printf("main: before\n"); }
static void main_after(void) { printf("main: after\n"); }

HCR_ON_RELOAD(main_handlers)
{
    hcr_on_before_reload(main_before);
    hcr_on_after_reload(main_after);
}

int main(void)
{
    int step, t;

    t = a_tick();
    printf("main: a_tick() = %d\n", t);
    t = a_tick();
    printf("main: a_tick() = %d\n", t);
    for (step = 1; step <= 2; step++) {
        scenario_rebuild(step);
        printf("-- reload %d\n", step);
        printf("-- reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
        t = a_tick();
        printf("main: a_tick() = %d\n", t);
    }
    fflush(stdout);
    return 0;
}
