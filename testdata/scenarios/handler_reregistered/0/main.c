/* handler_reregistered — a module that registers another module's function
 * in its HCR_ON_RELOAD block owns that handler: when the module changes, the
 * handler is deleted and the new code registers it again, so it runs once
 * per reload, never piling up.
 *
 * reg's block registers log_reload, a function of module logger; every step
 * changes reg.  Each reload runs log_reload exactly once.
 */
#include <stdio.h>

#include "scenario.h"

int reg_value(void);

int main(void)
{
    int step;

    printf("main: reg=%d\n", reg_value());
    for (step = 1; step <= 3; step++) {
        scenario_rebuild(step);
        printf("-- reload %d\n", step);
        printf("-- reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
        printf("main: reg=%d\n", reg_value());
    }
    fflush(stdout);
    return 0;
}
