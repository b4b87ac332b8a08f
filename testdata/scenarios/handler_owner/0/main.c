/* handler_owner — a handler belongs to the module whose code registers it,
 * whichever module defines its function: it runs in its owner's place in
 * the top-level order and is deleted when its owner changes.
 *
 * main imports a, b and r (order a, b, r, main).  main's HCR_ON_RELOAD block
 * registers main_after and then b_greet, a function of module b: both are
 * main's.  r_install (module r, called once by main) registers b_bye, also a
 * function of b: it is r's, although at -O2 the call is a tail call.  a
 * registers a_after; b registers nothing.
 *   step 1: a changes.  After handlers: a (new), r's b_bye, then main's
 *           main_after and b_greet, in the order main registered them.
 *   step 2: b changes.  b owns no handler: every handler stays, and b's
 *           functions run their new code.
 *   step 3: r changes.  r's handler is deleted; nothing registers it again.
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void);
int b_value(void);
void b_greet(void);
void r_install(void);

static void main_after(void) { printf("after: main\n"); }

HCR_ON_RELOAD(main_handlers)
{
    hcr_on_after_reload(main_after);
    hcr_on_after_reload(b_greet);
}

int main(void)
{
    int step;

    r_install();
    printf("main: a=%d b=%d\n", a_value(), b_value());
    for (step = 1; step <= 3; step++) {
        scenario_rebuild(step);
        printf("-- reload %d\n", step);
        printf("-- reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
        printf("main: a=%d b=%d\n", a_value(), b_value());
    }
    fflush(stdout);
    return 0;
}
