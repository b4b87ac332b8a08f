/* cxx_exception_kept_catcher — a C++ exception thrown by code a reload
 * loaded is caught by a module the reload kept where it was: the unwinder
 * finds both modules' unwind tables (registered by different loads).
 */
#include <stdio.h>

#include "scenario.h"

int safe(int x);

int main(void)
{
    printf("safe(1)=%d\n", safe(1));
    printf("safe(5)=%d\n", safe(5));
    fflush(stdout);
    scenario_rebuild(1);
    printf("main: reloaded %d\n", scenario_checked(hcr_perform_code_reload()));
    printf("safe(1)=%d\n", safe(1));
    printf("safe(5)=%d\n", safe(5));
    fflush(stdout);
    return 0;
}
