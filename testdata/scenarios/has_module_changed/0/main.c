/* has_module_changed — hcr_has_module_changed(m):
 *  - outside a reload: whether the image on disk holds a changed m (true
 *    after the rebuild, false again once the reload is done);
 *  - inside before AND after handlers: whether the reload in progress
 *    changes, adds or removes m; false for the other modules.
 *
 * main imports a and b.  Every module's handlers print the four answers
 * (main, a, b, c) as 0/1.
 *   step 1: a changes.             step 2: b changes.
 *   step 3: a changes and imports the new module c (c's own after handler
 *           sees it too).          step 4: a changes and drops c (removed;
 *           c.c is also deleted from the work dir, see 4/REMOVE).
 * Outside a reload only main, a and b are asked, plus a name that is no
 * module at all.
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);
int b_value(void);

static void show(const char *who)
{
    printf("%s: main=%d a=%d b=%d c=%d\n", who, hcr_has_module_changed("main"),
           hcr_has_module_changed("a"), hcr_has_module_changed("b"),
           hcr_has_module_changed("c"));
}

static void main_before(void) { show("main before"); }
static void main_after(void) { show("main after"); }

HCR_ON_RELOAD(main_handlers)
{
    hcr_on_before_reload(main_before);
    hcr_on_after_reload(main_after);
}

static void outside(const char *when)
{
    printf("outside, %s: any=%d main=%d a=%d b=%d nosuch=%d\n", when,
           hcr_has_any_module_changed(), hcr_has_module_changed("main"),
           hcr_has_module_changed("a"), hcr_has_module_changed("b"),
           hcr_has_module_changed("nosuch"));
}

int main(void)
{
    int step, a, b;

    outside("at start");
    for (step = 1; step <= 4; step++) {
        scenario_rebuild(step);
        printf("-- step %d\n", step);
        outside("rebuilt");
        printf("reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
        outside("reloaded");
        a = a_value();
        b = b_value();
        printf("a=%d b=%d\n", a, b);
    }
    fflush(stdout);
    return 0;
}
