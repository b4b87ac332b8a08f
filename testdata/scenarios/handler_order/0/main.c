/* handler_order — before- and after-handlers run in top-level order (the
 * init order: dependencies first), within one module in registration order.
 *
 * main imports a, a imports b, b imports c: the order is c, b, a, main.
 * b registers two before handlers, the second one's function defined first
 * in the source: they run in registration order (#1 then #2).
 *   step 1: c changes.  Before handlers of the OLD c run first; c's handlers
 *           are deleted and registered again by its new HCR_ON_RELOAD block,
 *           yet the new ones still run first among the after handlers (c's
 *           place in the order, not the time of registration, decides).
 *   step 2: a changes: same shape, with the old a's before handler and the
 *           new a's after handler.
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);

static void main_before(void) { printf("before main\n"); }
static void main_after(void) { printf("after main\n"); }

HCR_ON_RELOAD(main_handlers)
{
    hcr_on_before_reload(main_before);
    hcr_on_after_reload(main_after);
}

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
