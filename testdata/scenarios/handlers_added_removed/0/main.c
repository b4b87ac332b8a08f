/* handlers_added_removed — handlers can be added and removed between
 * versions; a handler registered from ordinary code (not an HCR_ON_RELOAD
 * block) of a module that never changes stays registered.
 *
 * main registers its before/after handlers from main() itself, before the
 * first reload; main never changes, so they run at every reload.
 *   a v0: no handlers.
 *   step 1, a v1: before + after.  The old a had none: only the NEW after
 *                 handler runs.
 *   step 2, a v2: only a before handler.  v1's before runs (old tree); v1's
 *                 after was deleted with the change and v2 has none.
 *   step 3, a v3: none.  v2's before runs, no after handler of a.
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);

static void main_before(void) { printf("main: before\n"); }
static void main_after(void) { printf("main: after\n"); }

int main(void)
{
    int step;

    hcr_on_before_reload(main_before);
    hcr_on_after_reload(main_after);
    printf("main: a_value() = %d\n", a_value());
    for (step = 1; step <= 3; step++) {
        scenario_rebuild(step);
        printf("-- reload %d\n", step);
        printf("-- reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
        printf("main: a_value() = %d\n", a_value());
    }
    fflush(stdout);
    return 0;
}
