/* cross_module_global — a global of one module used from other modules is
 * one object with one permanent address: every module (the defining one, a
 * user that did not change, a user that changed, the running main) sees the
 * same live value across reloads.
 *
 * a defines shared_counter = 1; b and main read and write it.
 *   step 1: a changes (initialiser 50: no effect; a_bump adds 100 now).
 *   step 2: b changes (b_bump adds 1000 now).
 */
#include <stdio.h>

#include "scenario.h"

extern int shared_counter; /* module a */
void a_bump(void);
void b_bump(void);

static void round_trip(const char *label)
{
    a_bump();
    b_bump();
    shared_counter += 1;
    printf("%s: shared_counter=%d\n", label, shared_counter);
}

int main(void)
{
    int step;

    round_trip("v0");
    for (step = 1; step <= 2; step++) {
        scenario_rebuild(step);
        printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
        round_trip(step == 1 ? "step 1" : "step 2");
    }
    fflush(stdout);
    return 0;
}
