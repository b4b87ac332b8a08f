/* remove_readd_global — a global removed in one version and re-introduced in
 * a later one starts fresh, with the initialiser of the version that brings
 * it back; globals that stayed keep their values.
 *
 * a v0: value = 1 and kept = 10, both incremented by a_step() (2/11, 3/12).
 * a v1: value is gone (kept goes on: 13, 14).
 * a v2: value is back with initialiser 500: it starts at 500 (501 after a
 *       step), not at the 3 it had when it was removed, nor at 1.  The
 *       file static `flag` follows the same path (removed in v1, back in v2
 *       with a new initialiser).
 */
#include <stdio.h>

#include "scenario.h"

void a_step(void);

int main(void)
{
    int step;

    a_step();
    a_step();
    for (step = 1; step <= 2; step++) {
        scenario_rebuild(step);
        printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
        a_step();
        a_step();
    }
    fflush(stdout);
    return 0;
}
