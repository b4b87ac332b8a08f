/* new_global_on_reload — a global that appears in a new version is created
 * with its initialiser (before the module's HCR_ON_RELOAD blocks run); an
 * existing global keeps its live value although its initialiser changed.
 *
 * a v0: count = 5; a_step() increments it (6, 7).
 * a v1: count's initialiser is now 100 (no effect: it stays 7); new globals:
 *       extra = 40 (.data), hits[3] = {1, 2, 3} (file static array),
 *       zeroed (a .bss static), and a new function-static `calls` = 1000.
 *       The block of v1 sees count 7 and extra 40; a_step() then goes on
 *       from there.
 */
#include <stdio.h>

#include "scenario.h"

void a_step(void);

int main(void)
{
    a_step();
    a_step();
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    a_step();
    a_step();
    fflush(stdout);
    return 0;
}
