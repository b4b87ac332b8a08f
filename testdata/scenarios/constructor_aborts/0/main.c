/* constructor_aborts — what is guaranteed when the top-level code of a new
 * module aborts: constructors of new modules run after the commit (the new
 * code is already live, old handlers already ran), so an abort there ends
 * the process like in any C program: everything printed and flushed before
 * it is kept, nothing after it runs, the exit status is SIGABRT's (134).
 * hcr does not roll the reload back (the process is gone); a constructor
 * that returns normally completes the reload.
 *
 * Step 1: module a now imports a new module b whose constructor prints a
 * line and aborts.
 */
#include <stdio.h>

#include "scenario.h"

int a_value(void); /* module a */

static void before(void) { printf("main: before-handler\n"); }

HCR_ON_RELOAD(register_handlers) { hcr_on_before_reload(before); }

int main(void)
{
    printf("main: a_value() = %d\n", a_value());
    scenario_rebuild(1);
    fflush(stdout);
    int n = hcr_perform_code_reload();
    printf("main: MUST NOT BE REACHED (%d)\n", n);
    return 0;
}
