/* cxx_removed_global_destructor — a C++ global a reload removes is not
 * destroyed at exit: its storage is gone, and its destructor may be a
 * function the new image no longer has. The globals that remain are
 * destroyed once, as in a native program.
 *   step 1: lib drops `gone` (a Noisy) and `gone_vec` (a std::vector<int>,
 *           whose destructor the new image no longer instantiates).
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
    printf("main returns\n");
    fflush(stdout);
    return 0;
}
