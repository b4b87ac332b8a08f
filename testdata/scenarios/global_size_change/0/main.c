/* global_size_change — a global whose size changed is treated as removed and
 * re-introduced: it is re-initialised from the new version's initialiser and
 * the runtime prints a warning naming it on stderr (hcr: warning: ...).
 * Globals whose size did not change keep their values.
 *
 * a v0: resized_table[2] = {1, 2}, struct resized_settings {speed} = {1},
 *       kept_value = 7; a_mutate() sets them to {10, 20}, {99}, 8.
 * a v1: resized_table[4] = {5, 6, 7, 8}; resized_settings gains a field:
 *       {3, 4}; kept_value's initialiser changes to 70 (same size: keeps 8).
 */
#include <stdio.h>

#include "scenario.h"

void a_mutate(void);
void a_show(void);

int main(void)
{
    a_show();
    a_mutate();
    a_show();
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    a_show();
    fflush(stdout);
    return 0;
}
