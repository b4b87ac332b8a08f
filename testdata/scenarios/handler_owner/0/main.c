/* handler_owner — a handler belongs to the module that defines its function,
 * not to the module whose code registers it: it runs in its owner's place in
 * the top-level order, and it is deleted when its owner changes.
 *
 * main imports a and b (order a, b, main).  main's HCR_ON_RELOAD block
 * registers main_after and then b_greet, a function of module b; b itself
 * registers nothing.  a registers a_after.
 *   step 1: a changes.  After handlers: a (new), b_greet (in b's place,
 *           before main's own handler although registered after it), main.
 *   step 2: b changes.  b's handlers — b_greet — are deleted; main did not
 *           change, so nothing registers b_greet again: a, main only.
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);
int b_value(void);
void b_greet(void);

static void main_after(void) { printf("after: main\n"); }

HCR_ON_RELOAD(main_handlers)
{
    hcr_on_after_reload(main_after);
    hcr_on_after_reload(b_greet);
}

int main(void)
{
    int step;

    printf("main: a=%d b=%d\n", a_value(), b_value());
    for (step = 1; step <= 2; step++) {
        scenario_rebuild(step);
        printf("-- reload %d\n", step);
        printf("-- reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
        printf("main: a=%d b=%d\n", a_value(), b_value());
    }
    fflush(stdout);
    return 0;
}
