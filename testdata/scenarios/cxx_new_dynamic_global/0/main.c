/* cxx_new_dynamic_global — a global a reload adds to a C++ module, with an
 * initialiser that runs at run time (`int n = f();`), cannot be initialised:
 * C++ runs it in the module's static initialiser, top-level code that runs
 * only at a module's first load.  It starts zeroed, and hcr says so instead
 * of leaving it silently at zero.
 *   step 1: lib gains new_dyn = compute(); old_dyn keeps its value.
 */
#include <stdio.h>

#include "scenario.h"

void lib_show(void);

int main(void)
{
    lib_show();
    scenario_rebuild(1);
    printf("-- reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    lib_show();
    fflush(stdout);
    return 0;
}
