/* pointer_initialisers_kept — a global pointer initialised to constant
 * data keeps pointing to the data it was given when the data changes in a
 * reload (changing an initialiser does nothing to a live global), whatever
 * the data: a table whose first element is small (its first NUL byte says
 * nothing of its extent) or a string longer than 64 bytes.
 *   step 1: data changes each table's last element and each string's end.
 */
#include <stdio.h>

#include "scenario.h"

void show(const char *when);

int main(void)
{
    show("before");
    scenario_rebuild(1);
    printf("-- reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    show("after");
    fflush(stdout);
    return 0;
}
